/* fs/upload.c — write-back: staging files in the cache journal, folding of attribute changes
 * and renames into one upload, delayed uploads after close, crash recovery at mount.
 *
 * Every local change that S3 does not have yet bumps ino->gen. A journal record (data file
 * + serialized metadata and target key) is made durable before close()/fsync() report
 * success; the upload then writes gen's state under the inode's *current* key, deletes the
 * object at its previous key if it moved, and drops the journal entry. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/util.h"

#define SHUTDOWN_TRIES 3

bool bfs_upload_permanent(int rc)
{
	return rc == -ENAMETOOLONG || rc == -EINVAL || rc == -EFBIG || rc == -E2BIG ||
	       rc == -ENXIO || rc == -ENOSYS;
}

bool bfs_is_dirty(const struct bfs_inode *ino)
{
	return ino->gen != ino->uploaded_gen;
}

void bfs_mark_dirty(struct bfs_inode *ino)
{
	ino->gen++;
	ino->committed = false;
	ino->upload_err = 0;
}

/* ---- journal record (fs/record.c format): target key, previous key, metadata ---- */

/* attr_only: "a 1", the record changes the object's attributes, not its content */
static char *record_encode(const char *key, const char *remote, const struct s3_meta *m,
			   bool attr_only)
{
	char t[24]; /* when it was committed: of two records for one key, the later wins */
	snprintf(t, sizeof(t), "%lld", (long long)bfs_now_ns());
	struct bfs_field f[] = { { "k", key }, { "r", remote }, { "t", t },
				 { "a", attr_only ? "1" : NULL } };
	return bfs_record_encode("bfs1", f, 4, m);
}

/* The commit time of a record (0 if it has none). */
static long long record_time(const char *rec)
{
	struct bfs_field f[] = { { "t", NULL } };
	struct s3_meta m;
	if (bfs_record_decode(rec, rec ? strlen(rec) : 0, "bfs1", f, 1, &m))
		return 0;
	long long t = f[0].value ? strtoll(f[0].value, NULL, 10) : 0;
	bfs_record_fields_free(f, 1);
	s3_meta_free(&m);
	return t;
}

static int cmp_entry_key(const void *a, const void *b, void *arg)
{
	const struct cache_dirty *e = arg;
	return strcmp(e[*(const size_t *)a].key, e[*(const size_t *)b].key);
}

/* Which data entries a later one for the same key supersedes (a file renamed onto a name
 * whose own pending entry was about to be dropped when the crash came): a malloc'd array
 * of n flags, or NULL (out of memory: nothing is dropped). Sorted by key, O(n log n). */
static bool *superseded_entries(const struct cache_dirty *ents, size_t n)
{
	bool *drop = calloc(n ? n : 1, sizeof(*drop));
	size_t *ix = malloc((n ? n : 1) * sizeof(*ix)), m = 0;
	if (!drop || !ix) {
		free(ix);
		return drop;
	}
	for (size_t i = 0; i < n; i++)
		if (ents[i].key && !bfs_link_intent_is(ents[i].meta))
			ix[m++] = i;
	qsort_r(ix, m, sizeof(*ix), cmp_entry_key, (void *)ents);
	for (size_t a = 0, b; a < m; a = b) {
		for (b = a + 1; b < m && strcmp(ents[ix[b]].key, ents[ix[a]].key) == 0; b++)
			;
		if (b - a < 2)
			continue;
		size_t best = ix[a];
		long long bt = record_time(ents[best].meta);
		for (size_t k = a + 1; k < b; k++) {
			long long t = record_time(ents[ix[k]].meta);
			if (t > bt || (t == bt && ents[ix[k]].id > ents[best].id)) {
				best = ix[k];
				bt = t;
			}
		}
		for (size_t k = a; k < b; k++)
			drop[ix[k]] = ix[k] != best;
	}
	free(ix);
	return drop;
}

/* Parses a record into key, remote key, metadata (all owned by the caller) and whether it
 * changes attributes only. */
