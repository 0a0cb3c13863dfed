/* fs/ops_entry.c — names and attributes: lookup, forget, getattr, setattr, mknod, mkdir,
 * symlink, readlink, unlink, rmdir, link. (rename is in ops_rename.c.) */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/util.h"

static void reply_entry(fuse_req_t req, struct bfs_fs *fs, struct bfs_inode *ino)
{
	struct fuse_entry_param e;
	bfs_fill_entry(fs, ino, &e);
	bfs_inode_lookup_ref(fs, ino, 1);
	if (fuse_reply_entry(req, &e) == -ENOENT)
		bfs_inode_forget(fs, ino->nodeid, 1);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *dir = bfs_inode_get(fs, parent), *ino = NULL;
	int rc = dir ? bfs_attr_lookup(fs, dir, name, &ino) : -ESTALE;
	if (rc == -ENOENT) {
		/* a negative entry: the kernel remembers the absence for neg_ttl */
		struct fuse_entry_param e = { .ino = 0 };
		e.entry_timeout = fs->opts->neg_ttl;
		fuse_reply_entry(req, &e);
	} else if (rc) {
		fuse_reply_err(req, -rc);
	} else {
		reply_entry(req, fs, ino);
	}
	bfs_inode_unpin(fs, ino);
	bfs_inode_unpin(fs, dir);
}

