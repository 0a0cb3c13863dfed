/* fs/ops_link.c — hard links.
 *
 * A linked file's data and attributes move to a content object PREFIX.bucketfs/inodes/<id>
 * whose x-amz-meta-bfs-nlink counts its names; each name becomes a small object with
 * x-amz-meta-bfs-link pointing to it (docs/layout.md). The first link() of a file costs a
 * server-side CopyObject into the content object and two small PUTs, later ones a metadata
 * CopyObject and one small PUT: never a re-upload, whatever the size. Each name has an inode
 * of its own in this process; they share st_ino (the file's number from before the first
 * link, stored on the content object: fs/inode.c), and a change made through one name
 * invalidates the others in the kernel. */
#include <errno.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "util/util.h"

/* The small object standing for one name of a linked file: empty, pointing to link_key,
 * with the attributes of the moment so other S3 tools show something sensible. */
static int put_name(struct bfs_fs *fs, const char *key, const char *link_key,
		    const struct stat *st)
{
	struct s3_meta m;
	s3_meta_init(&m);
	int rc = bfs_meta_from_stat(st, &m);
	if (rc == 0)
		rc = s3_meta_set(&m, BFS_LINK_META, link_key);
	if (rc == 0)
		rc = bfs_integrity_seal_buf(fs->s3, fs->opts, key, "", 0, &m);
	if (rc == 0)
		rc = s3_put_buf(fs->s3, key, "", 0, "application/octet-stream", &m, NULL);
	if (rc)
		bfs_log(BFS_LOG_ERR, "%s: cannot store hard link: %s", key, s3_last_error());
	s3_meta_free(&m);
	return rc;
}

/* Sets the content object's link count to nlink (metadata-only copy onto itself), or deletes
 * it at 0. Retries when another writer changed it meanwhile. On success *out (nullable)
 * holds the new content object. */
int bfs_link_set_nlink(struct bfs_fs *fs, const char *link_key, long delta, struct s3_object *out)
{
	int rc = -EAGAIN;
	for (int attempt = 0; attempt < 5 && (rc == -EAGAIN || rc == -ESTALE); attempt++) {
		struct s3_object cur;
		rc = s3_head(fs->s3, link_key, &cur);
		if (rc)
			return rc;
		const char *nl = s3_meta_get(&cur.meta, BFS_NLINK_META);
		long n = (nl ? strtol(nl, NULL, 10) : 1) + delta;
		if (n <= 0) {
			s3_object_free(&cur);
			rc = s3_delete(fs->s3, link_key);
			return rc ? rc : 1;
		}
		char buf[24];
		snprintf(buf, sizeof(buf), "%ld", n);
		rc = s3_meta_set(&cur.meta, BFS_NLINK_META, buf);
		/* a name more or less is a change of the file's status (link(2), unlink(2)) */
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		if (rc == 0)
			rc = bfs_meta_set_time(&cur.meta, "ctime", &now);
		struct s3_object res;
		if (rc == 0)
			rc = s3_copy(fs->s3, link_key, link_key, &cur.meta, cur.content_type,
				     cur.etag, &res);
		if (rc == 0) {
			s3_meta_free(&res.meta);
			res.meta = cur.meta;
			s3_meta_init(&cur.meta);
			res.size = cur.size;
			if (out)
				*out = res;
			else
				s3_object_free(&res);
		}
		s3_object_free(&cur);
	}
	return rc;
}

int bfs_link_fresh_nlink(struct bfs_fs *fs, const char *link_key, struct s3_meta *m)
{
	struct s3_object cur;
	int rc = s3_head(fs->s3, link_key, &cur);
	if (rc == -ENOENT)
		return 0; /* the last name went meanwhile; the upload recreates what we have */
	if (rc)
		return rc;
	const char *nl = s3_meta_get(&cur.meta, BFS_NLINK_META);
	rc = nl ? s3_meta_set(m, BFS_NLINK_META, nl) : 0;
	s3_object_free(&cur);
	return rc;
}

static bool is_linkable(const struct bfs_inode *i)
{
	return !S_ISDIR(i->st.st_mode) && !S_ISLNK(i->st.st_mode);
}