static int record_decode(const char *rec, char **key, char **remote, struct s3_meta *m,
			 bool *attr_only)
{
	struct bfs_field f[] = { { "k", NULL }, { "r", NULL }, { "a", NULL } };
	int rc = bfs_record_decode(rec, rec ? strlen(rec) : 0, "bfs1", f, 3, m);
	if (rc == 0 && !f[0].value) {
		bfs_record_fields_free(f, 3);
		s3_meta_free(m);
		rc = -EINVAL;
	}
	*key = rc ? NULL : (char *)f[0].value;
	*remote = rc ? NULL : (char *)f[1].value;
	*attr_only = rc == 0 && f[2].value && strcmp(f[2].value, "1") == 0;
	if (rc == 0)
		free((char *)f[2].value);
	return rc;
}

/* The Content-Type an upload sends when m has none of its own (S3_HDR_CONTENT_TYPE: the
 * object's, or what the user set): a regular file's is guessed from its name. */
static const char *content_type_of(mode_t mode, const char *key)
{
	return S_ISDIR(mode) ? "application/x-directory"
	       : S_ISREG(mode) ? bfs_mime_type(key) : "application/octet-stream";
}

static void wait_idle(struct bfs_inode *ino)
{
	while (ino->staging || ino->committing)
		pthread_cond_wait(&ino->cond, &ino->lock);
}

/* ---- staging ---- */

int bfs_stage_open(struct bfs_fs *fs, struct bfs_inode *ino, bool trunc)
{
	wait_idle(ino);
	if (ino->attr_only)
		bfs_inode_wait_busy(ino); /* its CopyObject changes the ETag we download */
	if (ino->stage_fd >= 0 && !ino->attr_only) {
		if (trunc && S_ISREG(ino->st.st_mode) && ino->st.st_size != 0) {
			int rc = bfs_stage_unseal(fs, ino, 0, 0);
			if (rc)
				return rc;
			if (ftruncate(ino->stage_fd, 0) < 0)
				return -errno;
			bfs_stream_note_truncate(fs, ino, 0);
			ino->st.st_size = 0;
			bfs_mark_dirty(ino);
		}
		return 0;
	}
	uint64_t id;
	int fd, rc;
	/* an entry with attribute changes only gets the content now; until the next commit
	 * its record still says "attributes only", so a crash keeps those */
	bool reuse = ino->stage_fd >= 0;
	if (reuse) {
		fd = ino->stage_fd;
		id = ino->stage_id;
		rc = 0;
	} else if ((rc = cache_dirty_create(fs->cache, &id, &fd))) {
		return rc;
	}
	char *key = bfs_data_key(fs, ino);
	if (!key) {
		rc = -ENOMEM;
		goto fail;
	}
	bool have_remote = ino->etag[0] != '\0';
	if (S_ISREG(ino->st.st_mode) && !trunc && have_remote && ino->st.st_size > 0) {
		char etag[sizeof(ino->etag)];
		memcpy(etag, ino->etag, sizeof(etag));
		struct s3_meta meta;
		rc = s3_meta_copy(&meta, &ino->meta);
		if (rc)
			goto fail;
		uint64_t size = (uint64_t)ino->st.st_size;
		ino->staging = true;
		pthread_mutex_unlock(&ino->lock);
		struct s3_object info;
		rc = s3_get_to_fd(fs->s3, key, fd, etag, NULL, &info);
		if (rc == 0)
			s3_object_free(&info);
		/* what we start from must be what was signed: a later upload re-signs it */
		if (rc == 0)
			rc = bfs_integrity_verify_fd(fs, key, etag, &meta, fd, size);
		s3_meta_free(&meta);
		pthread_mutex_lock(&ino->lock);
		ino->staging = false;
		pthread_cond_broadcast(&ino->cond);
		if (rc) {
			bfs_log(BFS_LOG_ERR, "%s: cannot fetch content for writing: %s", key,
				s3_last_error());
			if (rc == -ESTALE)
				ino->attr_expire = 0; /* changed in S3: reread attributes */
			goto fail;
		}
	} else if (S_ISLNK(ino->st.st_mode) && ino->link_target) {
		size_t n = strlen(ino->link_target);
		if (pwrite(fd, ino->link_target, n, 0) != (ssize_t)n) {
			rc = -errno;
			goto fail;
		}
	}
	if (trunc && S_ISREG(ino->st.st_mode) && ino->st.st_size != 0) {
		ino->st.st_size = 0;
		bfs_mark_dirty(ino);
	}
	ino->stage_fd = fd;
	ino->stage_id = id;
	ino->sealed = false;
	if (reuse) {
		ino->attr_only = false;
		ino->committed = false; /* the record must say "content" now */
	}
	/* remote_key: where the object is now, to delete after an upload under a new name.
	 * A hard-linked file's content never moves (and is shared): nothing to delete. */
	free(ino->remote_key);
	ino->remote_key = have_remote && !ino->link_key ? key : NULL;
	if (!ino->remote_key)
		free(key);
	memcpy(ino->base_etag, ino->etag, sizeof(ino->base_etag));
	return 0;
fail:
	free(key);
	if (!reuse) {
		close(fd);
		cache_dirty_remove(fs->cache, id);
	}
	return rc;
}