static void op_forget(fuse_req_t req, fuse_ino_t nodeid, uint64_t n)
{
	bfs_inode_forget(fuse_req_userdata(req), nodeid, n);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	for (size_t i = 0; i < count; i++)
		bfs_inode_forget(fs, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t nodeid, struct fuse_file_info *fi)
{
	(void)fi;
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *ino = bfs_inode_get(fs, nodeid);
	int rc = ino ? bfs_attr_refresh(fs, ino, false) : -ESTALE;
	if (rc) {
		fuse_reply_err(req, -rc);
	} else {
		struct stat st;
		bfs_attr_report(fs, ino, &st);
		fuse_reply_attr(req, &st, bfs_attr_timeout(fs));
	}
	bfs_inode_unpin(fs, ino);
}

int bfs_store_meta(struct bfs_fs *fs, struct bfs_inode *ino, bool now)
{
	bfs_inode_wait_busy(ino);
	if (ino == fs->root && fs->opts->prefix[0] == '\0')
		return 0; /* the bucket itself has nowhere to keep attributes */
	/* a regular file's attributes wait in the journal (one CopyObject upload_delay later,
	 * or none when a rename's copy takes them along: rsync's chown, chmod, utimes, rename);
	 * a hard-linked file's other names read S3, so its change goes now */
	bool defer = !now && S_ISREG(ino->st.st_mode) && !ino->link_key && ino->etag[0] &&
		     ino->stage_fd < 0 && !bfs_is_dirty(ino);
	if (defer) {
		int rc = bfs_stage_attrs(fs, ino);
		if (rc)
			return rc;
	}
	if (ino->stage_fd >= 0 || bfs_is_dirty(ino)) {
		/* an upload is pending: the change rides along with it, durable in the journal
		 * before the call returns; a hard-linked file's goes now unless a writer has it
		 * open (its close uploads) */
		bfs_mark_dirty(ino);
		bool now = ino->link_key && ino->open_writers == 0;
		int rc = now || ino->stage_fd < 0 ? 0 : bfs_upload_commit(fs, ino);
		pthread_mutex_unlock(&ino->lock);
		if (rc == 0 && now)
			rc = bfs_upload_sync(fs, ino);
		else if (rc == 0)
			bfs_upload_schedule(fs, ino, false);
		pthread_mutex_lock(&ino->lock);
		return rc;
	}
	char *key = bfs_data_key(fs, ino);
	if (!key)
		return -ENOMEM;
	struct s3_meta m;
	int rc = bfs_attr_meta(ino, key, &m);
	if (rc) {
		free(key);
		return rc;
	}
	bool dir = S_ISDIR(ino->st.st_mode), reg = S_ISREG(ino->st.st_mode);
	/* new signature (docs/integrity.md): a marker's empty body is sealed afresh; a file
	 * keeps its content digest and is re-signed only if its signature verified */
	rc = dir ? bfs_integrity_seal_buf(fs->s3, fs->opts, key, "", 0, &m)
		 : bfs_integrity_resign(fs->opts, key, &ino->meta, (uint64_t)ino->st.st_size, key,
					&m);
	if (rc) {
		s3_meta_free(&m);
		free(key);
		return rc;
	}
	bool linked = ino->link_key != NULL;
	char etag[sizeof(ino->etag)];
	memcpy(etag, ino->etag, sizeof(etag));
	ino->uploading = true;
	pthread_mutex_unlock(&ino->lock);
	struct s3_object obj;
	if (linked && (rc = bfs_link_fresh_nlink(fs, key, &m)))
		; /* other names may have come or gone: keep their count */
	else if (dir)
		rc = s3_put_buf(fs->s3, key, "", 0, "application/x-directory", &m, &obj);
	else
		rc = s3_copy(fs->s3, key, key, &m, /* unless m has its own (s3.h) */
			     reg ? bfs_mime_type(key) : "application/octet-stream",
			     etag[0] ? etag : NULL, &obj);
	if (rc)
		bfs_log(BFS_LOG_ERR, "%s: cannot store attributes: %s", key, s3_last_error());
	pthread_mutex_lock(&ino->lock);
	ino->uploading = false;
	pthread_cond_broadcast(&ino->cond);
	if (rc == 0) {
		snprintf(ino->etag, sizeof(ino->etag), "%s", obj.etag);
		s3_object_free(&obj);
		s3_meta_free(&ino->meta);
		ino->meta = m;
		s3_meta_init(&m);
		if (dir)
			ino->has_marker = true;
		ino->attr_expire = bfs_mono_ns() + fs->stat_ttl_ns;
		if (linked) {
			pthread_mutex_unlock(&ino->lock);
			bfs_link_changed(fs, ino, key); /* the other names show the change */
			pthread_mutex_lock(&ino->lock);
		}
	} else if (rc == -ESTALE || rc == -ENOENT) {
		ino->attr_expire = 0; /* changed or gone in S3: reread before the next try */
		rc = rc == -ESTALE && !now ? -EAGAIN : rc;
	}
	s3_meta_free(&m);
	free(key);
	return rc;
}

static void op_setattr(fuse_req_t req, fuse_ino_t nodeid, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)fi;
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *ino = bfs_inode_get(fs, nodeid);
	int rc = ino ? bfs_attr_refresh(fs, ino, false) : -ESTALE;
	if (rc)
		goto out;
	if (fs->opts->read_only) {
		rc = -EROFS;
		goto out;
	}
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&ino->lock);
	struct stat st = ino->st;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (!S_ISREG(st.st_mode)) {
			rc = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
			goto unlock;
		}
		rc = bfs_stage_open(fs, ino, attr->st_size == 0);
		uint64_t to = (uint64_t)attr->st_size, cur = (uint64_t)ino->st.st_size;
		if (rc == 0)
			rc = bfs_stage_unseal(fs, ino, to, to < cur ? to : cur);
		if (rc == 0 && ftruncate(ino->stage_fd, attr->st_size) < 0)
			rc = -errno;
		if (rc)
			goto unlock;
		bfs_stream_note_truncate(fs, ino, (uint64_t)attr->st_size);
		ino->st.st_size = attr->st_size;
		ino->st.st_blocks = (attr->st_size + 511) / 512;
		ino->st.st_mtim = now;
		bfs_mark_dirty(ino);
	}
	if (to_set & FUSE_SET_ATTR_MODE)
		ino->st.st_mode = (ino->st.st_mode & S_IFMT) | (attr->st_mode & 07777);
	if (to_set & FUSE_SET_ATTR_UID)
		ino->st.st_uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		ino->st.st_gid = attr->st_gid;
	if ((to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) && !(to_set & FUSE_SET_ATTR_MODE) &&
	    !S_ISDIR(ino->st.st_mode) && fuse_req_ctx(req)->uid != 0)
		ino->st.st_mode &= ~(mode_t)(S_ISUID | S_ISGID);
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		ino->st.st_atim = now;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		ino->st.st_atim = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		ino->st.st_mtim = now;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		ino->st.st_mtim = attr->st_mtim;
	if (to_set & FUSE_SET_ATTR_CTIME)
		ino->st.st_ctim = attr->st_ctim;
	else
		ino->st.st_ctim = now;
	rc = bfs_store_meta(fs, ino, false);
	if (rc)
		ino->st = st; /* nothing changed */
	else if (S_ISDIR(ino->st.st_mode))
		ino->touched = (struct timespec){ 0 }; /* the marker has the times now */
