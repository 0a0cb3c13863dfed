/* fs/trace.c — times every FUSE operation: one wrapper per lowlevel op around the table
 * bfs_fs_ops() builds, so no op needs to know. Each call costs two clock_gettime
 * (CLOCK_MONOTONIC) and one histogram update (fs/stats.c); with -o slow_ms=N, a call that
 * took N ms or more is logged at info level (docs/stats.md):
 *
 *   slow fuse LOOKUP 0.000123456 path=dir/name
 *
 * The path (relative to the mount, "." for its root) is worked out only for a call that is
 * logged, after it replied. A wrapper reads nothing of req after the inner op returns (the
 * reply freed it); the name arguments point into libfuse's request buffer, which lives until
 * the wrapper returns. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "util/util.h"

/* The operations as bfs_fs_ops() set them; written once, before the session starts. */
static struct fuse_lowlevel_ops inner;

static const char *const op_names[BFS_FUSE_OP_COUNT] = {
	[BFS_FUSE_LOOKUP] = "LOOKUP", [BFS_FUSE_FORGET] = "FORGET",
	[BFS_FUSE_FORGET_MULTI] = "BATCH_FORGET", [BFS_FUSE_GETATTR] = "GETATTR",
	[BFS_FUSE_SETATTR] = "SETATTR", [BFS_FUSE_READLINK] = "READLINK",
	[BFS_FUSE_MKNOD] = "MKNOD", [BFS_FUSE_MKDIR] = "MKDIR", [BFS_FUSE_UNLINK] = "UNLINK",
	[BFS_FUSE_RMDIR] = "RMDIR", [BFS_FUSE_SYMLINK] = "SYMLINK", [BFS_FUSE_RENAME] = "RENAME",
	[BFS_FUSE_LINK] = "LINK", [BFS_FUSE_OPEN] = "OPEN", [BFS_FUSE_READ] = "READ",
	[BFS_FUSE_WRITE] = "WRITE", [BFS_FUSE_FLUSH] = "FLUSH", [BFS_FUSE_RELEASE] = "RELEASE",
	[BFS_FUSE_FSYNC] = "FSYNC", [BFS_FUSE_OPENDIR] = "OPENDIR", [BFS_FUSE_READDIR] = "READDIR",
	[BFS_FUSE_READDIRPLUS] = "READDIRPLUS", [BFS_FUSE_RELEASEDIR] = "RELEASEDIR",
	[BFS_FUSE_FSYNCDIR] = "FSYNCDIR", [BFS_FUSE_STATFS] = "STATFS",
	[BFS_FUSE_SETXATTR] = "SETXATTR", [BFS_FUSE_GETXATTR] = "GETXATTR",
	[BFS_FUSE_LISTXATTR] = "LISTXATTR", [BFS_FUSE_REMOVEXATTR] = "REMOVEXATTR",
	[BFS_FUSE_CREATE] = "CREATE",
};

const char *bfs_fuse_op_name(enum bfs_fuse_op op)
{
	return (unsigned)op < BFS_FUSE_OP_COUNT ? op_names[op] : "?";
}

/* " path=P" for inode nodeid (name: its child of that name) into out. The inode may be gone
 * by now (forgotten) or nameless (removed while open): then " path=ino:N". */
static void where(struct bfs_fs *fs, const char *field, fuse_ino_t nodeid, const char *name,
		  char *out, size_t len)
{
	struct bfs_inode *ino = bfs_inode_get(fs, nodeid);
	char *key = !ino ? NULL : name ? bfs_child_key(fs, ino, name, false)
				       : bfs_inode_key(fs, ino);
	bfs_inode_unpin(fs, ino);
	if (!key) {
		snprintf(out, len, " %s=ino:%" PRIu64 "%s%s", field, (uint64_t)nodeid,
			 name ? "/" : "", name ? name : "");
		return;
	}
	const char *rel = key;
	size_t plen = strlen(fs->opts->prefix);
	if (strncmp(rel, fs->opts->prefix, plen) == 0)
		rel += plen;
	size_t n = strlen(rel);
	if (n > 0 && rel[n - 1] == '/')
		n--; /* a directory's key */
	if (n == 0 && (name || nodeid != FUSE_ROOT_ID)) /* a removed inode has the root's key */
		snprintf(out, len, " %s=ino:%" PRIu64 "%s%s", field, (uint64_t)nodeid,
			 name ? "/" : "", name ? name : "");
	else
		snprintf(out, len, " %s=%.*s", field, n ? (int)n : 1, n ? rel : ".");
	free(key);
}

/* After op returned: counts it, and logs it when it was slow. ino2/name2 (nullable): the
 * second name of RENAME and LINK. ino 0: no path (BATCH_FORGET). */
static void done(struct bfs_fs *fs, enum bfs_fuse_op op, int64_t t0, fuse_ino_t ino,
		 const char *name, fuse_ino_t ino2, const char *name2)
{
	int64_t ns = bfs_mono_ns() - t0;
	char p1[S3_MAX_KEY + 64] = "", p2[S3_MAX_KEY + 64] = "";

	if (ns < 0)
		ns = 0;
	bfs_hist_add(&fs->fuse_latency[op], (uint64_t)ns);
	if (!bfs_trace_is_slow(fs->opts, ns))
		return;
	if (ino && op != BFS_FUSE_FORGET)
		where(fs, "path", ino, name, p1, sizeof(p1));
	else if (ino)
		snprintf(p1, sizeof(p1), " ino=%" PRIu64, (uint64_t)ino);
	if (ino2)
		where(fs, "newpath", ino2, name2, p2, sizeof(p2));
	bfs_log(BFS_LOG_INFO, "slow fuse %s %" PRId64 ".%09" PRId64 "%s%s", bfs_fuse_op_name(op),
		ns / 1000000000, ns % 1000000000, p1, p2);
}