int bfs_stage_attrs(struct bfs_fs *fs, struct bfs_inode *ino)
{
	uint64_t id;
	int fd, rc = cache_dirty_create(fs->cache, &id, &fd);
	if (rc)
		return rc;
	ino->stage_fd = fd;
	ino->stage_id = id;
	ino->sealed = false;
	ino->attr_only = true;
	free(ino->remote_key);
	ino->remote_key = NULL; /* the object stays where it is */
	memcpy(ino->base_etag, ino->etag, sizeof(ino->base_etag));
	return 0;
}

/* The committed entry a changed copy replaces (bfs_stage_unseal) goes too. */
static void drop_prev(struct bfs_fs *fs, struct bfs_inode *ino)
{
	if (ino->prev_id)
		cache_dirty_remove(fs->cache, ino->prev_id);
	ino->prev_id = 0;
}

void bfs_stage_discard(struct bfs_fs *fs, struct bfs_inode *ino)
{
	wait_idle(ino);
	bfs_stream_cancel(fs, ino);
	if (ino->stage_fd >= 0) {
		close(ino->stage_fd);
		cache_dirty_remove(fs->cache, ino->stage_id);
		ino->stage_fd = -1;
	}
	drop_prev(fs, ino);
	ino->sealed = false;
	free(ino->remote_key);
	ino->remote_key = NULL;
	ino->attr_only = false;
	ino->uploaded_gen = ino->gen;
	ino->committed = false;
}

void bfs_stage_forget(struct bfs_fs *fs, struct bfs_inode *ino)
{
	wait_idle(ino);
	bfs_stream_cancel(fs, ino); /* never uploaded now */
	if (ino->stage_fd >= 0 && cache_dirty_forget(fs->cache, ino->stage_id) == 0) {
		ino->committed = false;
		ino->sealed = false;
	}
	drop_prev(fs, ino); /* nothing of it is recovered now */
}

int bfs_upload_commit(struct bfs_fs *fs, struct bfs_inode *ino)
{
	wait_idle(ino);
	if (ino->committed || !bfs_is_dirty(ino) || ino->stage_fd < 0)
		return 0;
	pthread_mutex_lock(&fs->lock);
	bool gone = ino->unlinked && !ino->link_key;
	pthread_mutex_unlock(&fs->lock);
	if (gone)
		return 0; /* removed, still open: never uploaded, so never recovered either */
	char *key = bfs_data_key(fs, ino);
	if (!key)
		return -ENOMEM;
	struct s3_meta m;
	int rc = bfs_attr_meta(ino, key, &m);
	if (rc) {
		free(key);
		return rc;
	}
	char *rec = record_encode(key, ino->remote_key, &m, ino->attr_only);
	s3_meta_free(&m);
	if (!rec) {
		free(key);
		return -ENOMEM;
	}
	struct cache_dirty d = {
		.id = ino->stage_id,
		.key = key,
		.base_etag = ino->base_etag,
		.meta = rec,
		.size = S_ISREG(ino->st.st_mode) ? (uint64_t)ino->st.st_size : 0,
	};
	uint64_t gen = ino->gen, prev = ino->prev_id;
	ino->committing = true;
	pthread_mutex_unlock(&ino->lock);
	rc = cache_dirty_commit_replacing(fs->cache, &d, prev);
	pthread_mutex_lock(&ino->lock);
	ino->committing = false;
	pthread_cond_broadcast(&ino->cond);
	free(key);
	free(rec);
	if (rc) {
		bfs_log(BFS_LOG_ERR, "journal commit failed: %s", strerror(-rc));
		return rc;
	}
	ino->prev_id = 0;
	/* its bytes are what recovery uploads now: later changes go to a copy */
	ino->sealed = !ino->attr_only;
	ino->sealed_size = d.size;
	if (ino->gen == gen)
		ino->committed = true;
	return rc;
}

