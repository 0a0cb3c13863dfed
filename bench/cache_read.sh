#!/usr/bin/env bash
# bench/cache_read.sh — read throughput of one large file through bucketfs: cold (every block
# fetched from S3 and stored in the cache), warm (every block from the cache), and warm after
# a remount (the cache index and blocks reloaded from disk), each also as a ratio of reading
# the same bytes from a local file on the same disk in the same run.
#
#   bash bench/cache_read.sh               # 1 GiB
#   BENCH_SIZE=256M bash bench/cache_read.sh
#
# Environment: BENCH_SIZE (default 1G; K/M/G suffixes, powers of 1024), BENCH_BS (dd block
# size, default 1M), BENCH_BLOCK_SIZE (bucketfs -o block_size, default 1M), BENCH_DIR (work
# directory, default a new one under /var/tmp; the local file and cache_dir live there).
# It starts its own s3rver (tests/s3server, `make deps`) on a free 127.0.0.1 port, uploads
# the file with boto3 (Debian's python3-boto3), mounts bin/bucketfs (`make` first), and
# cleans everything up on exit. Page caches are dropped before every timed read
# (echo 3 > /proc/sys/vm/drop_caches) when that is allowed (root, writable /proc/sys); the
# table says whether it was. Not run by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

SIZE_SPEC=${BENCH_SIZE:-1G}
DD_BS=${BENCH_BS:-1M}
BLOCK_SIZE=${BENCH_BLOCK_SIZE:-1M}
SIZE=$(numfmt --from=iec "${SIZE_SPEC%B}") || { echo "bad BENCH_SIZE $SIZE_SPEC" >&2; exit 2; }
S3RVER=$REPO/tests/s3server/node_modules/.bin/s3rver
BFS=$REPO/bin/bucketfs
[ -x "$BFS" ] || { echo "bench: $BFS missing: run make first" >&2; exit 2; }
[ -x "$S3RVER" ] || { echo "bench: $S3RVER missing: run make deps" >&2; exit 2; }

WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/bucketfs-bench.XXXXXX)}
mkdir -p "$WORK"/{s3data,mnt,cache}
S3PID= BFSPID=
cleanup() {
	if mountpoint -q "$WORK/mnt"; then fusermount3 -u "$WORK/mnt" || fusermount3 -uz "$WORK/mnt"; fi
	[ -n "$BFSPID" ] && { kill "$BFSPID" 2>/dev/null || true; wait "$BFSPID" 2>/dev/null || true; }
	[ -n "$S3PID" ] && { kill "$S3PID" 2>/dev/null || true; wait "$S3PID" 2>/dev/null || true; }
	[ -z "${BENCH_DIR:-}" ] && rm -rf "$WORK"
}
trap cleanup EXIT

# ---- S3 server on a free port (Node 20 needs the legacy OpenSSL provider for s3rver 3.7) ----
export NODE_OPTIONS=--openssl-legacy-provider
"$S3RVER" -d "$WORK/s3data" -a 127.0.0.1 -p 0 >"$WORK/s3rver.log" 2>&1 &
S3PID=$!
PORT=
for _ in $(seq 100); do
	PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/s3rver.log" | head -1)
	[ -n "$PORT" ] && break
	kill -0 "$S3PID" 2>/dev/null || { cat "$WORK/s3rver.log" >&2; exit 2; }
	sleep 0.1
done
[ -n "$PORT" ] || { echo "bench: s3rver did not start" >&2; cat "$WORK/s3rver.log" >&2; exit 2; }
ENDPOINT=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER

# ---- the data: a local file, and the same bytes as an object ----
head -c "$SIZE" /dev/urandom >"$WORK/local.bin"
/usr/bin/python3 - "$ENDPOINT" "$WORK/local.bin" <<'EOF'
import sys, boto3
from botocore.config import Config
s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',
                  config=Config(s3={'addressing_style': 'path'}))
s3.create_bucket(Bucket='bench')
s3.upload_file(sys.argv[2], 'bench', 'big.bin')
EOF
SUM=$(sha256sum <"$WORK/local.bin" | cut -d' ' -f1)

# ---- helpers ----
# decided once, here: timed_read runs in a subshell, where a variable set would be lost
if (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then DROPPED=yes; else DROPPED="no (not allowed here: warm numbers include the page cache)"; fi
drop_caches() {
	sync
	[ "$DROPPED" = yes ] && echo 3 >/proc/sys/vm/drop_caches
	return 0
}
mount_bfs() {
	"$BFS" bench "$WORK/mnt" -f -o "endpoint=$ENDPOINT,path_style,region=us-east-1,cache_dir=$WORK/cache,block_size=$BLOCK_SIZE,cache_size=$((SIZE * 2 + (64 << 20)))" \
		>>"$WORK/bucketfs.log" 2>&1 &
	BFSPID=$!
	for _ in $(seq 300); do mountpoint -q "$WORK/mnt" && return 0; sleep 0.1; done
	echo "bench: mount failed" >&2; cat "$WORK/bucketfs.log" >&2; exit 2
}
unmount_bfs() {
	fusermount3 -u "$WORK/mnt"
	wait "$BFSPID" || true
	BFSPID=
}
# timed_read FILE → seconds (dd to /dev/null; the bytes are checked once, untimed, at the end)
timed_read() {
	local t0 t1
	drop_caches
	t0=$(date +%s.%N)
	dd if="$1" of=/dev/null bs="$DD_BS" status=none
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

# ---- the runs ----
T_LOCAL=$(timed_read "$WORK/local.bin")
mount_bfs
T_COLD=$(timed_read "$WORK/mnt/big.bin")
T_WARM=$(timed_read "$WORK/mnt/big.bin")
unmount_bfs
mount_bfs
T_REMOUNT=$(timed_read "$WORK/mnt/big.bin")
SUM2=$(sha256sum <"$WORK/mnt/big.bin" | cut -d' ' -f1)
[ "$SUM2" = "$SUM" ] || { echo "bench: bucketfs returned wrong bytes" >&2; exit 2; }
STATS=$("$REPO/bin/bucketfs-cache" --cache-dir "$WORK/cache" stats 2>/dev/null | grep -E '^(blocks|bytes|hit_ratio) ' | tr -s ' ' | paste -sd ';' || true)
unmount_bfs

row() {
	awk -v name="$1" -v t="$2" -v size="$SIZE" -v tl="$T_LOCAL" \
		'BEGIN { printf "%-22s %9.2f %10.1f %14.2f\n", name, t, size / 1048576 / t, tl / t }'
}
echo
echo "bucketfs cache read: $(numfmt --to=iec-i --suffix=B "$SIZE") file, block_size=$BLOCK_SIZE, dd bs=$DD_BS to /dev/null"
echo "S3: local s3rver on 127.0.0.1:$PORT; disk: $(df --output=source "$WORK" | tail -1); page caches dropped before each read: $DROPPED"
printf "%-22s %9s %10s %14s\n" "read" "seconds" "MiB/s" "x local file"
row "local file" "$T_LOCAL"
row "cold (from S3)" "$T_COLD"
row "warm (cache)" "$T_WARM"
row "warm after remount" "$T_REMOUNT"
echo "cache after the remount read: ${STATS:-unavailable}"
