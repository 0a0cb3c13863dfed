/* fs/dir_times.c — a directory's mtime and ctime, stored with a bounded delay.
 *
 * An entry made or removed changes its directory's mtime and ctime (POSIX). This mount shows
 * the new times at once (bfs_listing_note sets dir->touched); S3 gets them at most
 * BFS_DIR_TIMES_DELAY_S later, in one metadata-only CopyObject of the directory's marker onto
 * itself (after a HEAD for its current metadata), however many entries changed meanwhile: no
 * request per create. A directory without a marker object (made by another S3 tool, or the
 * bucket root) has nowhere to keep times: it shows them in this mount only. The copy is
 * conditional (If-Match), so another mount's change of the directory's attributes made in
 * between is kept, with the later times. The upload workers run it (fs/upload.c), and the
 * last ones go at unmount. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "util/util.h"

void bfs_dir_times_note(struct bfs_fs *fs, struct bfs_inode *dir)
{
	if (dir == fs->root)
		return;
	pthread_mutex_lock(&dir->lock);
	/* a pending upload of the marker carries the times itself */
	bool later = dir->has_marker && dir->stage_fd < 0 && !bfs_is_dirty(dir) &&
		     !dir->times_due;
	if (later)
		dir->times_due = true;
	pthread_mutex_unlock(&dir->lock);
	if (later)
		bfs_upload_schedule_at(fs, dir, bfs_mono_ns() +
				       BFS_DIR_TIMES_DELAY_S * (int64_t)1000000000);
}

/* Raises the time header name in m to at least t; *changed tells if it did. */
static int raise_time(struct s3_meta *m, const char *name, const struct timespec *t,
		      bool *changed)
{
	struct timespec cur;
	const char *v = s3_meta_get(m, name);
	if (v && bfs_meta_parse_time(v, &cur) == 0 && !bfs_ts_before(&cur, t))
		return 0;
	*changed = true;
	return bfs_meta_set_time(m, name, t);
}

int bfs_dir_times_store(struct bfs_fs *fs, struct bfs_inode *dir)
{
	pthread_mutex_lock(&dir->lock);
	bool due = dir->times_due;
	dir->times_due = false;
	struct timespec t = dir->touched;
	pthread_mutex_unlock(&dir->lock);
	pthread_mutex_lock(&fs->lock);
	bool gone = dir->unlinked;
	pthread_mutex_unlock(&fs->lock);
	if (!due || gone || (t.tv_sec == 0 && t.tv_nsec == 0))
		return 0;
	char *key = bfs_inode_key(fs, dir);
	if (!key)
		return -ENOMEM;
	int rc = -ESTALE;
	struct s3_object res;
	s3_object_init(&res);
	for (int attempt = 0; attempt < 3 && rc == -ESTALE; attempt++) {
		/* an explicit utime or chmod stored the marker meanwhile (it clears touched):
		 * its times win */
		pthread_mutex_lock(&dir->lock);
		bool stored = dir->touched.tv_sec == 0 && dir->touched.tv_nsec == 0;
		if (!stored)
			t = dir->touched;
		pthread_mutex_unlock(&dir->lock);
		if (stored) {
			rc = 0;
			goto out;
		}
		struct s3_object cur;
		rc = s3_head(fs->s3, key, &cur);
		if (rc == -ENOENT) {
			rc = 0; /* the marker went (rmdir, or another tool): nothing to keep */
			goto out;
		}
		if (rc)
			break;
		bool changed = false;
		rc = raise_time(&cur.meta, "mtime", &t, &changed);
		if (rc == 0)
			rc = raise_time(&cur.meta, "ctime", &t, &changed);
		if (rc == 0 && !changed) {
			/* another mount stored later times already */
			snprintf(res.etag, sizeof(res.etag), "%s", cur.etag);
		} else {
			if (rc == 0)
				rc = bfs_integrity_seal_buf(fs->s3, fs->opts, key, "", 0,
							    &cur.meta);
			if (rc == 0)
				rc = s3_copy(fs->s3, key, key, &cur.meta,
					     "application/x-directory", cur.etag, &res);
		}
		if (rc == 0) {
			s3_meta_free(&res.meta);
			res.meta = cur.meta;
			s3_meta_init(&cur.meta);
		}
		s3_object_free(&cur);
	}
	pthread_mutex_lock(&dir->lock);
	if (rc == 0) {
		/* unless it changed again meanwhile, S3 has the times now */
		if (!bfs_ts_before(&t, &dir->touched))
			dir->touched = (struct timespec){ 0 };
		snprintf(dir->etag, sizeof(dir->etag), "%s", res.etag);
		s3_meta_free(&dir->meta);
		s3_meta_copy(&dir->meta, &res.meta);
	}
	/* on failure the next change in the directory tries again */
	pthread_mutex_unlock(&dir->lock);
	if (rc)
		bfs_log(BFS_LOG_WARN, "%s: cannot store the directory's times: %s", key,
			s3_last_error());
out:
	s3_object_free(&res);
	free(key);
	return rc;
}