/* ---- the upload itself ---- */

/* Uploads ino's state; called without locks, ino pinned. force: upload even while open for
 * writing (fsync, close); retry: also what S3 refused for good, unchanged since (fsync: the
 * cause may be gone), else that refusal is returned. Returns the upload's result. */
static int do_upload(struct bfs_fs *fs, struct bfs_inode *ino, bool force, bool retry)
{
	int rc = 0;
	char *key = NULL, *old = NULL;
	int fd = -1;
	bool linked = false;
	struct bfs_stream *stream = NULL; /* the parts sent while it was written */
	struct s3_meta m;
	s3_meta_init(&m);

	pthread_mutex_lock(&ino->lock);
	/* a rename is replacing this name (fs/ops_rename.c): its record names what S3 holds
	 * here now, so nothing may be written here until it ends; an fsync waits for it */
again:
	for (;;) {
		bfs_inode_wait_busy(ino);
		if (!ino->held || !force)
			break;
		pthread_cond_wait(&ino->cond, &ino->lock);
	}
	if (ino->held || !bfs_is_dirty(ino) || ino->stage_fd < 0)
		goto unlock;
	pthread_mutex_lock(&fs->lock);
	bool unlinked = ino->unlinked;
	pthread_mutex_unlock(&fs->lock);
	if (unlinked && !ino->link_key) {
		/* removed while open: nothing to upload, and its data goes at the last close.
		 * (A removed name of a hard-linked file still writes the content its other
		 * names share.) */
		if (ino->open_count == 0)
			bfs_stage_discard(fs, ino);
		goto unlock;
	}
	if (ino->open_writers > 0 && !force)
		goto unlock; /* the last close schedules it again */
	if (!retry && ino->upload_err && bfs_upload_permanent(ino->upload_err)) {
		rc = force ? ino->upload_err : 0;
		goto unlock; /* refused as it is: the next change (it clears upload_err) or an
			      * fsync tries again */
	}
	rc = bfs_upload_commit(fs, ino);
	if (rc)
		goto unlock;
	if (ino->held)
		goto again; /* it began while the record was written (the lock was let go) */
	uint64_t gen = ino->gen;
	mode_t mode = ino->st.st_mode;
	uint64_t size = S_ISREG(mode) ? (uint64_t)ino->st.st_size
		      : S_ISLNK(mode) && ino->link_target ? strlen(ino->link_target) : 0;
	key = bfs_data_key(fs, ino);
	if (!key) {
		rc = -ENOMEM;
		goto unlock;
	}
	rc = bfs_attr_meta(ino, key, &m);
	if (rc)
		goto unlock;
	fd = dup(ino->stage_fd);
	if (fd < 0) {
		rc = -errno;
		goto unlock;
	}
	bool attr_only = ino->attr_only;
	char base[sizeof(ino->base_etag)];
	memcpy(base, ino->base_etag, sizeof(base));
	/* attributes only: the content keeps its digests, the new metadata is signed again */
	if (attr_only)
		rc = bfs_integrity_resign(fs->opts, key, &ino->meta, size, key, &m);
	if (rc)
		goto unlock;
	if (!attr_only)
		stream = bfs_stream_take(ino);
	ino->uploading = true;
	pthread_mutex_unlock(&ino->lock);

	struct s3_object obj;
	linked = ino->link_key != NULL;
	if (attr_only) {
		/* one CopyObject onto itself, only if it is still the object we changed */
		rc = s3_copy(fs->s3, key, key, &m, content_type_of(mode, key),
			     base[0] ? base : NULL, &obj);
		if (rc == -ESTALE || rc == -ENOENT) {
			bfs_log(BFS_LOG_WARN, "%s changed in S3 before its attribute change was "
				"stored; the change is dropped", key);
			pthread_mutex_lock(&ino->lock);
			ino->uploading = false;
			pthread_cond_broadcast(&ino->cond);
			bfs_stage_discard(fs, ino);
			ino->attr_expire = 0; /* reread what is there now */
			rc = 0;
			goto unlock;
		}
	} else {
		if (linked)
			rc = bfs_link_fresh_nlink(fs, key, &m); /* other names may have come or gone */
		/* a new object's type, kept with its metadata from now on (rename, later
		 * writes) */
		if (rc == 0 && !s3_meta_get(&m, S3_HDR_CONTENT_TYPE))
			rc = s3_meta_set(&m, S3_HDR_CONTENT_TYPE, content_type_of(mode, key));
		bool streamed = false;
		if (rc == 0 && stream) {
			/* the tail, Complete, one CopyObject to key with the sealed metadata
			 * (docs/streaming.md); whatever went wrong, the whole upload follows */
			streamed = bfs_stream_finish(stream, key, size, NULL, &m, &obj) == 0;
			stream = NULL;
		}
		/* digests + signature (docs/integrity.md), then the PUT */
		if (rc == 0 && !streamed)
			rc = bfs_integrity_seal(fs->s3, fs->opts, key, fd, size, &m);
		if (rc == 0 && !streamed)
			rc = s3_put_fd(fs->s3, key, fd, size, NULL, &m, &obj);
		bfs_stream_drop(stream); /* not finished (the link count could not be read) */
	}

	pthread_mutex_lock(&ino->lock);
	ino->uploading = false;
	pthread_cond_broadcast(&ino->cond);
	if (rc) {
		ino->upload_err = rc;
		ino->upload_err_at = bfs_mono_ns();
		/* the first failure in a row is logged whole; the retries only at debug level */
		bfs_log(ino->upload_tries++ ? BFS_LOG_DEBUG : BFS_LOG_ERR,
			"%s: upload failed (%s)%s; kept in the journal: %s", key, strerror(-rc),
			bfs_upload_permanent(rc) ? ", not retried until the file changes or the next "
			"mount" : "", s3_last_error());
		goto unlock;
	}
	ino->upload_tries = 0;
	ino->upload_err = 0;
	snprintf(ino->etag, sizeof(ino->etag), "%s", obj.etag);
	s3_object_free(&obj);
	s3_meta_free(&ino->meta);
	ino->meta = m;
	s3_meta_init(&m);
	ino->meta_loaded = true;
	if (S_ISDIR(mode))
		ino->has_marker = true;
	if (ino->remote_key && strcmp(ino->remote_key, key) != 0)
		old = ino->remote_key;
	else
		free(ino->remote_key);
	ino->remote_key = strdup(key);
	ino->uploaded_gen = gen;
	/* S3 holds our version now: later changes start from it (also for the conflict check
	 * of crash recovery, once they are committed) */
	memcpy(ino->base_etag, ino->etag, sizeof(ino->base_etag));
	if (bfs_is_dirty(ino)) {
		/* changed while it uploaded: the journal record must name the new base, or a
		 * crash now would take our own upload for another writer's change */
		ino->committed = false;
		int crc = bfs_upload_commit(fs, ino);
		if (crc)
			bfs_log(BFS_LOG_WARN, "%s: journal record not updated after the upload: %s",
				key, strerror(-crc));
	} else {
		/* S3 has everything: the journal entry goes */
		close(ino->stage_fd);
		cache_dirty_remove(fs->cache, ino->stage_id);
		ino->stage_fd = -1;
		drop_prev(fs, ino);
		ino->sealed = false;
		free(ino->remote_key);
		ino->remote_key = NULL;
	}
	ino->attr_expire = bfs_mono_ns() + fs->stat_ttl_ns;
unlock:
	pthread_mutex_unlock(&ino->lock);
	if (old) {
		int drc = s3_delete(fs->s3, old);
		if (drc)
			bfs_log(BFS_LOG_WARN, "%s: cannot delete the old name after rename: %s", old,
				s3_last_error());
		free(old);
	}
	if (fd >= 0)
		close(fd);
	if (rc == 0 && key && linked)
		bfs_link_changed(fs, ino, key); /* the other names show the new content */
	free(key);
	s3_meta_free(&m);
	return rc;
}

