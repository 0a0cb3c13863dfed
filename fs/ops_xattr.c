/* fs/ops_xattr.c — extended attributes (stored in x-amz-meta-xattr the way s3fs does; the
 * virtual user.s3.* ones are the object's headers, fs/xattr_s3.c) and statfs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "fs/fs_int.h"
#include "util/util.h"

/* Makes sure ino->meta holds what S3 has (one HEAD when only a listing was seen). */
static int load_meta(struct bfs_fs *fs, struct bfs_inode *ino)
{
	pthread_mutex_lock(&ino->lock);
	bool loaded = ino->meta_loaded || bfs_is_dirty(ino) || ino->stage_fd >= 0;
	pthread_mutex_unlock(&ino->lock);
	/* once loaded, metadata is as fresh as the attributes (stat_ttl; a hard link's other
	 * names expire them at once when it changes) */
	return ino == fs->root ? 0 : bfs_attr_refresh(fs, ino, !loaded);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t nodeid, const char *name, size_t size)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	if (bfs_stats_getxattr(req, fs, nodeid, name, size))
		return; /* the live statistics (fs/stats.c) */
	struct bfs_inode *ino = bfs_inode_get(fs, nodeid);
	char *buf = size ? malloc(size) : NULL;
	ssize_t rc = !ino ? -ESTALE : (size && !buf) ? -ENOMEM : load_meta(fs, ino);
	if (rc == 0) {
		pthread_mutex_lock(&ino->lock);
		rc = bfs_s3_xattr_is(name)
		     ? bfs_s3_xattr_get(&ino->meta, ino->etag, name, buf, size)
		     : bfs_xattr_get(&ino->meta, name, buf, size);
		pthread_mutex_unlock(&ino->lock);
	}
	if (rc < 0)
		fuse_reply_err(req, (int)-rc);
	else if (size)
		fuse_reply_buf(req, buf, (size_t)rc);
	else
		fuse_reply_xattr(req, (size_t)rc);
	free(buf);
	bfs_inode_unpin(fs, ino);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t nodeid, size_t size)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *ino = bfs_inode_get(fs, nodeid);
	char *buf = size ? malloc(size) : NULL;
	ssize_t rc = !ino ? -ESTALE : (size && !buf) ? -ENOMEM : load_meta(fs, ino);
	if (rc == 0) {
		pthread_mutex_lock(&ino->lock);
		/* the user.s3.* names are not listed (fs/xattr_s3.c) */
		rc = bfs_xattr_list(&ino->meta, buf, size);
		pthread_mutex_unlock(&ino->lock);
	}
	if (rc < 0)
		fuse_reply_err(req, (int)-rc);
	else if (size)
		fuse_reply_buf(req, buf, (size_t)rc);
	else
		fuse_reply_xattr(req, (size_t)rc);
	free(buf);
	bfs_inode_unpin(fs, ino);
}

/* set (value non-NULL) or remove one attribute, then store the metadata. */
static int change_xattr(struct bfs_fs *fs, struct bfs_inode *ino, const char *name,
			const char *value, size_t size, int flags)
{
	if (fs->opts->read_only)
		return -EROFS;
	if (bfs_stats_is_xattr(ino == fs->root ? FUSE_ROOT_ID : 0, name))
		return -EPERM; /* read-only statistics */
	bool header = bfs_s3_xattr_is(name);
	if (header && ino == fs->root)
		return -EOPNOTSUPP; /* no object of its own */
	/* a header change rewrites the object's metadata from what we hold: read it afresh
	 * (one HEAD) so that a change made elsewhere is the base, and the copy's If-Match
	 * catches one made after that (servers that ignore it still get the fresh base) */
	int rc = header ? bfs_attr_refresh(fs, ino, true) : load_meta(fs, ino);
	if (rc)
		return rc;
	pthread_mutex_lock(&ino->lock);
	struct s3_meta saved;
	rc = s3_meta_copy(&saved, &ino->meta);
	if (rc)
		goto unlock;
	rc = header ? bfs_s3_xattr_change(&ino->meta, name, value, size, flags)
	     : value ? bfs_xattr_set(&ino->meta, name, value, size, flags)
		     : bfs_xattr_remove(&ino->meta, name);
	if (rc == 0) {
		clock_gettime(CLOCK_REALTIME, &ino->st.st_ctim);
		/* a header changes at once (one CopyObject, -ESTALE if the object changed in S3
		 * meanwhile); a user attribute may wait in the journal */
		rc = bfs_store_meta(fs, ino, header);
	}
	if (rc) {
		s3_meta_free(&ino->meta);
		ino->meta = saved;
	} else {
		s3_meta_free(&saved);
	}
unlock:
	pthread_mutex_unlock(&ino->lock);
	return rc;
}

static void op_setxattr(fuse_req_t req, fuse_ino_t nodeid, const char *name, const char *value,
			size_t size, int flags)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *ino = bfs_inode_get(fs, nodeid);
	int rc = ino ? change_xattr(fs, ino, name, value, size, flags) : -ESTALE;
	fuse_reply_err(req, -rc);
	bfs_inode_unpin(fs, ino);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t nodeid, const char *name)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *ino = bfs_inode_get(fs, nodeid);
	int rc = ino ? change_xattr(fs, ino, name, NULL, 0, 0) : -ESTALE;
	fuse_reply_err(req, -rc);
	bfs_inode_unpin(fs, ino);
}

static void op_statfs(fuse_req_t req, fuse_ino_t nodeid)
{
	(void)nodeid;
	/* S3 has no capacity to report: a large, constant size, as other S3 file systems do */
	struct statvfs sv = { 0 };
	sv.f_bsize = 1 << 20;
	sv.f_frsize = 1 << 20;
	sv.f_blocks = (fsblkcnt_t)1 << 32;
	sv.f_bfree = sv.f_bavail = sv.f_blocks;
	sv.f_files = sv.f_ffree = sv.f_favail = (fsfilcnt_t)1 << 32;
	sv.f_namemax = BFS_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

void bfs_ops_xattr(struct fuse_lowlevel_ops *ops)
{
	ops->getxattr = op_getxattr;
	ops->listxattr = op_listxattr;
	ops->setxattr = op_setxattr;
	ops->removexattr = op_removexattr;
	ops->statfs = op_statfs;
}
