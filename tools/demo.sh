#!/usr/bin/env bash
# tools/demo.sh start|stop — a local S3 server (s3rver) on loopback with bucket "demo",
# mounted with bin/bucketfs at ./mnt. Run from `make demo` / `make demo-stop`; both are
# idempotent. State lives in ./.demo: data/ (the bucket), cache/, pids, port and logs.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/.demo
MNT=$ROOT/mnt
S3RVER=$ROOT/tests/s3server/node_modules/.bin/s3rver
BUCKET=demo

die() { echo "demo: $*" >&2; exit 1; }

# Whether pid file $1 names a live process whose command line contains $2.
alive() {
	local pid
	[[ -s $1 ]] || return 1
	pid=$(<"$1")
	[[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}

mounted() { grep -q " $MNT fuse" /proc/mounts; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits up to $2 seconds (in tenths) for command $1 to succeed.
wait_for() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		eval "$1" && return 0
		sleep 0.1
	done
	return 1
}

start_s3rver() {
	local port
	if alive "$STATE/s3rver.pid" s3rver; then
		PORT=$(<"$STATE/port")
		return
	fi
	if [[ ! -x $S3RVER ]]; then
		echo "demo: installing s3rver (npm ci --prefix tests/s3server)"
		npm ci --prefix tests/s3server --no-audit --no-fund >/dev/null
	fi
	port=4568
	while port_busy "$port"; do
		((port++))
		((port < 4668)) || die "no free port in 4568..4667"
	done
	mkdir -p "$STATE/data"
	# s3rver's list continuation tokens use DES, which Node's OpenSSL 3 only has in its
	# legacy provider
	NODE_OPTIONS=--openssl-legacy-provider setsid "$S3RVER" -d "$STATE/data" -a 127.0.0.1 -p "$port" --configure-bucket "$BUCKET" \
		--silent >"$STATE/s3rver.log" 2>&1 </dev/null &
	echo $! >"$STATE/s3rver.pid"
	echo "$port" >"$STATE/port"
	PORT=$port
	wait_for "port_busy $port" 30 ||
		die "s3rver did not start on port $port; see $STATE/s3rver.log"
}

start() {
	[[ -x bin/bucketfs ]] || die "bin/bucketfs is missing: run make first"
	if mounted && ! alive "$STATE/bucketfs.pid" bucketfs; then
		# A mount whose daemon is gone answers ENOTCONN; clear it.
		fusermount3 -u -z "$MNT" || die "cannot clear the dead mount at ./mnt"
	fi
	mkdir -p "$STATE" "$MNT"
	start_s3rver
	if mounted; then
		echo "demo: already running"
	else
		AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER setsid bin/bucketfs "$BUCKET" \
			"$MNT" -f -o "endpoint=http://127.0.0.1:$PORT,path_style,cache_dir=$STATE/cache" \
			>"$STATE/bucketfs.log" 2>&1 </dev/null &
		echo $! >"$STATE/bucketfs.pid"
		if ! wait_for mounted 20; then
			alive "$STATE/bucketfs.pid" bucketfs && kill "$(<"$STATE/bucketfs.pid")"
			tail -n 5 "$STATE/bucketfs.log" >&2
			die "bucketfs did not mount; full log in $STATE/bucketfs.log"
		fi
	fi
	cat <<EOF

bucketfs demo is running.
  S3 server:  s3rver on http://127.0.0.1:$PORT, bucket '$BUCKET', data in .demo/data
  mounted at: ./mnt   (bucketfs log: .demo/bucketfs.log)

Try it:
  echo hello > mnt/hello.txt && mkdir mnt/docs && ls -l mnt
  cat mnt/hello.txt
The same objects through S3:
  /usr/bin/python3 -c "import boto3; s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:$PORT', aws_access_key_id='S3RVER', aws_secret_access_key='S3RVER', region_name='us-east-1'); print([o['Key'] for o in s3.list_objects_v2(Bucket='$BUCKET').get('Contents', [])])"

Stop with: make demo-stop
EOF
}

stop() {
	if mounted; then
		if alive "$STATE/bucketfs.pid" bucketfs; then
			fusermount3 -u "$MNT" ||
				die "cannot unmount ./mnt (is a shell or program using it?)"
		else
			fusermount3 -u -z "$MNT" || die "cannot clear the dead mount at ./mnt"
		fi
		echo "demo: unmounted ./mnt"
	fi
	if alive "$STATE/bucketfs.pid" bucketfs; then
		# It uploads what is still pending before it exits.
		wait_for '! alive "$STATE/bucketfs.pid" bucketfs' 120 ||
			die "bucketfs (pid $(<"$STATE/bucketfs.pid")) still running after 2 minutes; s3rver left running so its uploads can finish"
	fi
	rm -f "$STATE/bucketfs.pid"
	if alive "$STATE/s3rver.pid" s3rver; then
		kill "$(<"$STATE/s3rver.pid")"
		wait_for '! alive "$STATE/s3rver.pid" s3rver' 10 || die "s3rver did not stop"
		echo "demo: stopped s3rver"
	fi
	rm -f "$STATE/s3rver.pid" "$STATE/port"
	echo "demo: stopped (the bucket's data stays in .demo/data)"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