/* do_upload(force), and the failure that left ino dirty if it skipped the upload */
static int upload_now(struct bfs_fs *fs, struct bfs_inode *ino, bool retry)
{
	int rc = do_upload(fs, ino, true, retry);
	if (rc == 0) {
		pthread_mutex_lock(&ino->lock);
		if (bfs_is_dirty(ino) && ino->upload_err)
			rc = ino->upload_err;
		pthread_mutex_unlock(&ino->lock);
	}
	return rc;
}

int bfs_upload_errno(int rc)
{
	return rc == -EBADMSG || rc == -ECONNRESET || rc == -ETIMEDOUT || rc == -EHOSTUNREACH ||
		       rc == -ECONNREFUSED || rc == -ENETUNREACH
		       ? -EIO
		       : rc;
}

/* A close right after an fsync that failed, with nothing changed since, reports that
 * failure instead of waiting for the server all over again (the worker retries). */
#define FLUSH_REUSE_NS (2 * 1000000000LL)

int bfs_upload_flush(struct bfs_fs *fs, struct bfs_inode *ino)
{
	pthread_mutex_lock(&ino->lock);
	int recent = bfs_is_dirty(ino) && ino->upload_err &&
		     bfs_mono_ns() - ino->upload_err_at < FLUSH_REUSE_NS ? ino->upload_err : 0;
	pthread_mutex_unlock(&ino->lock);
	if (recent) {
		bfs_upload_schedule(fs, ino, false);
		return bfs_upload_errno(recent);
	}
	return bfs_upload_errno(upload_now(fs, ino, false));
}

