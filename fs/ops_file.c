/* fs/ops_file.c — open files: create, open, read, write, flush, release, fsync. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/util.h"

/* An open file handle (fi->fh). Owns a pin on ino. */
struct bfs_file {
	struct bfs_inode *ino;
	bool writer;
	struct bfs_ra ra; /* ino->lock */
};

/* Attributes fetched this recently, and not yet used by an open, count as revalidated for
 * close-to-open: the lookup that precedes an open has just asked S3. Every other open asks. */
#define OPEN_FRESH_NS (200 * 1000000LL)

int bfs_open_file(struct bfs_fs *fs, struct bfs_inode *ino, int flags, struct fuse_file_info *fi)
{
	bool writer = (flags & O_ACCMODE) != O_RDONLY;
	int rc = 0;
	bfs_bdi_tune(fs);
	pthread_mutex_lock(&ino->lock);
	bool local = bfs_is_dirty(ino) || ino->stage_fd >= 0;
	int64_t fetched = ino->attr_expire - fs->stat_ttl_ns;
	bool fresh = ino->open_fresh && bfs_mono_ns() - fetched <= OPEN_FRESH_NS;
	ino->open_fresh = false;
	pthread_mutex_unlock(&ino->lock);
	if (!local && !fresh) {
		pthread_mutex_lock(&ino->lock);
		char was[sizeof(ino->etag)];
		memcpy(was, ino->etag, sizeof(was));
		pthread_mutex_unlock(&ino->lock);
		rc = bfs_attr_refresh(fs, ino, true); /* close-to-open: see other writers' closes */
		if (rc)
			return rc;
		pthread_mutex_lock(&ino->lock);
		bool changed = strcmp(was, ino->etag) != 0;
		ino->open_fresh = false; /* used by this open */
		pthread_mutex_unlock(&ino->lock);
		/* another mount replaced it: the size the kernel holds is the old one */
		if (changed && fs->se)
			fuse_lowlevel_notify_inval_inode(fs->se, ino->nodeid, -1, 0);
	}
	struct bfs_file *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(&ino->lock);
	if (writer) {
		rc = bfs_stage_open(fs, ino, (flags & O_TRUNC) != 0);
		if (rc) {
			pthread_mutex_unlock(&ino->lock);
			free(f);
			return rc;
		}
		ino->open_writers++;
	} else if ((flags & O_TRUNC) && ino->st.st_size) {
		rc = -EACCES;
	}
	ino->open_count++;
	/* the kernel's page cache is kept while the object is the version it was filled from
	 * (another mount's change is a new ETag, seen by the HEAD above); local data being
	 * written is not a version yet */
	bool staged = ino->stage_fd >= 0 && !ino->attr_only;
	fi->keep_cache = !staged && ino->etag[0] && strcmp(ino->kcache_etag, ino->etag) == 0;
	memcpy(ino->kcache_etag, staged ? "" : ino->etag, staged ? 1 : sizeof(ino->kcache_etag));
	pthread_mutex_unlock(&ino->lock);
	f->ino = ino;
	f->writer = writer;
	bfs_inode_pin(fs, ino);
	fi->fh = (uintptr_t)f;
	return rc;
}

static void op_open(fuse_req_t req, fuse_ino_t nodeid, struct fuse_file_info *fi)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *ino = bfs_inode_get(fs, nodeid);
	if (!ino) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (fs->opts->read_only && (fi->flags & O_ACCMODE) != O_RDONLY) {
		bfs_inode_unpin(fs, ino);
		fuse_reply_err(req, EROFS);
		return;
	}
	int rc = bfs_open_file(fs, ino, fi->flags, fi);
	bfs_inode_unpin(fs, ino);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_open(req, fi);
}

struct fetch_ctx {
	struct bfs_fs *fs;
	struct bfs_inode *ino;
	const char *key;
	const char *etag;
	struct bfs_verify *verify; /* digests/MD5 of this version (fs/integrity.c) */
};