unlock:
	st = ino->st;
	pthread_mutex_unlock(&ino->lock);
	if (rc == 0)
		fuse_reply_attr(req, &st, bfs_attr_timeout(fs));
out:
	if (rc)
		fuse_reply_err(req, -rc);
	bfs_inode_unpin(fs, ino);
}

int bfs_make_node(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  dev_t rdev, const char *link, bool create, struct bfs_inode **out)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	*out = NULL;
	if (fs->opts->read_only)
		return -EROFS;
	struct bfs_inode *dir = bfs_inode_get(fs, parent);
	if (!dir)
		return -ESTALE;
	int rc = bfs_name_check(fs, dir, name, S_ISDIR(mode));
	if (rc) {
		bfs_inode_unpin(fs, dir);
		return rc;
	}
	struct bfs_inode *ino = bfs_inode_make(fs, dir, name, mode & S_IFMT);
	char *key = bfs_child_key(fs, dir, name, S_ISDIR(mode));
	if (!ino || !key) {
		rc = -ENOMEM;
		goto out;
	}
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&ino->lock);
	/* a brand-new object: nothing in S3 yet, an inode number of its own (stored with it) */
	ino->etag[0] = '\0';
	s3_meta_free(&ino->meta);
	s3_meta_init(&ino->meta);
	ino->meta_loaded = true;
	memset(&ino->st, 0, sizeof(ino->st));
	ino->st.st_mode = mode;
	if (S_ISDIR(mode)) {
		/* a directory is numbered by its key, as lookups do it (without the '/') */
		size_t kl = strlen(key);
		key[kl - 1] = '\0';
		bfs_ino_assign(ino, NULL, key);
		key[kl - 1] = '/';
	} else {
		ino->st.st_ino = bfs_ino_random();
		ino->ino_stored = ino->st.st_ino != 0;
		if (!ino->ino_stored)
			bfs_ino_assign(ino, NULL, key);
	}
	ino->st.st_rdev = S_ISCHR(mode) || S_ISBLK(mode) ? rdev : 0;
	ino->st.st_nlink = 1;
	ino->st.st_uid = ctx->uid;
	ino->st.st_gid = ctx->gid;
	ino->st.st_atim = ino->st.st_mtim = ino->st.st_ctim = now;
	ino->st.st_blksize = 1 << 20;
	free(ino->link_target);
	ino->link_target = NULL;
	if (link) {
		ino->link_target = strdup(link);
		ino->st.st_size = (off_t)strlen(link);
	}
	if (S_ISDIR(mode)) {
		/* we know a new directory is empty */
		bfs_listing_free(ino->listing);
		ino->listing = calloc(1, sizeof(*ino->listing));
		if (ino->listing)
			ino->listing->expire = bfs_mono_ns() + fs->stat_ttl_ns;
	}
	ino->attr_expire = bfs_mono_ns() + fs->stat_ttl_ns;
	rc = bfs_stage_open(fs, ino, true);
	if (rc == 0)
		bfs_mark_dirty(ino);
	pthread_mutex_unlock(&ino->lock);
	if (rc)
		goto out;
	if (!S_ISREG(mode) || !create) {
		/* a created file is uploaded by its last close; the rest now (close-to-open)
		 * or after upload_delay (writeback) */
		rc = bfs_persist_new(fs, ino);
		if (rc)
			goto out;
	}
	bfs_listing_note(fs, dir, name, S_ISDIR(mode), true);
	*out = ino;
	ino = NULL;
out:
	if (ino) {
		pthread_mutex_lock(&ino->lock);
		bfs_inode_wait_busy(ino);
		bfs_stage_discard(fs, ino);
		pthread_mutex_unlock(&ino->lock);
		bfs_inode_detach(fs, ino);
		bfs_inode_unpin(fs, ino);
	}
	free(key);
	bfs_inode_unpin(fs, dir);
	return rc;
}

