# bench/lib.sh — what the bench scripts share: the binaries they need, an s3rver on a free
# port, bucketfs mounted in the background, and the cleanup at exit. Sourced by bench/*.sh
# from the repository root with REPO set; WORK is the script's work directory.

S3RVER=$REPO/tests/s3server/node_modules/.bin/s3rver
BFS=$REPO/bin/bucketfs
S3PID= BFSPID=

# Exits (status 2) unless bin/bucketfs and tests/s3server's s3rver are there.
bench_need_bins() {
	[ -x "$BFS" ] || { echo "bench: $BFS missing: run make first" >&2; exit 2; }
	[ -x "$S3RVER" ] || { echo "bench: $S3RVER missing: run make deps" >&2; exit 2; }
}

# The EXIT trap: unmounts whatever is still mounted at $WORK/mnt or $WORK/mnt-*, stops
# bucketfs ($BFSPID) and s3rver ($S3PID), and removes $WORK unless it was given (BENCH_DIR).
bench_cleanup() {
	local m
	for m in "$WORK"/mnt "$WORK"/mnt-*; do
		if mountpoint -q "$m" 2>/dev/null; then fusermount3 -u "$m" || fusermount3 -uz "$m"; fi
	done
	[ -n "$BFSPID" ] && { kill "$BFSPID" 2>/dev/null || true; wait "$BFSPID" 2>/dev/null || true; }
	[ -n "$S3PID" ] && { kill "$S3PID" 2>/dev/null || true; wait "$S3PID" 2>/dev/null || true; }
	[ -z "${BENCH_DIR:-}" ] && rm -rf "$WORK"
	return 0
}

# Starts s3rver on a free 127.0.0.1 port, data in $WORK/s3data, log in $WORK/s3rver.log;
# sets S3PID, PORT and ENDPOINT. Exits (status 2) if it does not start. Node 20 needs the
# legacy OpenSSL provider for s3rver 3.7.
bench_start_s3rver() {
	NODE_OPTIONS=--openssl-legacy-provider "$S3RVER" -d "$WORK/s3data" -a 127.0.0.1 -p 0 \
		>"$WORK/s3rver.log" 2>&1 &
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
}

# bench_mount BIN BUCKET OPTS LOG: runs bucketfs binary BIN in the background (BFSPID) with
# BUCKET on $WORK/mnt and -o OPTS, output appended to LOG; waits up to 30 s for the mount,
# else exits (status 2) showing LOG.
bench_mount() {
	"$1" "$2" "$WORK/mnt" -f -o "$3" >>"$4" 2>&1 &
	BFSPID=$!
	for _ in $(seq 300); do mountpoint -q "$WORK/mnt" && return 0; sleep 0.1; done
	echo "bench: mount failed" >&2; cat "$4" >&2; exit 2
}

# Unmounts $WORK/mnt and waits for bucketfs to exit (after its uploads).
bench_unmount() {
	fusermount3 -u "$WORK/mnt"
	wait "$BFSPID" || true
	BFSPID=
}
