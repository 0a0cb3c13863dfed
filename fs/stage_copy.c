/* fs/stage_copy.c — the journal's data files are never changed under a committed record.
 *
 * close() commits a record saying "the first N bytes of data file ID become KEY" (fs/upload.c).
 * Until the upload, the file may be opened and changed again; if those changes went into
 * the same data file, a crash before the next close would recover the record's size with
 * some of the newer bytes in it, or a file truncated under its record: a state that never
 * existed, or nothing at all. So the first change after a commit that touches the committed
 * bytes (a write below N, a truncate below N, an open with O_TRUNC) moves the data to a new
 * entry: a copy of the file (copy_file_range: a reflink where the file system has them),
 * uncommitted until the next commit, which replaces the old record in the same LMDB
 * transaction (cache_dirty_commit_replacing). Appends never copy: recovery reads N bytes.
 *
 * The copy also keeps a running upload consistent: it reads the old file through its own
 * descriptor, so the bytes it sends and the digests it signed stay the same. A streaming
 * upload (fs/stream_upload.c) is cancelled instead: its later parts must be the new bytes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/util.h"

/* Copies the first len bytes of in to out (both at offset 0). */
static int copy_data(int in, int out, uint64_t len)
{
	loff_t ip = 0, op = 0;
	bool fallback = false;
	while ((uint64_t)ip < len) {
		size_t want = len - (uint64_t)ip > (1u << 30) ? 1u << 30 : (size_t)(len - (uint64_t)ip);
		ssize_t n = -1;
		if (!fallback) {
			n = copy_file_range(in, &ip, out, &op, want, 0);
			if (n < 0 && (errno == ENOSYS || errno == EXDEV || errno == EINVAL ||
				      errno == EOPNOTSUPP)) {
				fallback = true;
				continue;
			}
		} else {
			char buf[1 << 16];
			n = pread(in, buf, want < sizeof(buf) ? want : sizeof(buf), ip);
			if (n > 0 && pwrite(out, buf, (size_t)n, op) != n)
				n = -1;
			if (n > 0) {
				ip += n;
				op += n;
			}
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			break; /* the file is shorter (a sparse tail): ftruncate below */
	}
	if (ftruncate(out, (off_t)len) < 0)
		return -errno;
	return 0;
}

int bfs_stage_unseal(struct bfs_fs *fs, struct bfs_inode *ino, uint64_t from, uint64_t keep)
{
	if (ino->stage_fd < 0 || ino->attr_only || !ino->sealed || from >= ino->sealed_size)
		return 0;
	uint64_t id;
	int fd, rc = cache_dirty_create(fs->cache, &id, &fd);
	if (rc)
		return rc;
	rc = copy_data(ino->stage_fd, fd, keep);
	if (rc) {
		bfs_log(BFS_LOG_ERR, "cannot copy a journal entry before changing it: %s",
			strerror(-rc));
		close(fd);
		cache_dirty_remove(fs->cache, id);
		return rc;
	}
	/* a streaming upload reads the old file: the whole upload follows at close instead */
	bfs_stream_cancel(fs, ino);
	/* the committed entry stays what recovery finds until the next commit */
	ino->prev_id = ino->stage_id;
	close(ino->stage_fd);
	ino->stage_fd = fd;
	ino->stage_id = id;
	ino->sealed = false;
	ino->committed = false;
	return 0;
}