bool bfs_trace_is_slow(const struct bfs_options *o, int64_t ns)
{
	return o->slow_ms >= 0 && ns >= o->slow_ms * 1000000LL;
}

/* w_NAME: the wrapper of inner.NAME; PARAMS its parameter list, ARGS the call, then the
 * inode/name pairs the log line shows. */
#define WRAP(OP, name, PARAMS, ARGS, INO, NM, INO2, NM2)                                \
	static void w_##name PARAMS                                                    \
	{                                                                               \
		struct bfs_fs *fs = fuse_req_userdata(req);                            \
		int64_t t0 = bfs_mono_ns();                                             \
		inner.name ARGS;                                                        \
		done(fs, OP, t0, INO, NM, INO2, NM2);                                   \
	}

WRAP(BFS_FUSE_LOOKUP, lookup, (fuse_req_t req, fuse_ino_t parent, const char *name),
     (req, parent, name), parent, name, 0, NULL)
WRAP(BFS_FUSE_FORGET, forget, (fuse_req_t req, fuse_ino_t ino, uint64_t n), (req, ino, n),
     ino, NULL, 0, NULL)
WRAP(BFS_FUSE_FORGET_MULTI, forget_multi,
     (fuse_req_t req, size_t count, struct fuse_forget_data *forgets), (req, count, forgets),
     0, NULL, 0, NULL)
WRAP(BFS_FUSE_GETATTR, getattr, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi),
     (req, ino, fi), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_SETATTR, setattr,
     (fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi),
     (req, ino, attr, to_set, fi), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_READLINK, readlink, (fuse_req_t req, fuse_ino_t ino), (req, ino), ino, NULL, 0,
     NULL)
WRAP(BFS_FUSE_MKNOD, mknod,
     (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev),
     (req, parent, name, mode, rdev), parent, name, 0, NULL)
WRAP(BFS_FUSE_MKDIR, mkdir, (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode),
     (req, parent, name, mode), parent, name, 0, NULL)
WRAP(BFS_FUSE_UNLINK, unlink, (fuse_req_t req, fuse_ino_t parent, const char *name),
     (req, parent, name), parent, name, 0, NULL)
WRAP(BFS_FUSE_RMDIR, rmdir, (fuse_req_t req, fuse_ino_t parent, const char *name),
     (req, parent, name), parent, name, 0, NULL)
WRAP(BFS_FUSE_SYMLINK, symlink,
     (fuse_req_t req, const char *link, fuse_ino_t parent, const char *name),
     (req, link, parent, name), parent, name, 0, NULL)
WRAP(BFS_FUSE_RENAME, rename,
     (fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
      const char *newname, unsigned int flags),
     (req, parent, name, newparent, newname, flags), parent, name, newparent, newname)
WRAP(BFS_FUSE_LINK, link,
     (fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname),
     (req, ino, newparent, newname), ino, NULL, newparent, newname)
WRAP(BFS_FUSE_OPEN, open, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi),
     (req, ino, fi), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_READ, read,
     (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi),
     (req, ino, size, off, fi), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_WRITE, write,
     (fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
      struct fuse_file_info *fi),
     (req, ino, buf, size, off, fi), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_FLUSH, flush, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi),
     (req, ino, fi), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_RELEASE, release, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi),
     (req, ino, fi), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_FSYNC, fsync,
     (fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi),
     (req, ino, datasync, fi), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_OPENDIR, opendir, (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi),
     (req, ino, fi), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_READDIR, readdir,
     (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi),
     (req, ino, size, off, fi), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_READDIRPLUS, readdirplus,
     (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi),
     (req, ino, size, off, fi), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_RELEASEDIR, releasedir,
     (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), (req, ino, fi), ino, NULL,
     0, NULL)
WRAP(BFS_FUSE_FSYNCDIR, fsyncdir,
     (fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi),
     (req, ino, datasync, fi), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_STATFS, statfs, (fuse_req_t req, fuse_ino_t ino), (req, ino), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_SETXATTR, setxattr,
     (fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
      int flags),
     (req, ino, name, value, size, flags), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_GETXATTR, getxattr,
     (fuse_req_t req, fuse_ino_t ino, const char *name, size_t size), (req, ino, name, size),
     ino, NULL, 0, NULL)
WRAP(BFS_FUSE_LISTXATTR, listxattr, (fuse_req_t req, fuse_ino_t ino, size_t size),
     (req, ino, size), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_REMOVEXATTR, removexattr, (fuse_req_t req, fuse_ino_t ino, const char *name),
     (req, ino, name), ino, NULL, 0, NULL)
WRAP(BFS_FUSE_CREATE, create,
     (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
      struct fuse_file_info *fi),
     (req, parent, name, mode, fi), parent, name, 0, NULL)

void bfs_trace_ops(struct fuse_lowlevel_ops *ops)
{
	inner = *ops;
	/* an op bucketfs does not implement stays NULL: libfuse answers ENOSYS for it */
#define SET(name) if (ops->name) ops->name = w_##name
	SET(lookup); SET(forget); SET(forget_multi); SET(getattr); SET(setattr); SET(readlink);
	SET(mknod); SET(mkdir); SET(unlink); SET(rmdir); SET(symlink); SET(rename); SET(link);
	SET(open); SET(read); SET(write); SET(flush); SET(release); SET(fsync); SET(opendir);
	SET(readdir); SET(readdirplus); SET(releasedir); SET(fsyncdir); SET(statfs);
	SET(setxattr); SET(getxattr); SET(listxattr); SET(removexattr); SET(create);
#undef SET
}
