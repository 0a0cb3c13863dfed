/* fs/ops_rename.c — rename of files and directories.
 *
 * A file whose upload is pending is just renamed in the tree: its upload goes straight to
 * the new key (and deletes the old object if there was one). Anything else is moved
 * server-side: CopyObject then DeleteObject, for a directory once per object below it, in
 * parallel; no data passes through this machine. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "util/util.h"

#define COPY_THREADS 16

struct copy_job {
	struct bfs_fs *fs;
	char **src, **dst;
	size_t n;
	atomic_size_t next;
	atomic_int err;
};

static void *copy_worker(void *arg)
{
	struct copy_job *j = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&j->next, 1);
		if (i >= j->n || atomic_load(&j->err))
			break;
		/* a plain copy, or HEAD + re-signed copy when signing (fs/integrity.c) */
		int rc = bfs_integrity_copy(j->fs->s3, j->fs->opts, j->src[i], j->dst[i]);
		if (rc) {
			bfs_log(BFS_LOG_ERR, "rename: copy %s failed: %s", j->src[i], s3_last_error());
			int zero = 0;
			atomic_compare_exchange_strong(&j->err, &zero, rc);
		}
	}
	return NULL;
}

/* Copies every object under oldp to the same name under newp, then deletes the old ones. */
static int move_prefix(struct bfs_fs *fs, const char *oldp, const char *newp)
{
	struct copy_job j = { .fs = fs };
	size_t cap = 0, ol = strlen(oldp);
	char *token = NULL;
	int rc = 0;
	for (;;) {
		struct s3_list_page page;
		rc = s3_list(fs->s3, oldp, NULL, token, 1000, &page);
		free(token);
		token = NULL;
		if (rc)
			goto out;
		for (size_t i = 0; i < page.nobjects && rc == 0; i++) {
			if (j.n == cap) {
				cap = cap ? cap * 2 : 256;
				char **s = realloc(j.src, cap * sizeof(*s));
				char **d = s ? realloc(j.dst, cap * sizeof(*d)) : NULL;
				if (s)
					j.src = s;
				if (d)
					j.dst = d;
				if (!s || !d) {
					rc = -ENOMEM;
					break;
				}
			}
			const char *k = page.objects[i].key;
			j.src[j.n] = strdup(k);
			if (asprintf(&j.dst[j.n], "%s%s", newp, k + ol) < 0)
				j.dst[j.n] = NULL;
			if (!j.src[j.n] || !j.dst[j.n]) {
				free(j.src[j.n]);
				free(j.dst[j.n]);
				rc = -ENOMEM;
				break;
			}
			j.n++;
		}
		if (rc == 0 && page.next_token && !(token = strdup(page.next_token)))
			rc = -ENOMEM;
		s3_list_page_free(&page);
		if (rc || !token)
			break;
	}
	if (rc)
		goto out;
	pthread_t th[COPY_THREADS];
	int nth = j.n < COPY_THREADS ? (int)j.n : COPY_THREADS, started = 0;
	for (; started < nth; started++)
		if (pthread_create(&th[started], NULL, copy_worker, &j))
			break;
	if (started == 0)
		copy_worker(&j);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	rc = atomic_load(&j.err);
	if (rc == 0 && j.n) {
		/* contents first, directory markers last: nobody sees a directory vanish
		 * before what was in it */
		size_t nfiles = 0;
		for (size_t i = 0; i < j.n; i++) {
			size_t l = strlen(j.src[i]);
			if (l && j.src[i][l - 1] != '/') {
				char *t = j.src[nfiles];
				j.src[nfiles++] = j.src[i];
				j.src[i] = t;
			}
		}
		rc = s3_delete_many(fs->s3, (const char *const *)j.src, nfiles);
		if (rc == 0 && nfiles < j.n)
			rc = s3_delete_many(fs->s3, (const char *const *)j.src + nfiles,
					    j.n - nfiles);
	}
	/* on failure the copies stay: nothing is lost, and a retry overwrites them */
out:
	free(token);
	for (size_t i = 0; i < j.n; i++) {
		free(j.src[i]);
		free(j.dst[i]);
	}
	free(j.src);
	free(j.dst);
	return rc;
}

/* After a directory moved from oldp to newp: pending uploads below it carry the new key in
 * their journal records, and their old objects were moved along with the rest. */
static bool has_staging(const struct bfs_inode *i)
{
	return !i->unlinked && __atomic_load_n(&i->stage_fd, __ATOMIC_RELAXED) >= 0;
}