int bfs_upload_sync(struct bfs_fs *fs, struct bfs_inode *ino)
{
	return upload_now(fs, ino, true);
}

static void enqueue_locked(struct bfs_fs *fs, struct bfs_inode *ino, int64_t due)
{
	ino->upload_due = due;
	if (ino->queued)
		return;
	ino->queued = true;
	ino->pins++;
	ino->qnext = NULL;
	struct bfs_inode **pp = &fs->qhead;
	while (*pp && (*pp)->upload_due <= due)
		pp = &(*pp)->qnext;
	ino->qnext = *pp;
	*pp = ino;
	pthread_cond_signal(&fs->upload_cond);
}

void bfs_upload_schedule(struct bfs_fs *fs, struct bfs_inode *ino, bool now)
{
	int64_t due = bfs_mono_ns() + (now ? 0 : fs->upload_delay_ns);
	pthread_mutex_lock(&fs->lock);
	enqueue_locked(fs, ino, due);
	pthread_mutex_unlock(&fs->lock);
}

void bfs_upload_schedule_at(struct bfs_fs *fs, struct bfs_inode *ino, int64_t due)
{
	pthread_mutex_lock(&fs->lock);
	if (!ino->queued)
		enqueue_locked(fs, ino, due);
	pthread_mutex_unlock(&fs->lock);
}

static void *worker(void *arg)
{
	struct bfs_fs *fs = arg;
	pthread_mutex_lock(&fs->lock);
	for (;;) {
		struct bfs_inode *ino = fs->qhead;
		if (!ino) {
			if (fs->stopping)
				break;
			pthread_cond_wait(&fs->upload_cond, &fs->lock);
			continue;
		}
		int64_t now = bfs_mono_ns();
		if (!fs->stopping && ino->upload_due > now) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int64_t wait = ino->upload_due - now;
			ts.tv_sec += wait / 1000000000;
			ts.tv_nsec += wait % 1000000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&fs->upload_cond, &fs->lock, &ts);
			continue;
		}
		fs->qhead = ino->qnext;
		ino->queued = false;
		fs->uploads_running++;
		pthread_mutex_unlock(&fs->lock);

		pthread_mutex_lock(&ino->lock);
		bool times = ino->times_due;
		pthread_mutex_unlock(&ino->lock);
		if (times)
			bfs_dir_times_store(fs, ino);
		/* at unmount nobody writes any more, even if a release never arrived */
		int rc = do_upload(fs, ino, fs->stopping, fs->stopping);

		pthread_mutex_lock(&ino->lock);
		bool again = bfs_is_dirty(ino) && ino->stage_fd >= 0 &&
			     (ino->open_writers == 0 || fs->stopping);
		unsigned tries = ino->upload_tries;
		pthread_mutex_unlock(&ino->lock);
		pthread_mutex_lock(&fs->lock);
		fs->uploads_running--;
		if (again && !ino->unlinked && !(rc && bfs_upload_permanent(rc))) {
			if (rc && fs->stopping && tries >= SHUTDOWN_TRIES) {
				bfs_log(BFS_LOG_ERR, "giving up uploading at unmount; the data stays in "
					"the journal and is uploaded at the next mount");
			} else {
				/* retry failures with backoff: 1 s, 2 s, ... up to 60 s */
				int64_t backoff = rc ? (int64_t)1000000000 << (tries < 6 ? tries : 6)
						     : fs->upload_delay_ns;
				if (backoff > 60 * (int64_t)1000000000)
					backoff = 60 * (int64_t)1000000000;
				enqueue_locked(fs, ino, bfs_mono_ns() + (fs->stopping ? 0 : backoff));
			}
		}
		pthread_cond_broadcast(&fs->idle_cond);
		pthread_mutex_unlock(&fs->lock);
		bfs_inode_unpin(fs, ino); /* the queue's pin */
		pthread_mutex_lock(&fs->lock);
	}
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