void bfs_link_changed(struct bfs_fs *fs, struct bfs_inode *self, const char *link_key)
{
	size_t n;
	struct bfs_inode **list = bfs_inode_pin_matching(fs, is_linkable, &n);
	for (size_t k = 0; k < n; k++) {
		struct bfs_inode *i = list[k];
		pthread_mutex_lock(&i->lock);
		bool sibling = i == self || (i->link_key && strcmp(i->link_key, link_key) == 0);
		if (sibling && i != self)
			i->attr_expire = 0; /* link count, times, mode: ask S3 again */
		pthread_mutex_unlock(&i->lock);
		fuse_ino_t id = i->nodeid;
		bfs_inode_unpin(fs, i);
		/* the kernel forgets what it cached for every name, so the next stat or read
		 * through any of them shows the change. For the inode of the request being
		 * handled only its attributes: the kernel may hold its pages. (Invalidating
		 * an inode takes no inode lock in the kernel, so this cannot deadlock with the
		 * request in progress.) */
		if (sibling && fs->se)
			fuse_lowlevel_notify_inval_inode(fs->se, id, i == self ? -1 : 0, 0);
	}
	free(list);
}

int bfs_link_unlink(struct bfs_fs *fs, const char *name_key, struct bfs_inode *ino)
{
	pthread_mutex_lock(&ino->lock);
	char *lk = ino->link_key ? strdup(ino->link_key) : NULL;
	pthread_mutex_unlock(&ino->lock);
	if (!lk)
		return -ENOMEM;
	struct bfs_link_change ch = { .link_key = lk, .removes = { name_key } };
	uint64_t intent;
	int rc = bfs_link_intent_begin(fs, &ch, &intent);
	bool gone = false; /* the name is deleted: the count must follow */
	if (rc == 0)
		gone = (rc = s3_delete(fs->s3, name_key)) == 0;
	if (gone)
		rc = bfs_link_set_nlink(fs, lk, -1, NULL);
	if (!gone || rc == 0 || rc == 1 || rc == -ENOENT)
		bfs_link_intent_end(fs, intent); /* else the next mount settles the count */
	if (rc == -ENOENT || rc == 1) {
		/* the content went with its last name (or was gone already): an open
		 * descriptor of this name has nothing left to write to */
		pthread_mutex_lock(&ino->lock);
		free(ino->link_key);
		ino->link_key = NULL;
		pthread_mutex_unlock(&ino->lock);
		rc = 0;
	}
	if (rc)
		bfs_log(BFS_LOG_ERR, "%s: unlink of hard link failed: %s", name_key, s3_last_error());
	else
		bfs_link_changed(fs, NULL, lk);
	free(lk);
	return rc;
}

