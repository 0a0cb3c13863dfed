/* fs/fs.c — the file system object: setup, FUSE init/destroy, the operations table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "util/util.h"

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct bfs_fs *fs = userdata;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/* the page cache must not outlive a change made by another client */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	conn->max_write = 1 << 20;
	conn->max_readahead = 1 << 20;
	if (bfs_upload_start(fs))
		bfs_log(BFS_LOG_ERR, "cannot start upload workers");
	if (bfs_stream_start(fs))
		bfs_log(BFS_LOG_WARN, "cannot start the streaming upload workers: files are "
			"uploaded at close");
	if (bfs_readahead_start(fs))
		bfs_log(BFS_LOG_WARN, "cannot start readahead workers: reads fetch one block at a "
			"time");
}

static void op_destroy(void *userdata)
{
	struct bfs_fs *fs = userdata;
	if (fs->cache)
		bfs_owner_say(fs->cache, false, fs->opts->mountpoint);
	bfs_readahead_stop(fs);
	bfs_upload_stop(fs); /* every pending upload finishes (or stays in the journal) */
	bfs_stream_stop(fs); /* and streams nobody finished are aborted */
}

void bfs_fs_ops(struct fuse_lowlevel_ops *ops)
{
	memset(ops, 0, sizeof(*ops));
	ops->init = op_init;
	ops->destroy = op_destroy;
	bfs_ops_entry(ops);
	bfs_ops_rename(ops);
	bfs_ops_link(ops);
	bfs_ops_dir(ops);
	bfs_ops_file(ops);
	bfs_ops_xattr(ops);
	bfs_trace_ops(ops); /* last: times whatever the others set */
}

int bfs_fs_new(struct bfs_options *o, struct s3_client *s3, struct cache *cache,
	       struct bfs_fs **out)
{
	struct bfs_fs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->opts = o;
	fs->s3 = s3;
	fs->cache = cache;
	fs->defaults.uid = o->uid;
	fs->defaults.gid = o->gid;
	fs->defaults.umask = o->umask;
	fs->stat_ttl_ns = (int64_t)(o->stat_ttl * 1e9);
	fs->upload_delay_ns = (int64_t)(o->upload_delay * 1e9);
	fs->started_ns = bfs_mono_ns();
	pthread_mutex_init(&fs->lock, NULL);
	pthread_cond_init(&fs->upload_cond, NULL);
	pthread_cond_init(&fs->idle_cond, NULL);
	pthread_mutex_init(&fs->stream_lock, NULL);
	pthread_cond_init(&fs->stream_cond, NULL);
	bfs_inode_table_init(fs);
	if (!fs->by_id || !fs->by_nm || !fs->root) {
		bfs_fs_free(fs);
		return -ENOMEM;
	}
	*out = fs;
	return 0;
}

void bfs_fs_free(struct bfs_fs *fs)
{
	if (!fs)
		return;
	bfs_inode_table_free(fs);
	pthread_mutex_destroy(&fs->lock);
	pthread_cond_destroy(&fs->upload_cond);
	pthread_cond_destroy(&fs->idle_cond);
	pthread_mutex_destroy(&fs->stream_lock);
	pthread_cond_destroy(&fs->stream_cond);
	free(fs);
}