int bfs_upload_start(struct bfs_fs *fs)
{
	fs->nworkers = 4;
	fs->workers = calloc((size_t)fs->nworkers, sizeof(*fs->workers));
	if (!fs->workers)
		return -ENOMEM;
	for (int i = 0; i < fs->nworkers; i++) {
		int rc = pthread_create(&fs->workers[i], NULL, worker, fs);
		if (rc) {
			fs->nworkers = i;
			return -rc;
		}
	}
	return 0;
}

void bfs_upload_stop(struct bfs_fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	/* every inode with staged data gets its upload now: one whose last close was still
	 * open for writing when its turn came, or whose release the kernel never sent
	 * (unmount aborts outstanding requests), is not on the queue */
	for (size_t b = 0; b < fs->nbuckets; b++)
		for (struct bfs_inode *i = fs->by_id[b]; i; i = i->hnext_id)
			if (!i->unlinked && __atomic_load_n(&i->stage_fd, __ATOMIC_RELAXED) >= 0)
				enqueue_locked(fs, i, 0);
	fs->stopping = true;
	pthread_cond_broadcast(&fs->upload_cond);
	pthread_mutex_unlock(&fs->lock);
	for (int i = 0; i < fs->nworkers; i++)
		pthread_join(fs->workers[i], NULL);
	free(fs->workers);
	fs->workers = NULL;
	fs->nworkers = 0;
}

/* ---- recovery ---- */

/* An attribute change of an object (bfs_stage_attrs): applied if the object is still the
 * one it changed, else dropped with a warning (somebody replaced it since). */
static int recover_attrs(struct bfs_fs *fs, const struct cache_dirty *d, const char *key,
			 struct s3_meta *m)
{
	struct s3_object cur;
	int rc = s3_head(fs->s3, key, &cur);
	if (rc == 0 && strcmp(cur.etag, d->base_etag ? d->base_etag : "") == 0) {
		const char *ms = s3_meta_get(m, "mode");
		mode_t mode = ms ? (mode_t)strtoul(ms, NULL, 10) : S_IFREG;
		rc = bfs_integrity_resign(fs->opts, key, &cur.meta, cur.size, key, m);
		if (rc == 0)
			rc = s3_copy(fs->s3, key, key, m, content_type_of(mode, key), cur.etag,
				     NULL);
		if (rc == 0)
			bfs_log(BFS_LOG_INFO, "recovered the attributes of %s from the write-back "
				"journal", key);
	} else if (rc == 0 || rc == -ENOENT) {
		bfs_log(BFS_LOG_WARN, "%s changed in S3 before its attribute change was stored; "
			"the change is dropped", key);
		rc = 0;
	}
	if (rc == 0 || rc == -ESTALE)
		rc = cache_dirty_remove(fs->cache, d->id);
	else
		bfs_log(BFS_LOG_ERR, "%s: recovery of its attributes failed, kept in the journal: "
			"%s", key, s3_last_error());
	s3_object_free(&cur);
	return rc;
}

