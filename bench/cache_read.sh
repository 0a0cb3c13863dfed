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
. "$REPO/bench/lib.sh"

SIZE_SPEC=${BENCH_SIZE:-1G}
DD_BS=${BENCH_BS:-1M}
BLOCK_SIZE=${BENCH_BLOCK_SIZE:-1M}
SIZE=$(numfmt --from=iec "${SIZE_SPEC%B}") || { echo "bad BENCH_SIZE $SIZE_SPEC" >&2; exit 2; }
bench_need_bins

WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/bucketfs-bench.XXXXXX)}
mkdir -p "$WORK"/{s3data,mnt,cache}
trap bench_cleanup EXIT

# ---- S3 server on a free port ----
bench_start_s3rver
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
	bench_mount "$BFS" bench "endpoint=$ENDPOINT,path_style,region=us-east-1,cache_dir=$WORK/cache,block_size=$BLOCK_SIZE,cache_size=$((SIZE * 2 + (64 << 20)))" \
		"$WORK/bucketfs.log"
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
bench_unmount
mount_bfs
T_REMOUNT=$(timed_read "$WORK/mnt/big.bin")
SUM2=$(sha256sum <"$WORK/mnt/big.bin" | cut -d' ' -f1)
[ "$SUM2" = "$SUM" ] || { echo "bench: bucketfs returned wrong bytes" >&2; exit 2; }
STATS=$("$REPO/bin/bucketfs-cache" --cache-dir "$WORK/cache" stats 2>/dev/null | grep -E '^(blocks|bytes|hit_ratio) ' | tr -s ' ' | paste -sd ';' || true)
bench_unmount

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