/* Bytes are verified before the cache stores them (bfs_integrity_fetch: refetch once, then
 * EIO naming the object). */
static ssize_t fetch_range(void *arg, uint64_t off, size_t len, void *buf)
{
	struct fetch_ctx *c = arg;
	return bfs_integrity_fetch(c->fs->s3, c->verify, c->key, c->etag[0] ? c->etag : NULL, off,
				   len, buf);
}

/* Cached blocks past cache_ttl: still the object S3 has? An open (close-to-open) that asked
 * S3 within cache_ttl already answered that; otherwise one HEAD. */
static int revalidate(void *arg, const char *key, const char *etag)
{
	struct fetch_ctx *c = arg;
	int64_t ttl = (int64_t)c->fs->opts->cache_ttl * 1000000000LL;
	pthread_mutex_lock(&c->ino->lock);
	int64_t fetched = c->ino->attr_expire - c->fs->stat_ttl_ns;
	bool confirmed = strcmp(c->ino->etag, etag) == 0 && bfs_mono_ns() - fetched < ttl;
	pthread_mutex_unlock(&c->ino->lock);
	if (confirmed)
		return 0;
	int rc = bfs_attr_refresh(c->fs, c->ino, true);
	if (rc)
		return rc;
	pthread_mutex_lock(&c->ino->lock);
	rc = strcmp(c->ino->etag, etag) == 0 ? 0 : -ESTALE;
	pthread_mutex_unlock(&c->ino->lock);
	if (rc)
		bfs_log(BFS_LOG_INFO, "%s changed in S3; cached blocks dropped", key);
	return rc;
}

/* Reads [off, off+size) of ino's object through the block cache; when the object changed
 * in S3 meanwhile, reads the new version once. */
static ssize_t read_object(struct bfs_fs *fs, struct bfs_inode *ino, char *buf, size_t size,
			   off_t off)
{
	ssize_t n = -ESTALE;
	for (int attempt = 0; attempt < 2 && n == -ESTALE; attempt++) {
		pthread_mutex_lock(&ino->lock);
		char etag[sizeof(ino->etag)];
		memcpy(etag, ino->etag, sizeof(etag));
		uint64_t fsize = (uint64_t)ino->st.st_size;
		char *key = bfs_data_key(fs, ino);
		struct s3_meta meta; /* the metadata of this etag, for verification */
		int mrc = s3_meta_copy(&meta, &ino->meta);
		pthread_mutex_unlock(&ino->lock);
		if ((uint64_t)off >= fsize || mrc) {
			free(key);
			if (mrc == 0)
				s3_meta_free(&meta);
			return mrc;
		}
		if (size > fsize - (uint64_t)off)
			size = (size_t)(fsize - (uint64_t)off);
		struct bfs_verify *v = NULL;
		n = key ? bfs_integrity_prepare(fs->opts, key, etag, fsize, &meta, &v) : -ENOMEM;
		s3_meta_free(&meta);
		if (n < 0) {
			free(key);
			return n;
		}
		struct fetch_ctx c = { fs, ino, key, etag, v };
		struct cache_source src = { fetch_range, revalidate, &c };
		n = cache_read_src(fs->cache, key, etag, fsize, (uint64_t)off, size, buf, &src);
		bfs_verify_free(v);
		free(key);
		if (n == -ESTALE && attempt == 0)
			bfs_attr_refresh(fs, ino, true); /* If-Match failed: learn the new ETag */
	}
	return n;
}