static int recover_one(struct bfs_fs *fs, const struct cache_dirty *d)
{
	char *key = NULL, *remote = NULL, *target = NULL;
	struct s3_meta m;
	int fd = -1;
	bool attr_only;
	int rc = record_decode(d->meta, &key, &remote, &m, &attr_only);
	if (rc) {
		bfs_log(BFS_LOG_ERR, "journal entry %" PRIu64 " unreadable; left in place", d->id);
		return rc;
	}
	if (attr_only) {
		rc = recover_attrs(fs, d, key, &m);
		goto out;
	}
	char path[4096];
	rc = cache_dirty_path(fs->cache, d->id, path, sizeof(path));
	if (rc)
		goto out;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	/* did somebody else change the object since we started from it? */
	struct s3_object cur;
	rc = s3_head(fs->s3, key, &cur);
	bool conflict = false;
	if (rc == 0) {
		conflict = strcmp(cur.etag, d->base_etag ? d->base_etag : "") != 0;
		/* our own upload that finished just before the crash, before the journal entry
		 * went: not somebody else's change */
		if (conflict && bfs_integrity_same_content(&cur, fd, d->size))
			conflict = false;
		s3_object_free(&cur);
	} else if (rc == -ENOENT) {
		conflict = false;
		rc = 0;
	} else {
		goto out;
	}
	if (conflict) {
		size_t kl = strlen(key);
		bool dir = kl && key[kl - 1] == '/';
		if (asprintf(&target, "%.*s.bucketfs-conflict-%lld%s", (int)(dir ? kl - 1 : kl), key,
			     (long long)(bfs_now_ns() / 1000000000), dir ? "/" : "") < 0) {
			target = NULL;
			rc = -ENOMEM;
			goto out;
		}
		bfs_log(BFS_LOG_WARN, "%s changed in S3 while our write was pending; our version "
			"is kept as %s", key, target);
	}
	const char *ms = s3_meta_get(&m, "mode");
	mode_t mode = ms ? (mode_t)strtoul(ms, NULL, 10) : S_IFREG;
	rc = bfs_integrity_seal(fs->s3, fs->opts, target ? target : key, fd, d->size, &m);
	if (rc) {
		/* reading its data file, or storing its digest list: the seal logged which */
		bfs_log(BFS_LOG_ERR, "%s: journal entry %" PRIu64 " not digested (%s); kept in "
			"the journal", key, d->id, strerror(-rc));
		goto out;
	}
	rc = s3_put_fd(fs->s3, target ? target : key, fd, d->size, content_type_of(mode, key),
		       &m, NULL);
	if (rc) {
		bfs_log(BFS_LOG_ERR, "%s: recovery upload failed, kept in the journal: %s", key,
			s3_last_error());
		goto out;
	}
	if (remote && strcmp(remote, key) != 0 && !conflict)
		s3_delete(fs->s3, remote);
	bfs_log(BFS_LOG_INFO, "recovered %s from the write-back journal", target ? target : key);
	rc = cache_dirty_remove(fs->cache, d->id);
out:
	if (fd >= 0)
		close(fd);
	free(key);
	free(remote);
	free(target);
	s3_meta_free(&m);
	return rc;
}

int bfs_upload_recover(struct bfs_fs *fs)
{
	struct cache_dirty *ents = NULL;
	size_t n = 0;
	int rc = cache_dirty_list(fs->cache, &ents, &n);
	if (rc)
		return rc;
	int first = 0;
	bool *drop = superseded_entries(ents, n);
	/* data first: an upload may replace a name that a hard-link change removed */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			if (bfs_link_intent_is(ents[i].meta) != (pass == 1))
				continue;
			if (!pass && drop && drop[i]) {
				bfs_log(BFS_LOG_INFO, "%s: journal entry %" PRIu64 " replaced by a later "
					"one; dropped", ents[i].key, ents[i].id);
				cache_dirty_remove(fs->cache, ents[i].id);
				continue;
			}
			int r = pass ? bfs_link_intent_recover(fs, &ents[i]) : recover_one(fs, &ents[i]);
			if (r && !first)
				first = r;
		}
	}
	free(drop);
	for (size_t i = 0; i < n; i++)
		cache_dirty_free(&ents[i]);
	free(ents);
	return first;
}
