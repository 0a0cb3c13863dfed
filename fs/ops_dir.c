/* fs/ops_dir.c — directory reading: opendir takes a snapshot of the listing (one LIST walk,
 * or none within stat_ttl), readdirplus fetches the attributes it lacks with parallel HEADs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "util/util.h"

/* An open directory (fi->fh). Owns its snapshot and a pin on dir. */
struct bfs_dirh {
	struct bfs_inode *dir;
	struct bfs_listing *l;
	bool attrs_done;
	struct bfs_inode **pinned; /* inodes made for readdirplus: alive until releasedir */
	size_t npinned;
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

/* bfsm2: the blob holds the standard headers too (":content-type", ...; s3/s3.h); a bfsm1
 * blob of an older version is not used (one HEAD again) */
#define META_MAGIC "bfsm2"

/* The metadata index (cache_meta_*): what a HEAD said about an object, keyed by the
 * (ETag, LastModified, Size) a LIST shows, so an unchanged object needs no HEAD again. */
static bool meta_from_index(struct bfs_fs *fs, const char *key, const struct bfs_dirent *d,
			    struct s3_object *o)
{
	void *blob = NULL;
	size_t len = 0;
	if (cache_meta_get(fs->cache, key, d->etag, d->last_modified, d->size, &blob, &len))
		return false;
	struct bfs_field f[] = { { "ct", NULL } };
	s3_object_init(o);
	s3_meta_free(&o->meta);
	int rc = bfs_record_decode(blob, len, META_MAGIC, f, 1, &o->meta);
	free(blob);
	if (rc) {
		s3_object_init(o);
		return false;
	}
	snprintf(o->etag, sizeof(o->etag), "%s", d->etag);
	snprintf(o->content_type, sizeof(o->content_type), "%s", f[0].value ? f[0].value : "");
	o->size = d->size;
	o->last_modified = d->last_modified;
	bfs_record_fields_free(f, 1);
	return true;
}

/* What a HEAD said about the object of listing entry d, for the metadata index: fills *r
 * (r->blob malloc'd) and returns true, or false when the object changed between the LIST
 * and the HEAD (nothing to vouch for). */
static bool meta_for_index(const char *key, const struct bfs_dirent *d,
			   const struct s3_object *o, struct cache_meta_rec *r)
{
	if (strcmp(o->etag, d->etag) != 0 || o->size != d->size)
		return false;
	struct bfs_field f[] = { { "ct", o->content_type } };
	char *blob = bfs_record_encode(META_MAGIC, f, 1, &o->meta);
	if (!blob)
		return false;
	*r = (struct cache_meta_rec){ .key = key, .etag = d->etag,
				      .last_modified = d->last_modified, .size = d->size,
				      .blob = blob, .bloblen = strlen(blob) };
	return true;
}

/* Hard-linked names: their attributes are those of the content objects they point to,
 * fetched in one more parallel round. objs[k] is replaced by the content object, whose
 * key stays in its metadata as BFS_LINK_META for apply_attrs. */
static void follow_links(struct bfs_fs *fs, struct s3_object *objs, int *rcs, size_t m)
{
	size_t n = 0;
	for (size_t k = 0; k < m; k++)
		n += rcs[k] == 0 && s3_meta_get(&objs[k].meta, BFS_LINK_META) != NULL;
	if (n == 0)
		return;
	const char **keys = calloc(n, sizeof(*keys));
	size_t *at = calloc(n, sizeof(*at));
	struct s3_object *c = calloc(n, sizeof(*c));
	int *crc = calloc(n, sizeof(*crc));
	if (!keys || !at || !c || !crc)
		goto out;
	n = 0;
	for (size_t k = 0; k < m; k++) {
		const char *lk = rcs[k] == 0 ? s3_meta_get(&objs[k].meta, BFS_LINK_META) : NULL;
		if (lk) {
			at[n] = k;
			keys[n++] = lk;
		}
	}
	if (s3_head_many(fs->s3, keys, n, c, crc) == 0) {
		for (size_t i = 0; i < n; i++) {
			if (crc[i] == 0 && s3_meta_set(&c[i].meta, BFS_LINK_META, keys[i]) == 0) {
				s3_object_free(&objs[at[i]]);
				objs[at[i]] = c[i];
				s3_object_init(&c[i]);
			} else {
				/* dangling: show the name object as it is */
				bfs_log(BFS_LOG_WARN, "hard link to %s: content object is missing",
					keys[i]);
				s3_meta_del(&objs[at[i]].meta, BFS_LINK_META);
			}
			s3_object_free(&c[i]);
		}
	}
out:
	free(keys);
	free(at);
	free(c);
	free(crc);
}

/* Makes (or updates) the inode of entry d from o (rc != 0: a directory without marker). */
static void apply_attrs(struct bfs_fs *fs, struct bfs_dirh *h, const struct bfs_dirent *d,
			char *key, const struct s3_object *o, int rc)
{
	struct bfs_inode *dir = h->dir;
	const char *lk = rc ? NULL : s3_meta_get(&o->meta, BFS_LINK_META);
	if (rc == 0 && bfs_integrity_check_meta(fs, lk ? lk : key, o))
		return; /* refused attributes: no entry, the kernel's lookup reports why */
	mode_t type = S_IFDIR;
	if (!d->is_dir) {
		struct stat st;
		bfs_meta_to_stat(o, false, &fs->defaults, &st);
		type = st.st_mode & S_IFMT;
	}
	struct bfs_inode *c = bfs_inode_make(fs, dir, d->name, type);
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	if (!bfs_is_dirty(c) && c->stage_fd < 0) {
		if (lk && !d->is_dir) {
			free(c->link_key);
			c->link_key = strdup(lk);
		}
		size_t kl = strlen(key);
		if (d->is_dir && kl)
			key[kl - 1] = '\0';
		bfs_ino_assign(c, rc ? NULL : &o->meta, c->link_key ? c->link_key : key);
		if (d->is_dir && kl)
			key[kl - 1] = '/';
		bfs_attr_apply(fs, c, rc ? NULL : o, d->is_dir);
		if (c->link_key)
			s3_meta_del(&c->meta, BFS_LINK_META); /* the content's own metadata */
	}
	pthread_mutex_unlock(&c->lock);
	/* an inode nobody references is freed at once: the handle keeps it until the kernel
	 * has taken its entry (or the directory is closed) */
	if (h->pinned)
		h->pinned[h->npinned++] = c;
	else
		bfs_inode_unpin(fs, c);
}

/* Fetches, in parallel, the attributes of the snapshot's entries that have none cached:
 * from the metadata index when LIST shows the object unchanged, else with a HEAD. */
static void fetch_attrs(struct bfs_fs *fs, struct bfs_dirh *h)
{
	size_t n = h->l->n, m = 0;
	h->pinned = calloc(n ? n : 1, sizeof(*h->pinned));
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
		struct s3_object o;
		if (d->listed && meta_from_index(fs, keys[m], d, &o)) {
			apply_attrs(fs, h, d, keys[m], &o, 0);
			s3_object_free(&o);
			free(keys[m]);
			keys[m] = NULL;
			continue;
		}
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
	/* into the metadata index in one commit: a cold listing of N objects is not N fsyncs */
	struct cache_meta_rec *recs = calloc(m, sizeof(*recs));
	size_t nrec = 0;
	for (size_t k = 0; recs && k < m; k++) {
		struct bfs_dirent *d = &h->l->ents[idx[k]];
		if (rcs[k] == 0 && d->listed && !s3_meta_get(&objs[k].meta, BFS_LINK_META) &&
		    meta_for_index(keys[k], d, &objs[k], &recs[nrec]))
			nrec++;
	}
	if (nrec && cache_meta_put_many(fs->cache, recs, nrec))
		bfs_log(BFS_LOG_DEBUG, "metadata index: %zu entries not stored", nrec);
	for (size_t i = 0; i < nrec; i++)
		free((void *)recs[i].blob);
	free(recs);
	follow_links(fs, objs, rcs, m);
	for (size_t k = 0; k < m; k++) {
		struct bfs_dirent *d = &h->l->ents[idx[k]];
		if (rcs[k] && !(d->is_dir && rcs[k] == -ENOENT))
			continue; /* gone, or failed: the entry is still listed, lookup retries */
		apply_attrs(fs, h, d, keys[k], &objs[k], rcs[k]);
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
	for (size_t i = 0; i < h->npinned; i++)
		bfs_inode_unpin(fs, h->pinned[i]);
	free(h->pinned);
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