int bfs_persist_new(struct bfs_fs *fs, struct bfs_inode *ino)
{
	pthread_mutex_lock(&ino->lock);
	int rc = bfs_upload_commit(fs, ino);
	pthread_mutex_unlock(&ino->lock);
	if (rc)
		return rc;
	if (!bfs_sync_changes(fs)) {
		bfs_upload_schedule(fs, ino, false);
		return 0;
	}
	return bfs_upload_flush(fs, ino);
}

static void reply_new(fuse_req_t req, int rc, struct bfs_inode *ino)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		reply_entry(req, fs, ino);
	bfs_inode_unpin(fs, ino);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	struct bfs_inode *ino = NULL;
	/* devices keep their number in x-amz-meta-rdev, as s3fs stores them (the kernel has
	 * checked CAP_MKNOD) */
	int rc = bfs_make_node(req, parent, name, mode, rdev, NULL, false, &ino);
	reply_new(req, rc, ino);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct bfs_inode *ino = NULL;
	int rc = bfs_make_node(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL, false, &ino);
	reply_new(req, rc, ino);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct bfs_inode *ino = NULL;
	int rc = bfs_make_node(req, parent, name, S_IFLNK | 0777, 0, link, false, &ino);
	reply_new(req, rc, ino);
}

static void op_readlink(fuse_req_t req, fuse_ino_t nodeid)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *ino = bfs_inode_get(fs, nodeid);
	char *target = NULL, *key = NULL;
	int rc = ino ? 0 : -ESTALE;
	if (rc)
		goto out;
	pthread_mutex_lock(&ino->lock);
	target = ino->link_target ? strdup(ino->link_target) : NULL;
	uint64_t size = (uint64_t)ino->st.st_size;
	char etag[sizeof(ino->etag)];
	memcpy(etag, ino->etag, sizeof(etag));
	struct s3_meta meta;
	int mrc = s3_meta_copy(&meta, &ino->meta);
	pthread_mutex_unlock(&ino->lock);
	if (mrc) {
		rc = mrc;
		goto out;
	}
	if (target)
		goto out_meta;
	if (size > 4095) {
		rc = -ENAMETOOLONG;
		goto out_meta;
	}
	key = bfs_inode_key(fs, ino);
	target = calloc(1, size + 1);
	if (!key || !target) {
		rc = -ENOMEM;
		goto out_meta;
	}
	size_t got = 0;
	rc = size ? s3_get_range(fs->s3, key, 0, size, target, &got, etag[0] ? etag : NULL, NULL)
		  : 0;
	if (rc == 0)
		rc = bfs_integrity_check_body(fs, key, etag, &meta, target, got);
	if (rc)
		goto out_meta;
	target[got] = '\0';
	pthread_mutex_lock(&ino->lock);
	if (!ino->link_target)
		ino->link_target = strdup(target);
	pthread_mutex_unlock(&ino->lock);
out_meta:
	s3_meta_free(&meta);
out:
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, target);
	free(target);
	free(key);
	bfs_inode_unpin(fs, ino);
}

