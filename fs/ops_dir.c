/* fs/ops_dir.c — directory reading: opendir takes a snapshot of the listing (one LIST walk,
 * or none within stat_ttl), readdirplus fetches the attributes it lacks with parallel HEADs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "util/util.h"

/* An open directory (fi->fh). Owns its snapshot and a pin on dir. */
struct bfs_dirh {
	struct bfs_inode *dir;
	struct bfs_listing *l;
	bool attrs_done;
};

static void op_opendir(fuse_req_t req, fuse_ino_t nodeid, struct fuse_file_info *fi)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *dir = bfs_inode_get(fs, nodeid);
	struct bfs_dirh *h = calloc(1, sizeof(*h));
	int rc = dir && h ? 0 : dir ? -ENOMEM : -ESTALE;
	if (rc)
		goto fail;
	pthread_mutex_lock(&dir->lock);
	if (dir->listing && dir->listing->expire > bfs_mono_ns())
		h->l = bfs_listing_copy(dir->listing);
	pthread_mutex_unlock(&dir->lock);
	if (!h->l) {
		struct bfs_listing *l;
		rc = bfs_listing_fetch(fs, dir, &l);
		if (rc)
			goto fail;
		h->l = bfs_listing_copy(l);
		pthread_mutex_lock(&dir->lock);
		bfs_listing_free(dir->listing);
		dir->listing = l;
		pthread_mutex_unlock(&dir->lock);
		if (!h->l) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	h->dir = dir;
	fi->fh = (uintptr_t)h;
	fi->cache_readdir = 0;
	fuse_reply_open(req, fi);
	return;
fail:
	free(h);
	bfs_inode_unpin(fs, dir);
	fuse_reply_err(req, -rc);
}

/* Fetches, in parallel, the attributes of the snapshot's entries that have none cached. */
static void fetch_attrs(struct bfs_fs *fs, struct bfs_dirh *h)
{
	size_t n = h->l->n, m = 0;
	char **keys = calloc(n ? n : 1, sizeof(*keys));
	size_t *idx = calloc(n ? n : 1, sizeof(*idx));
	struct s3_object *objs = NULL;
	int *rcs = NULL;
	if (!keys || !idx)
		goto out;
	int64_t now = bfs_mono_ns();
	for (size_t i = 0; i < n; i++) {
		struct bfs_dirent *d = &h->l->ents[i];
		struct bfs_inode *c = bfs_inode_child(fs, h->dir, d->name);
		bool fresh = false;
		if (c) {
			pthread_mutex_lock(&c->lock);
			fresh = bfs_is_dirty(c) || c->stage_fd >= 0 ||
				(c->attr_expire > now && S_ISDIR(c->st.st_mode) == d->is_dir);
			pthread_mutex_unlock(&c->lock);
			bfs_inode_unpin(fs, c);
		}
		if (fresh)
			continue;
		keys[m] = bfs_child_key(fs, h->dir, d->name, d->is_dir);
		if (!keys[m])
			goto out;
		idx[m++] = i;
	}
	if (m == 0)
		goto out;
	objs = calloc(m, sizeof(*objs));
	rcs = calloc(m, sizeof(*rcs));
	if (!objs || !rcs)
		goto out;
	if (s3_head_many(fs->s3, (const char *const *)keys, m, objs, rcs))
		goto free_objs;
	for (size_t k = 0; k < m; k++) {
		struct bfs_dirent *d = &h->l->ents[idx[k]];
		if (rcs[k] && !(d->is_dir && rcs[k] == -ENOENT))
			continue; /* gone, or failed: the entry is still listed, lookup retries */
		mode_t type = S_IFDIR;
		if (!d->is_dir) {
			struct stat st;
			bfs_meta_to_stat(&objs[k], false, &fs->defaults, &st);
			type = st.st_mode & S_IFMT;
		}
		struct bfs_inode *c = bfs_inode_make(fs, h->dir, d->name, type);
		if (!c)
			continue;
		pthread_mutex_lock(&c->lock);
		if (!bfs_is_dirty(c) && c->stage_fd < 0) {
			if (!c->st.st_ino) {
				if (d->is_dir)
					keys[k][strlen(keys[k]) - 1] = '\0';
				c->st.st_ino = bfs_ino_of_key(keys[k]);
			}
			bfs_attr_apply(fs, c, rcs[k] ? NULL : &objs[k], d->is_dir);
		}
		pthread_mutex_unlock(&c->lock);
		bfs_inode_unpin(fs, c);
	}
free_objs:
	for (size_t k = 0; k < m; k++)
		s3_object_free(&objs[k]);
out:
	for (size_t k = 0; k < m; k++)
		free(keys[k]);
	free(keys);
	free(idx);
	free(objs);
	free(rcs);
}

static void do_readdir(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi,
		       bool plus)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_dirh *h = (struct bfs_dirh *)(uintptr_t)fi->fh;
	if (plus && !h->attrs_done) {
		fetch_attrs(fs, h);
		h->attrs_done = true;
	}
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t used = 0;
	for (size_t i = (size_t)off; i < h->l->n + 2; i++) {
		const char *name = i == 0 ? "." : i == 1 ? ".." : h->l->ents[i - 2].name;
		struct stat st = { 0 };
		struct bfs_inode *c = NULL;
		size_t len;
		if (i < 2) {
			st.st_ino = i == 0 ? h->dir->st.st_ino : 1;
			st.st_mode = S_IFDIR;
		} else {
			c = bfs_inode_child(fs, h->dir, name);
			if (c) {
				pthread_mutex_lock(&c->lock);
				st = c->st;
				pthread_mutex_unlock(&c->lock);
			} else {
				st.st_mode = h->l->ents[i - 2].is_dir ? S_IFDIR : S_IFREG;
				char *key = bfs_child_key(fs, h->dir, name, false);
				st.st_ino = key ? bfs_ino_of_key(key) : 2;
				free(key);
			}
		}
		if (!plus) {
			len = fuse_add_direntry(req, buf + used, size - used, name, &st,
						(off_t)i + 1);
		} else {
			struct fuse_entry_param e = { 0 };
			if (c) {
				bfs_fill_entry(fs, c, &e);
			} else {
				/* "." and "..", or attributes we could not get: no entry,
				 * the kernel looks the name up itself */
				e.attr = st;
			}
			len = fuse_add_direntry_plus(req, buf + used, size - used, name, &e,
						     (off_t)i + 1);
			if (c && len <= size - used)
				bfs_inode_lookup_ref(fs, c, 1);
		}
		bfs_inode_unpin(fs, c);
		if (len > size - used)
			break;
		used += len;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t nodeid, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)nodeid;
	do_readdir(req, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t nodeid, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)nodeid;
	do_readdir(req, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t nodeid, struct fuse_file_info *fi)
{
	(void)nodeid;
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_dirh *h = (struct bfs_dirh *)(uintptr_t)fi->fh;
	bfs_listing_free(h->l);
	bfs_inode_unpin(fs, h->dir);
	free(h);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t nodeid, int datasync,
			struct fuse_file_info *fi)
{
	(void)datasync;
	(void)fi;
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *dir = bfs_inode_get(fs, nodeid);
	int rc = dir ? bfs_upload_sync(fs, dir) : -ESTALE;
	bfs_inode_unpin(fs, dir);
	fuse_reply_err(req, -rc);
}

void bfs_ops_dir(struct fuse_lowlevel_ops *ops)
{
	ops->opendir = op_opendir;
	ops->readdir = op_readdir;
	ops->readdirplus = op_readdirplus;
	ops->releasedir = op_releasedir;
	ops->fsyncdir = op_fsyncdir;
}