static void op_read(fuse_req_t req, fuse_ino_t nodeid, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)nodeid;
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_file *f = (struct bfs_file *)(uintptr_t)fi->fh;
	struct bfs_inode *ino = f->ino;
	char *buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n;
	pthread_mutex_lock(&ino->lock);
	while (ino->staging)
		pthread_cond_wait(&ino->cond, &ino->lock);
	uint64_t fsize = (uint64_t)ino->st.st_size;
	if ((uint64_t)off >= fsize) {
		pthread_mutex_unlock(&ino->lock);
		fuse_reply_buf(req, buf, 0);
		free(buf);
		return;
	}
	if (size > fsize - (uint64_t)off)
		size = (size_t)(fsize - (uint64_t)off);
	if (ino->stage_fd >= 0 && !ino->attr_only) {
		/* local data is the truth until it is uploaded */
		n = pread(ino->stage_fd, buf, size, off);
		if (n < 0)
			n = -errno;
		else if ((size_t)n < size) {
			memset(buf + n, 0, size - (size_t)n); /* sparse tail */
			n = (ssize_t)size;
		}
		pthread_mutex_unlock(&ino->lock);
	} else {
		pthread_mutex_unlock(&ino->lock);
		bfs_readahead_note(fs, ino, &f->ra, (uint64_t)off, size);
		n = read_object(fs, ino, buf, size, off);
	}
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

/* Writes into ino's staged data (made first if needed; a committed entry's bytes are
 * copied before they change): the count or -errno, *before the size until now.
 * ino->lock held. */
static ssize_t stage_write(struct bfs_fs *fs, struct bfs_inode *ino, const char *buf,
			   size_t size, off_t off, uint64_t *before)
{
	int rc = bfs_stage_open(fs, ino, false);
	if (rc == 0)
		rc = bfs_stage_unseal(fs, ino, (uint64_t)off, (uint64_t)ino->st.st_size);
	if (rc)
		return rc;
	*before = (uint64_t)ino->st.st_size;
	ssize_t n = pwrite(ino->stage_fd, buf, size, off);
	return n < 0 ? -errno : n;
}

static void op_write(fuse_req_t req, fuse_ino_t nodeid, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)nodeid;
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_file *f = (struct bfs_file *)(uintptr_t)fi->fh;
	struct bfs_inode *ino = f->ino;
	int rc = 0;
	ssize_t n = 0;
	pthread_mutex_lock(&ino->lock);
	uint64_t before = 0;
	n = stage_write(fs, ino, buf, size, off, &before);
	if (n == -ENOSPC) {
		/* the cache disk is full: clean cached blocks make room for written data */
		pthread_mutex_unlock(&ino->lock);
		uint64_t freed = 0;
		struct cache_stats cs;
		cache_stats_get(fs->cache, &cs);
		cache_prune(fs->cache, cs.bytes / 2 > size ? cs.bytes / 2 - size : 0, INT64_MIN,
			    NULL, &freed);
		bfs_log(BFS_LOG_WARN, "cache disk full: %llu bytes of cached blocks dropped",
			(unsigned long long)freed);
		pthread_mutex_lock(&ino->lock);
		n = stage_write(fs, ino, buf, size, off, &before);
	}
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	if ((uint64_t)off + (uint64_t)n > (uint64_t)ino->st.st_size) {
		ino->st.st_size = off + n;
		ino->st.st_blocks = (ino->st.st_size + 511) / 512;
	}
	/* parts the writer has left behind go to S3 now (fs/stream_upload.c) */
	if (n > 0)
		bfs_stream_note_write(fs, ino, (uint64_t)off, (uint64_t)n, before);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	ino->st.st_mtim = ino->st.st_ctim = now;
	/* writing clears set-user-ID and set-group-ID, as on a local file system */
	if (ino->st.st_mode & (S_ISUID | S_ISGID) && fuse_req_ctx(req)->uid != 0)
		ino->st.st_mode &= ~(mode_t)(S_ISUID | S_ISGID);
	bfs_mark_dirty(ino);
out:
	pthread_mutex_unlock(&ino->lock);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, (size_t)n);
}