static void fix_pending_below(struct bfs_fs *fs, const char *oldp, const char *newp)
{
	size_t n;
	struct bfs_inode **list = bfs_inode_pin_matching(fs, has_staging, &n);
	size_t ol = strlen(oldp);
	for (size_t k = 0; k < n; k++) {
		struct bfs_inode *i = list[k];
		char *key = bfs_inode_key(fs, i);
		bool below = key && strncmp(key, newp, strlen(newp)) == 0;
		free(key);
		if (!below) {
			bfs_inode_unpin(fs, i);
			continue;
		}
		pthread_mutex_lock(&i->lock);
		if (i->remote_key && strncmp(i->remote_key, oldp, ol) == 0) {
			char *nk;
			if (asprintf(&nk, "%s%s", newp, i->remote_key + ol) >= 0) {
				free(i->remote_key);
				i->remote_key = nk;
			}
		}
		if (i->stage_fd >= 0) {
			i->committed = false; /* the record holds the key: write it again */
			bfs_upload_commit(fs, i);
		}
		pthread_mutex_unlock(&i->lock);
		bfs_inode_unpin(fs, i);
	}
	free(list);
}

/* Ends the hold a failed rename kept on an inode; true if it still has data to upload. */
static bool release_hold(struct bfs_inode *dst)
{
	pthread_mutex_lock(&dst->lock);
	bool was = dst->held;
	dst->held = false;
	pthread_cond_broadcast(&dst->cond);
	bool dirty = was && bfs_is_dirty(dst) && dst->stage_fd >= 0;
	pthread_mutex_unlock(&dst->lock);
	return dirty;
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct bfs_fs *fs = fuse_req_userdata(req);
	struct bfs_inode *dir = bfs_inode_get(fs, parent), *ndir = bfs_inode_get(fs, newparent);
	struct bfs_inode *src = NULL, *dst = NULL;
	char *okey = NULL, *nkey = NULL, *slk = NULL, *dlk = NULL;
	uint64_t src_intent = 0, dst_intent = 0;
	bool links = false; /* two names of one hard-linked file */
	int rc = dir && ndir ? 0 : -ESTALE;
	if (rc == 0 && fs->opts->read_only)
		rc = -EROFS;
	if (rc == 0 && (flags & RENAME_EXCHANGE))
		rc = -EINVAL;
	if (rc == 0)
		rc = bfs_attr_lookup(fs, dir, name, &src);
	if (rc == 0)
		rc = bfs_name_check(fs, ndir, newname, S_ISDIR(src->st.st_mode));
	if (rc)
		goto out;
	int drc = bfs_attr_lookup(fs, ndir, newname, &dst);
	if (drc && drc != -ENOENT) {
		rc = drc;
		goto out;
	}
	if (dst == src)
		goto out; /* same file: nothing to do */
	if (dst) {
		/* two names of one hard-linked file: POSIX says rename does nothing */
		pthread_mutex_lock(&src->lock);
		char *slk = src->link_key ? strdup(src->link_key) : NULL;
		pthread_mutex_unlock(&src->lock);
		pthread_mutex_lock(&dst->lock);
		bool same = slk && dst->link_key && strcmp(slk, dst->link_key) == 0;
		pthread_mutex_unlock(&dst->lock);
		free(slk);
		links = same;
		if (same)
			goto out;
	}
	bool is_dir = S_ISDIR(src->st.st_mode);
	if (dst) {
		if (flags & RENAME_NOREPLACE)
			rc = -EEXIST;
		else if (S_ISDIR(dst->st.st_mode) && !is_dir)
			rc = -EISDIR;
		else if (!S_ISDIR(dst->st.st_mode) && is_dir)
			rc = -ENOTDIR;
		else if (is_dir)
			rc = bfs_dir_empty(fs, dst);
		if (rc)
			goto out;
	}
	if (!is_dir) {
		/* close-to-open: the rename is in S3 when it returns, so the data it moves is
		 * put there first (a file still open for writing keeps changing: its close puts
		 * the rest); attribute changes ride along with the copy below, unless the
		 * object's other metadata is unknown here */
		pthread_mutex_lock(&src->lock);
		bool staged = bfs_is_dirty(src) && src->stage_fd >= 0 && !src->link_key;
		bool first = staged && (src->attr_only ? !src->meta_loaded : bfs_sync_changes(fs));
		pthread_mutex_unlock(&src->lock);
		if (first && (rc = bfs_upload_errno(bfs_upload_sync(fs, src))))
			goto out;
	}
	okey = bfs_inode_key(fs, src);
	nkey = bfs_child_key(fs, ndir, newname, is_dir);
	if (!okey || !nkey) {
		rc = -ENOMEM;
		goto out;
	}

	pthread_mutex_lock(&src->lock);
	bfs_inode_wait_busy(src);
	/* a hard-linked name is a small pointer object: it moves by copy, its content stays */
	bool linked = src->link_key != NULL;
	slk = linked ? strdup(src->link_key) : NULL;
	/* attribute changes alone ride along with the copy (and their entry goes after it) */
	bool attrs = src->stage_fd >= 0 && src->attr_only && src->meta_loaded && !linked;
	bool pending = src->stage_fd >= 0 && !linked && !attrs;
	uint64_t gen = src->gen;
	/* a pending file leaves an object behind at okey (its own earlier version, or the
	 * one it replaced: see "replaced" below): it goes now, while the name is ours. A
	 * delete put off until the upload would remove whatever is at okey by then (a file
	 * renamed or created there meanwhile). Until the rename ends no upload of src
	 * starts: it would PUT at okey again. */
	bool stale = pending && (src->base_etag[0] || src->remote_key);
	if (pending)
		src->held = true;
	bool meta_loaded = src->meta_loaded && !linked;
	struct s3_meta m;
	s3_meta_init(&m);
	char etag[sizeof(src->etag)];
	memcpy(etag, src->etag, sizeof(etag));
	if (!pending && !is_dir && meta_loaded)
		rc = bfs_attr_meta(src, nkey, &m); /* ctime and friends as this mount knows */
	if (rc == 0 && !pending && !is_dir && meta_loaded) /* the key is signed: re-sign */
		rc = bfs_integrity_resign(fs->opts, okey, &src->meta, (uint64_t)src->st.st_size,
					  nkey, &m);
	pthread_mutex_unlock(&src->lock);
	if (rc == 0 && linked && !slk)
		rc = -ENOMEM;
	if (rc)
		goto out;

	/* what S3 holds at the new name as this mount last saw it: the state a pending upload
	 * to that name replaces, so recovery after a crash does not take our own rename for
	 * another writer's change */
	char replaced[sizeof(src->etag)] = "";
	bool marker = false;
	if (dst) {
		pthread_mutex_lock(&dst->lock);
		bfs_inode_wait_busy(dst);
		/* and it stays so: an upload of dst's own pending data from now on would
		 * leave our record naming a state S3 no longer holds */
		dst->held = true;
		/* still open: POSIX keeps the replaced file readable, so keep a local copy of
		 * it, as unlink does (it is never uploaded: the inode loses its name) */
		if (dst->open_count > 0 && S_ISREG(dst->st.st_mode) && !dst->link_key &&
		    (dst->stage_fd < 0 || dst->attr_only))
			rc = bfs_stage_open(fs, dst, false);
		if (dst->link_key)
			snprintf(replaced, sizeof(replaced), "%s", BFS_EMPTY_ETAG);
		else
			memcpy(replaced, dst->stage_fd >= 0 ? dst->base_etag : dst->etag,
			       sizeof(replaced));
		marker = S_ISDIR(dst->st.st_mode) && dst->has_marker && !is_dir;
		dlk = dst->link_key ? strdup(dst->link_key) : NULL;
		pthread_mutex_unlock(&dst->lock);
	}
	/* hard links whose names change are journaled first (fs/link_intent.c): a linked
	 * name moves (its content keeps its count), a linked name is replaced (its content
	 * loses one) */
	if (rc == 0 && slk) {
		struct bfs_link_change ch = { .link_key = slk, .adds = { nkey },
					      .removes = { okey } };
		rc = bfs_link_intent_begin(fs, &ch, &src_intent);
	}
	if (rc == 0 && dlk) {
		struct bfs_link_change ch = { .link_key = dlk, .removes = { nkey } };
		rc = bfs_link_intent_begin(fs, &ch, &dst_intent);
	}
	if (rc) {
		s3_meta_free(&m);
		goto out;
	}

	if (!pending && !is_dir) {
		rc = meta_loaded || fs->opts->nhmac_keys == 0
		     ? s3_copy(fs->s3, okey, nkey, meta_loaded ? &m : NULL,
			       meta_loaded ? bfs_mime_type(nkey) : NULL, /* unless m has one */
			       etag[0] && !linked ? etag : NULL, NULL)
		     : bfs_integrity_copy(fs->s3, fs->opts, okey, nkey);
		if (rc == 0)
			rc = s3_delete(fs->s3, okey);
		if (rc)
			bfs_log(BFS_LOG_ERR, "rename %s -> %s failed: %s", okey, nkey,
				s3_last_error());
	} else if (is_dir) {
		rc = move_prefix(fs, okey, nkey);
	} else if (stale) {
		rc = s3_delete(fs->s3, okey);
		if (rc)
			bfs_log(BFS_LOG_ERR, "rename %s -> %s: cannot delete the old %s: %s",
				okey, nkey, okey, s3_last_error());
	}
	s3_meta_free(&m);
	if (rc)
		goto out;
	bfs_link_intent_end(fs, src_intent); /* the name moved: the count is right */
	src_intent = 0;
	if (attrs) {
		pthread_mutex_lock(&src->lock);
		bfs_inode_wait_busy(src);
		if (src->attr_only && src->gen == gen)
			bfs_stage_discard(fs, src); /* the copy stored them */
		pthread_mutex_unlock(&src->lock);
	}

	bfs_inode_move(fs, src, ndir, newname);
	bfs_listing_note(fs, dir, name, is_dir, false);
	bfs_listing_note(fs, ndir, newname, is_dir, true);
	cache_invalidate(fs->cache, okey);
	if (pending) {
		/* durable under the new name first: a crash from here on recovers the rename */
		pthread_mutex_lock(&src->lock);
		memcpy(src->base_etag, replaced, sizeof(src->base_etag));
		free(src->remote_key);
		src->remote_key = NULL; /* nothing of it is left in S3 */
		bfs_mark_dirty(src);
		rc = bfs_upload_commit(fs, src);
		src->held = false;
		pthread_cond_broadcast(&src->cond);
		pthread_mutex_unlock(&src->lock);
		bfs_upload_schedule(fs, src, false);
	}
	if (dst) {
		/* then the replaced name goes: its pending data, if any, is dropped; its object
		 * was overwritten (file), is overwritten by the pending upload, or is removed now
		 * (empty directory marker); a hard link's count drops only now, so it is never
		 * below the number of names in S3, whenever a crash comes */
		pthread_mutex_lock(&dst->lock);
		bfs_inode_wait_busy(dst);
		if (dst->open_count > 0 && !dst->link_key)
			bfs_stage_forget(fs, dst); /* readable until its last close */
		else
			bfs_stage_discard(fs, dst);
		dst->held = false;
		pthread_cond_broadcast(&dst->cond);
		pthread_mutex_unlock(&dst->lock);
		if (marker)
			s3_delete(fs->s3, nkey);
		if (dlk && bfs_link_set_nlink(fs, dlk, -1, NULL) >= 0) {
			bfs_link_changed(fs, NULL, dlk);
			bfs_link_intent_end(fs, dst_intent);
			dst_intent = 0;
		}
	}
	if (is_dir)
		fix_pending_below(fs, okey, nkey);
out:
	/* an intent still open (a step failed) stays in the journal: the next mount settles
	 * the link count from what S3 then holds */
	fuse_reply_err(req, -rc);
	if (links && rc == 0 && fs->se) {
		/* POSIX: nothing happens, both names stay. But each name is an inode of its own
		 * here, so the kernel took it for a rename of one file onto another: once the
		 * rename it is finishing lets go of the directory, its entry for newname
		 * (now src's inode) is dropped, and the next lookup finds dst again. (After the
		 * reply: the kernel holds the directory until then.) */
		fuse_lowlevel_notify_inval_entry(fs->se, newparent, newname, strlen(newname));
		fuse_lowlevel_notify_inval_entry(fs->se, parent, name, strlen(name));
	}
	if (dst && release_hold(dst))
		bfs_upload_schedule(fs, dst, false); /* the rename failed: dst's data goes on */
	if (src && release_hold(src))
		bfs_upload_schedule(fs, src, false); /* the same for src */
	free(slk);
	free(dlk);
	free(okey);
	free(nkey);
	bfs_inode_unpin(fs, src);
	bfs_inode_unpin(fs, dst);
	bfs_inode_unpin(fs, dir);
	bfs_inode_unpin(fs, ndir);
}

void bfs_ops_rename(struct fuse_lowlevel_ops *ops)
{
	ops->rename = op_rename;
}