static void op_link(fuse_req_t req, fuse_ino_t nodeid, fuse_ino_t newparent, const char *newname)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *ino = bfs_inode_get(fs, nodeid), *ndir = bfs_inode_get(fs, newparent);
	struct bfs_inode *nino = NULL;
	char *name_key = NULL, *new_key = NULL, *lk = NULL;
	struct s3_object content;
	s3_object_init(&content);
	int rc = ino && ndir ? 0 : -ESTALE;
	if (rc == 0 && fs->opts->read_only)
		rc = -EROFS;
	if (rc == 0 && (S_ISDIR(ino->st.st_mode) || S_ISLNK(ino->st.st_mode)))
		rc = -EPERM; /* directories never; symlinks: not supported (fifos, sockets and
			      * devices are empty objects and link like files) */
	if (rc == 0)
		rc = bfs_name_check(fs, ndir, newname, false);
	/* the content must be in S3 before it can be shared */
	if (rc == 0)
		rc = bfs_upload_sync(fs, ino);
	if (rc == 0)
		rc = bfs_attr_refresh(fs, ino, false);
	if (rc)
		goto out;
	name_key = bfs_inode_key(fs, ino);
	new_key = bfs_child_key(fs, ndir, newname, false);
	if (!name_key || !new_key) {
		rc = -ENOMEM;
		goto out;
	}

	pthread_mutex_lock(&ino->lock);
	bfs_inode_wait_busy(ino);
	if (ino->link_key == NULL)
		clock_gettime(CLOCK_REALTIME, &ino->st.st_ctim); /* the first link changes status */
	struct stat st = ino->st;
	bool convert = ino->link_key == NULL;
	struct s3_meta m;
	s3_meta_init(&m);
	char etag[sizeof(ino->etag)];
	memcpy(etag, ino->etag, sizeof(etag));
	if (convert) {
		unsigned char id[12];
		char hex[25];
		rc = RAND_bytes(id, sizeof(id)) == 1 ? 0 : -EIO;
		bfs_hex(id, sizeof(id), hex);
		if (rc == 0 && asprintf(&lk, "%s" BFS_INTERNAL_DIR "/inodes/%s", fs->opts->prefix,
					hex) < 0) {
			lk = NULL;
			rc = -ENOMEM;
		}
		if (rc == 0)
			rc = bfs_attr_meta(ino, lk, &m);
		/* the file keeps its number (a file bucketfs did not write has its key's hash,
		 * which a later file at that key would have too: it gets a number of its own) */
		ino_t n = ino->ino_stored ? ino->st.st_ino : bfs_ino_random();
		if (rc == 0)
			rc = n ? bfs_ino_store(&m, n, lk) : -EIO;
		if (rc == 0)
			rc = s3_meta_set(&m, BFS_NLINK_META, "2");
		/* the signature names the object key: the content object gets its own */
		if (rc == 0)
			rc = bfs_integrity_resign(fs->opts, name_key, &ino->meta,
						  (uint64_t)st.st_size, lk, &m);
	} else {
		lk = strdup(ino->link_key);
		rc = lk ? 0 : -ENOMEM;
	}
	if (rc == 0)
		ino->uploading = true; /* no upload or metadata change while we move things */
	pthread_mutex_unlock(&ino->lock);
	if (rc) {
		s3_meta_free(&m);
		goto out;
	}

	/* journaled first: a crash in the middle leaves no count below the names and no
	 * content nobody uses, once the next mount settled it (fs/link_intent.c) */
	struct bfs_link_change ch = { .link_key = lk, .is_new = convert,
				      .adds = { new_key, convert ? name_key : NULL } };
	uint64_t intent = 0;
	if (rc == 0)
		rc = bfs_link_intent_begin(fs, &ch, &intent);
	if (rc) {
		/* nothing moved */
	} else if (convert) {
		/* 1. the data moves server-side into the content object (the name stays valid
		 *    until step 2 replaces it) */
		rc = s3_copy(fs->s3, name_key, lk, &m, "application/octet-stream",
			     etag[0] ? etag : NULL, &content);
		if (rc == 0) {
			s3_meta_free(&content.meta);
			s3_meta_copy(&content.meta, &m);
			content.size = (uint64_t)st.st_size;
			rc = put_name(fs, name_key, lk, &st);
		}
		if (rc)
			bfs_log(BFS_LOG_ERR, "%s: cannot make hard link: %s", name_key,
				s3_last_error());
	} else {
		rc = bfs_link_set_nlink(fs, lk, +1, &content);
	}
	s3_meta_free(&m);
	if (rc == 0)
		rc = put_name(fs, new_key, lk, &st);
	if (rc == 0)
		bfs_link_intent_end(fs, intent); /* on failure the next mount settles it */

	pthread_mutex_lock(&ino->lock);
	ino->uploading = false;
	pthread_cond_broadcast(&ino->cond);
	if (rc == 0) {
		free(ino->link_key);
		ino->link_key = strdup(lk);
		bfs_ino_assign(ino, &content.meta, lk);
		bfs_attr_apply(fs, ino, &content, false);
		st = ino->st;
	}
	pthread_mutex_unlock(&ino->lock);
	if (rc)
		goto out;

	nino = bfs_inode_make(fs, ndir, newname, st.st_mode & S_IFMT);
	if (!nino) {
		rc = -ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&nino->lock);
	free(nino->link_key);
	nino->link_key = strdup(lk);
	bfs_ino_assign(nino, &content.meta, lk);
	bfs_attr_apply(fs, nino, &content, false);
	pthread_mutex_unlock(&nino->lock);
	bfs_listing_note(fs, ndir, newname, false, true);
	bfs_link_changed(fs, ino, lk);
	/* the name's old object is now a pointer: cached blocks of it are useless */
	cache_invalidate(fs->cache, name_key);
out:
	if (rc) {
		fuse_reply_err(req, -rc);
	} else {
		struct fuse_entry_param e;
		bfs_fill_entry(fs, nino, &e);
		bfs_inode_lookup_ref(fs, nino, 1);
		if (fuse_reply_entry(req, &e) == -ENOENT)
			bfs_inode_forget(fs, nino->nodeid, 1);
	}
	s3_object_free(&content);
	free(name_key);
	free(new_key);
	free(lk);
	bfs_inode_unpin(fs, nino);
	bfs_inode_unpin(fs, ino);
	bfs_inode_unpin(fs, ndir);
}

void bfs_ops_link(struct fuse_lowlevel_ops *ops)
{
	ops->link = op_link;
}
