#!/usr/bin/env bash
# bench/integrity.sh — cost of integrity checking (docs/integrity.md): write and read
# throughput of one large file through bucketfs with -o hmac=off (no key: block digests are
# still written and checked, that is not optional) and with -o hmac=require and a key
# (digests + HMAC signature written, policy + digests checked on read), as a ratio.
#
#   bash bench/integrity.sh                # 1 GiB, 3 rounds
#   BENCH_SIZE=256M BENCH_ROUNDS=1 bash bench/integrity.sh
#
# write = dd of a local file into the mount with -o sync_close and conv=fsync: the time until
#         close() returns, i.e. until the object (and its digest list) is in S3;
# read  = cat of the file from a fresh mount with an empty cache_dir (every block fetched
#         from S3, verified, stored), page caches dropped first when allowed.
# Each round runs both modes, alternating which goes first; the table shows the best round
# of each (least disturbed by the machine). Also shown: the time `openssl dgst -sha256` takes
# on the same file, a floor for the extra hashing pass of an upload.
# BENCH_BASE_BIN=path/to/bucketfs adds a third column: a build without any integrity code
# (e.g. `git archive <commit before integrity> | tar -x -C /tmp/base && make -C /tmp/base`),
# which shows the cost of the block digests that hmac=off still computes.
# Starts its own s3rver (tests/s3server, `make deps`) on a free 127.0.0.1 port; needs `make`.
# Not run by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
. "$REPO/bench/lib.sh"

SIZE_SPEC=${BENCH_SIZE:-1G}
ROUNDS=${BENCH_ROUNDS:-3}
SIZE=$(numfmt --from=iec "${SIZE_SPEC%B}") || { echo "bad BENCH_SIZE $SIZE_SPEC" >&2; exit 2; }
bench_need_bins

WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/bucketfs-integrity.XXXXXX)}
mkdir -p "$WORK"/{s3data,mnt}
trap bench_cleanup EXIT

bench_start_s3rver
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER

head -c "$SIZE" /dev/urandom >"$WORK/local.bin"
SUM=$(sha256sum <"$WORK/local.bin" | cut -d' ' -f1)
head -c 48 /dev/urandom | base64 >"$WORK/hmac.key"
chmod 600 "$WORK/hmac.key"
/usr/bin/python3 - "$ENDPOINT" <<'EOF'
import sys, boto3
from botocore.config import Config
s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',
                  config=Config(s3={'addressing_style': 'path'}))
for b in ('off', 'require', 'base'):
    s3.create_bucket(Bucket=f'bench-{b}')
EOF

DROPPED=no
drop_caches() {
	sync
	if (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then DROPPED=yes; else DROPPED=no; fi
}
opts_for() { # mode -> -o string (cache_dir fresh for each mount)
	local o="endpoint=$ENDPOINT,path_style,region=us-east-1,cache_dir=$WORK/cache-$1,sync_close"
	[ "$1" = require ] && o+=",hmac_key_file=$WORK/hmac.key,hmac=require"
	echo "$o"
}
mount_bfs() {
	rm -rf "$WORK/cache-$1"
	local bin=$BFS
	[ "$1" = base ] && bin=$BENCH_BASE_BIN
	bench_mount "$bin" "bench-$1" "$(opts_for "$1")" "$WORK/bucketfs-$1.log"
}
now() { date +%s.%N; }

declare -A BEST_W BEST_R
run_mode() { # mode
	local m=$1 t0 t1 w r
	mount_bfs "$m"
	drop_caches
	t0=$(now)
	dd if="$WORK/local.bin" of="$WORK/mnt/f" bs=1M conv=fsync status=none
	t1=$(now)
	w=$(echo "$t1 - $t0" | bc -l)
	bench_unmount
	mount_bfs "$m"
	drop_caches
	t0=$(now)
	got=$(sha256sum <"$WORK/mnt/f" | cut -d' ' -f1)
	t1=$(now)
	r=$(echo "$t1 - $t0" | bc -l)
	bench_unmount
	[ "$got" = "$SUM" ] || { echo "bench: $m read back wrong data" >&2; exit 1; }
	if [ -z "${BEST_W[$m]:-}" ] || (( $(echo "$w < ${BEST_W[$m]}" | bc -l) )); then BEST_W[$m]=$w; fi
	if [ -z "${BEST_R[$m]:-}" ] || (( $(echo "$r < ${BEST_R[$m]}" | bc -l) )); then BEST_R[$m]=$r; fi
	printf 'round %d %-8s write %6.2f s  read %6.2f s\n' "$round" "$m" "$w" "$r" >&2
}

MODES=(off require)
[ -n "${BENCH_BASE_BIN:-}" ] && MODES+=(base)
for round in $(seq "$ROUNDS"); do
	order=("${MODES[@]}")
	(( round % 2 )) || order=($(printf '%s\n' "${MODES[@]}" | tac))
	for m in "${order[@]}"; do run_mode "$m"; done
done
# the read timing includes sha256sum of the data for the correctness check, in both modes alike

cat "$WORK/local.bin" >/dev/null # hash from the page cache: CPU cost only
t0=$(now); openssl dgst -sha256 "$WORK/local.bin" >/dev/null; t1=$(now)
SHA=$(echo "$t1 - $t0" | bc -l)

mib=$(echo "$SIZE / 1048576" | bc -l)
printf '\nbucketfs integrity cost: %s file, best of %d rounds, page caches dropped: %s\n' \
	"$SIZE_SPEC" "$ROUNDS" "$DROPPED"
if [ -n "${BENCH_BASE_BIN:-}" ]; then
	printf '%-18s %15s %15s %15s %11s %11s\n' "" "no integrity" "hmac=off" "hmac=require" \
		"off/none" "require/none"
else
	printf '%-18s %15s %15s %11s\n' "" "hmac=off" "hmac=require" "require/off"
fi
for what in write read; do
	if [ $what = write ]; then a=${BEST_W[off]}; b=${BEST_W[require]}; c=${BEST_W[base]:-}
	else a=${BEST_R[off]}; b=${BEST_R[require]}; c=${BEST_R[base]:-}; fi
	if [ -n "$c" ]; then
		printf '%-18s %9.1f MiB/s %9.1f MiB/s %9.1f MiB/s %11.3f %11.3f\n' "$what throughput" \
			"$(echo "$mib / $c" | bc -l)" "$(echo "$mib / $a" | bc -l)" \
			"$(echo "$mib / $b" | bc -l)" "$(echo "$c / $a" | bc -l)" "$(echo "$c / $b" | bc -l)"
	else
		printf '%-18s %9.1f MiB/s %9.1f MiB/s %11.3f\n' "$what throughput" \
			"$(echo "$mib / $a" | bc -l)" "$(echo "$mib / $b" | bc -l)" "$(echo "$a / $b" | bc -l)"
	fi
done
printf '%-28s %9.2f s\n' "openssl dgst -sha256 (floor)" "$SHA"
echo "ratios are throughputs relative to the baseline (1.000 = no cost; goal >= 0.90)"