/* Removes ino (named name in dir) from S3 and from the tree. */
static int remove_node(struct bfs_fs *fs, struct bfs_inode *dir, const char *name,
		       struct bfs_inode *ino)
{
	char *key = bfs_inode_key(fs, ino), *remote = NULL;
	if (!key)
		return -ENOMEM;
	int rc = 0;
	bool linked = false;
	pthread_mutex_lock(&ino->lock);
	bfs_inode_wait_busy(ino);
	if (ino->open_count > 0 && S_ISREG(ino->st.st_mode) &&
	    (ino->stage_fd < 0 || ino->attr_only)) {
		/* still open: POSIX keeps the data readable after the name goes, so keep a
		 * local copy (it is never uploaded: the inode is unlinked) */
		rc = bfs_stage_open(fs, ino, false);
		if (rc) {
			pthread_mutex_unlock(&ino->lock);
			goto out;
		}
	}
	remote = ino->remote_key ? strdup(ino->remote_key) : NULL;
	/* an object is at key: ours, or the one a pending upload replaces (ops_rename.c) */
	bool in_s3 = ino->etag[0] != '\0' || (S_ISDIR(ino->st.st_mode) && ino->has_marker) ||
		     (ino->stage_fd >= 0 && ino->base_etag[0] != '\0');
	linked = ino->link_key != NULL;
	/* no upload of ino starts until the name is gone: a PUT after our DELETE would bring
	 * the name back in S3 */
	ino->held = true;
	pthread_mutex_unlock(&ino->lock);
	if (linked)
		rc = bfs_link_unlink(fs, key, ino);
	else if (in_s3)
		rc = s3_delete(fs->s3, key);
	if (rc == 0 && remote && strcmp(remote, key) != 0)
		rc = s3_delete(fs->s3, remote);
	if (rc) {
		bfs_log(BFS_LOG_ERR, "%s: delete failed: %s", key, s3_last_error());
		goto out;
	}
	bfs_inode_detach(fs, ino); /* do_upload drops the staging of an unlinked inode */
	pthread_mutex_lock(&ino->lock);
	/* its journal entry goes before the call returns, or a crash brings the name back;
	 * the data of a file still open stays readable (a hard-linked file's is still shared
	 * by its other names and is uploaded) */
	if (ino->open_count == 0)
		bfs_stage_discard(fs, ino);
	else if (!linked)
		bfs_stage_forget(fs, ino);
	ino->etag[0] = '\0';
	pthread_mutex_unlock(&ino->lock);
	bfs_listing_note(fs, dir, name, false, false);
	cache_invalidate(fs->cache, key);
out:
	pthread_mutex_lock(&ino->lock);
	ino->held = false;
	pthread_cond_broadcast(&ino->cond);
	bool resched = (rc || linked) && bfs_is_dirty(ino) && ino->stage_fd >= 0;
	pthread_mutex_unlock(&ino->lock);
	if (resched)
		bfs_upload_schedule(fs, ino, false); /* what the hold kept back goes on */
	free(remote);
	free(key);
	return rc;
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *dir = bfs_inode_get(fs, parent), *ino = NULL;
	int rc = dir ? bfs_attr_lookup(fs, dir, name, &ino) : -ESTALE;
	if (rc == 0 && fs->opts->read_only)
		rc = -EROFS;
	if (rc == 0 && S_ISDIR(ino->st.st_mode))
		rc = -EISDIR;
	if (rc == 0)
		rc = remove_node(fs, dir, name, ino);
	fuse_reply_err(req, -rc);
	bfs_inode_unpin(fs, ino);
	bfs_inode_unpin(fs, dir);
}

int bfs_dir_empty(struct bfs_fs *fs, struct bfs_inode *dir)
{
	struct bfs_listing *l;
	int rc = bfs_listing_fetch(fs, dir, &l);
	if (rc)
		return rc;
	rc = l->n ? -ENOTEMPTY : 0;
	pthread_mutex_lock(&dir->lock);
	bfs_listing_free(dir->listing);
	dir->listing = l;
	pthread_mutex_unlock(&dir->lock);
	return rc;
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *dir = bfs_inode_get(fs, parent), *ino = NULL;
	int rc = dir ? bfs_attr_lookup(fs, dir, name, &ino) : -ESTALE;
	if (rc == 0 && fs->opts->read_only)
		rc = -EROFS;
	if (rc == 0 && !S_ISDIR(ino->st.st_mode))
		rc = -ENOTDIR;
	if (rc == 0)
		rc = bfs_dir_empty(fs, ino);
	if (rc == 0)
		rc = remove_node(fs, dir, name, ino);
	fuse_reply_err(req, -rc);
	bfs_inode_unpin(fs, ino);
	bfs_inode_unpin(fs, dir);
}

void bfs_ops_entry(struct fuse_lowlevel_ops *ops)
{
	ops->lookup = op_lookup;
	ops->forget = op_forget;
	ops->forget_multi = op_forget_multi;
	ops->getattr = op_getattr;
	ops->setattr = op_setattr;
	ops->mknod = op_mknod;
	ops->mkdir = op_mkdir;
	ops->symlink = op_symlink;
	ops->readlink = op_readlink;
	ops->unlink = op_unlink;
	ops->rmdir = op_rmdir;
}