/* Makes ino's changes durable: in the journal, and in S3 when sync or close-to-open. */
static int persist(struct bfs_fs *fs, struct bfs_inode *ino, bool sync)
{
	pthread_mutex_lock(&ino->lock);
	bool dirty = bfs_is_dirty(ino);
	int rc = dirty ? bfs_upload_commit(fs, ino) : 0;
	/* a hard-linked file's other names read S3: they must see the data at close */
	bool linked = ino->link_key != NULL;
	pthread_mutex_unlock(&ino->lock);
	if (rc || !dirty)
		return rc;
	if (sync)
		return bfs_upload_errno(bfs_upload_sync(fs, ino));
	if (bfs_sync_changes(fs) || linked)
		return bfs_upload_flush(fs, ino);
	bfs_upload_schedule(fs, ino, false);
	return 0;
}

static void op_flush(fuse_req_t req, fuse_ino_t nodeid, struct fuse_file_info *fi)
{
	(void)nodeid;
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_file *f = (struct bfs_file *)(uintptr_t)fi->fh;
	int rc = f->writer ? persist(fs, f->ino, false) : 0;
	fuse_reply_err(req, -rc);
}

static void op_fsync(fuse_req_t req, fuse_ino_t nodeid, int datasync, struct fuse_file_info *fi)
{
	(void)nodeid;
	(void)datasync;
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_file *f = (struct bfs_file *)(uintptr_t)fi->fh;
	int rc = persist(fs, f->ino, true);
	fuse_reply_err(req, -rc);
}

static void op_release(fuse_req_t req, fuse_ino_t nodeid, struct fuse_file_info *fi)
{
	(void)nodeid;
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_file *f = (struct bfs_file *)(uintptr_t)fi->fh;
	struct bfs_inode *ino = f->ino;
	pthread_mutex_lock(&ino->lock);
	ino->open_count--;
	if (f->writer)
		ino->open_writers--;
	bool sched = bfs_is_dirty(ino) && ino->open_writers == 0;
	if (ino->open_count == 0 && !bfs_is_dirty(ino) && ino->stage_fd >= 0 && !ino->uploading &&
	    !ino->committing && !ino->staging)
		bfs_stage_discard(fs, ino); /* opened for writing, never written: S3 has it all */
	pthread_mutex_unlock(&ino->lock);
	pthread_mutex_lock(&fs->lock);
	bool unlinked = ino->unlinked;
	pthread_mutex_unlock(&fs->lock);
	if (unlinked) {
		/* the last close of a removed file: its local copy goes */
		pthread_mutex_lock(&ino->lock);
		if (ino->open_count == 0)
			bfs_stage_discard(fs, ino);
		pthread_mutex_unlock(&ino->lock);
		sched = false;
	}
	if (sched)
		bfs_upload_schedule(fs, ino, false);
	bfs_inode_unpin(fs, ino);
	free(f);
	fuse_reply_err(req, 0);
}

/* create: a new, empty, dirty file; uploaded after its last close. */
static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct fuse_entry_param e;
	struct bfs_inode *ino = NULL;
	int rc = bfs_make_node(req, parent, name, S_IFREG | (mode & 07777), 0, NULL, true, &ino);
	if (rc)
		goto out;
	rc = bfs_open_file(fs, ino, (fi->flags & ~O_TRUNC) | O_RDWR, fi);
	if (rc)
		goto out;
	bfs_fill_entry(fs, ino, &e);
	bfs_inode_lookup_ref(fs, ino, 1);
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		bfs_inode_forget(fs, ino->nodeid, 1);
out:
	if (rc)
		fuse_reply_err(req, -rc);
	bfs_inode_unpin(fs, ino);
}

void bfs_ops_file(struct fuse_lowlevel_ops *ops)
{
	ops->open = op_open;
	ops->create = op_create;
	ops->read = op_read;
	ops->write = op_write;
	ops->flush = op_flush;
	ops->fsync = op_fsync;
	ops->release = op_release;
}
