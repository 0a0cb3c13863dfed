/* fs/attr.c — attributes from S3: lookup of names, refresh of cached attributes, and the
 * metadata bucketfs writes back. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "util/util.h"

bool bfs_sync_changes(const struct bfs_fs *fs)
{
	return fs->opts->consistency == BFS_CLOSE_TO_OPEN;
}

double bfs_attr_timeout(struct bfs_fs *fs)
{
	return fs->opts->stat_ttl;
}

static bool is_dir_object(const struct s3_object *o)
{
	const char *m = s3_meta_get(&o->meta, "mode");
	if (m) {
		unsigned long mode = strtoul(m, NULL, 10);
		if ((mode & S_IFMT) == S_IFDIR)
			return true;
		if (mode & S_IFMT)
			return false;
	}
	return strncmp(o->content_type, "application/x-directory", 23) == 0;
}

void bfs_attr_apply(struct bfs_fs *fs, struct bfs_inode *ino, const struct s3_object *o,
		    bool is_dir)
{
	struct stat st;
	bfs_meta_to_stat(o, is_dir, &fs->defaults, &st);
	if (is_dir) {
		st.st_mode = S_IFDIR | (st.st_mode & 07777);
		st.st_size = 0;
		/* entries this mount changed since the marker was written: S3 has an older mtime
		 * until the marker's next write stores it */
		if (bfs_ts_before(&st.st_mtim, &ino->touched))
			st.st_mtim = ino->touched;
		if (bfs_ts_before(&st.st_ctim, &ino->touched))
			st.st_ctim = ino->touched;
	}
	/* st_ino is set by the caller (bfs_ino_assign) */
	st.st_ino = ino->st.st_ino ? ino->st.st_ino : ino->nodeid;
	const char *nl = o ? s3_meta_get(&o->meta, BFS_NLINK_META) : NULL;
	st.st_nlink = nl && strtoul(nl, NULL, 10) > 1 ? (nlink_t)strtoul(nl, NULL, 10) : 1;
	st.st_blksize = 1 << 20;
	st.st_blocks = (st.st_size + 511) / 512;
	ino->st = st;
	if (o) {
		snprintf(ino->etag, sizeof(ino->etag), "%s", o->etag);
		s3_meta_free(&ino->meta);
		s3_meta_copy(&ino->meta, &o->meta);
		ino->meta_loaded = true;
	} else {
		ino->etag[0] = '\0';
		s3_meta_free(&ino->meta);
		s3_meta_init(&ino->meta);
		ino->meta_loaded = true;
	}
	ino->has_marker = is_dir && o != NULL;
	ino->attr_expire = bfs_mono_ns() + fs->stat_ttl_ns;
	ino->open_fresh = true;
}

int bfs_attr_meta(struct bfs_inode *ino, const char *key, struct s3_meta *dst)
{
	int rc = s3_meta_copy(dst, &ino->meta);
	if (rc)
		return rc;
	rc = bfs_meta_from_stat(&ino->st, dst);
	/* a number taken over from elsewhere (a copy's, or a key's hash) is never stored: it
	 * would become the number of two files */
	s3_meta_del(dst, BFS_INO_META);
	if (rc == 0 && ino->ino_stored && !S_ISDIR(ino->st.st_mode))
		rc = bfs_ino_store(dst, ino->st.st_ino, key);
	if (rc)
		s3_meta_free(dst);
	return rc;
}

void bfs_attr_report(struct bfs_fs *fs, struct bfs_inode *ino, struct stat *st)
{
	pthread_mutex_lock(&ino->lock);
	*st = ino->st;
	if (S_ISDIR(st->st_mode) && ino->listing) {
		/* ".", its entry in the parent, and each subdirectory's ".." */
		nlink_t n = 2;
		for (size_t i = 0; i < ino->listing->n; i++)
			n += ino->listing->ents[i].is_dir;
		st->st_nlink = n;
	}
	bool linked = ino->link_key != NULL;
	pthread_mutex_unlock(&ino->lock);
	pthread_mutex_lock(&fs->lock);
	if (ino->unlinked && !linked)
		st->st_nlink = 0; /* open after its last name went */
	pthread_mutex_unlock(&fs->lock);
}

void bfs_fill_entry(struct bfs_fs *fs, struct bfs_inode *ino, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino->nodeid;
	e->generation = 1;
	bfs_attr_report(fs, ino, &e->attr);
	e->attr_timeout = bfs_attr_timeout(fs);
	e->entry_timeout = bfs_attr_timeout(fs);
}

/* What S3 says about a name: a file-like object, a directory (with or without marker). */
struct found {
	bool exists, is_dir, marker;
	struct s3_object obj; /* valid when !is_dir || marker; a hard link's content object */
	char *link_key;       /* hard link: the content object the name points to; owned */
};

/* A name object pointing to a hard-linked content object: the content holds the data and
 * attributes. A dangling name (content gone) shows as what the name object says. */
static int follow_link(struct bfs_fs *fs, struct found *f)
{
	const char *lk = s3_meta_get(&f->obj.meta, BFS_LINK_META);
	if (!lk || f->is_dir)
		return 0;
	struct s3_object content;
	int rc = s3_head(fs->s3, lk, &content);
	if (rc == -ENOENT) {
		bfs_log(BFS_LOG_WARN, "hard link to %s: content object is missing", lk);
		return 0;
	}
	if (rc)
		return rc;
	f->link_key = strdup(lk);
	if (!f->link_key) {
		s3_object_free(&content);
		return -ENOMEM;
	}
	s3_object_free(&f->obj);
	f->obj = content;
	return 0;
}

#define NEG_FRESH_NS (200 * 1000000LL)
#define PROBE_ABSENT 2 /* dir_hint: a listing lacked the name, but may be stale */

/* One LIST with prefix key and delimiter '/': is there an object key or anything below
 * key/? Sets *file, *dir; *sure false when the page ended before it could tell. */
static int list_probe(struct bfs_fs *fs, const char *key, bool *file, bool *dir, bool *sure)
{
	struct s3_list_page page;
	int rc = s3_list(fs->s3, key, "/", NULL, 1000, &page);
	if (rc)
		return rc;
	size_t kl = strlen(key);
	*file = *dir = false;
	for (size_t i = 0; i < page.nobjects; i++)
		*file |= strcmp(page.objects[i].key, key) == 0;
	for (size_t i = 0; i < page.nprefixes; i++)
		*dir |= strncmp(page.prefixes[i], key, kl) == 0 && strcmp(page.prefixes[i] + kl, "/") == 0;
	/* "key/" sorts after keys that continue key with a byte below '/' ("key.txt") */
	*sure = *file || *dir || page.next_token == NULL;
	s3_list_page_free(&page);
	return 0;
}

/* Probes S3 for key (no trailing slash): HEAD key, then HEAD key/ (a directory marker), then
 * LIST key/ for a directory without marker. dir_hint (1 dir, 0 file, -1 unknown) from a
 * listing saves the requests that cannot succeed; PROBE_ABSENT (a listing lacked it) asks
 * with one LIST first, so a name that is not there costs one request. */
static int probe(struct bfs_fs *fs, const char *key, int dir_hint, struct found *f)
{
	memset(f, 0, sizeof(*f));
	s3_object_init(&f->obj);
	int rc;
	char *dkey = NULL;
	if (dir_hint == PROBE_ABSENT) {
		bool file, dir, sure;
		rc = list_probe(fs, key, &file, &dir, &sure);
		if (rc)
			return rc;
		if (sure && !file && !dir)
			return 0;
		dir_hint = file ? 0 : dir ? 1 : -1;
	}
	if (dir_hint != 1) {
		rc = s3_head(fs->s3, key, &f->obj);
		if (rc == 0) {
			f->exists = true;
			f->is_dir = is_dir_object(&f->obj);
			f->marker = f->is_dir;
			rc = follow_link(fs, f);
			/* signed metadata (docs/integrity.md): tampered attributes are refused */
			if (rc == 0)
				rc = bfs_integrity_check_meta(fs, f->link_key ? f->link_key : key,
							      &f->obj);
			return rc;
		}
		s3_object_free(&f->obj);
		s3_object_init(&f->obj);
		if (rc != -ENOENT)
			return rc;
		if (dir_hint == 0)
			return 0; /* listing says it is a file, and it is gone */
	}
	if (asprintf(&dkey, "%s/", key) < 0)
		return -ENOMEM;
	/* a directory: its marker (HEAD, for its attributes), or anything below it (one-key
	 * LIST, which also shows the marker). The listing said "directory": the marker first;
	 * else the LIST first, so a name that is not there costs two requests, not three. */
	bool marker_known = false;
	if (dir_hint != 1) {
		struct s3_list_page page;
		rc = s3_list(fs->s3, dkey, NULL, NULL, 1, &page);
		if (rc)
			goto out;
		f->exists = f->is_dir = page.nobjects > 0;
		marker_known = page.nobjects > 0 && strcmp(page.objects[0].key, dkey) == 0;
		s3_list_page_free(&page);
		if (!marker_known)
			goto out; /* nothing, or an implicit directory */
	}
	rc = s3_head(fs->s3, dkey, &f->obj);
	if (rc == 0) {
		f->exists = f->is_dir = f->marker = true;
		rc = bfs_integrity_check_meta(fs, dkey, &f->obj);
		goto out;
	}
	s3_object_free(&f->obj);
	s3_object_init(&f->obj);
	if (rc != -ENOENT)
		goto out;
	/* no marker (or it went since the LIST): anything below? */
	struct s3_list_page page;
	rc = s3_list(fs->s3, dkey, NULL, NULL, 1, &page);
	if (rc)
		goto out;
	f->exists = f->is_dir = page.nobjects > 0;
	s3_list_page_free(&page);
out:
	free(dkey);
	return rc;
}

/* Fills ino from a probe result (takes ino->lock). */
static void apply_found(struct bfs_fs *fs, struct bfs_inode *ino, struct found *f,
			const char *key)
{
	pthread_mutex_lock(&ino->lock);
	if (!bfs_is_dirty(ino)) {
		if (f->link_key) {
			free(ino->link_key);
			ino->link_key = f->link_key;
			f->link_key = NULL;
		}
		/* hard links share the number of their content object */
		bfs_ino_assign(ino, f->is_dir && !f->marker ? NULL : &f->obj.meta,
			       ino->link_key ? ino->link_key : key);
		bfs_attr_apply(fs, ino, f->is_dir && !f->marker ? NULL : &f->obj, f->is_dir);
	}
	pthread_mutex_unlock(&ino->lock);
}

int bfs_attr_refresh(struct bfs_fs *fs, struct bfs_inode *ino, bool force)
{
	if (ino == fs->root)
		return 0;
	pthread_mutex_lock(&fs->lock);
	bool unlinked = ino->unlinked;
	pthread_mutex_unlock(&fs->lock);
	if (unlinked)
		return 0; /* no name any more: what we know is all there is */
	pthread_mutex_lock(&ino->lock);
	bool fresh = bfs_is_dirty(ino) || ino->uploading || ino->stage_fd >= 0 ||
		     (!force && ino->attr_expire > bfs_mono_ns());
	bool is_dir = S_ISDIR(ino->st.st_mode);
	pthread_mutex_unlock(&ino->lock);
	if (fresh)
		return 0;
	char *key = bfs_inode_key(fs, ino);
	if (!key)
		return -ENOMEM;
	if (is_dir)
		key[strlen(key) - 1] = '\0';
	struct found f;
	int rc = probe(fs, key, is_dir ? 1 : 0, &f);
	if (rc == 0 && (!f.exists || f.is_dir != is_dir))
		rc = -ENOENT;
	if (rc == 0)
		apply_found(fs, ino, &f, key);
	s3_object_free(&f.obj);
	free(f.link_key);
	free(key);
	return rc;
}

int bfs_attr_lookup(struct bfs_fs *fs, struct bfs_inode *parent, const char *name,
		    struct bfs_inode **out)
{
	*out = NULL;
	if (strlen(name) > BFS_NAME_MAX)
		return -ENAMETOOLONG; /* never listed either (listing.c) */
	if (parent == fs->root && strcmp(name, BFS_INTERNAL_DIR) == 0)
		return -ENOENT; /* bucketfs's own objects are not files */
	struct bfs_inode *ino = bfs_inode_child(fs, parent, name);
	if (ino) {
		int rc = bfs_attr_refresh(fs, ino, false);
		if (rc == 0) {
			*out = ino;
			return 0;
		}
		if (rc != -ENOENT) {
			bfs_inode_unpin(fs, ino);
			return rc;
		}
		/* gone or changed type: forget this one, look again */
		bfs_inode_detach(fs, ino);
		bfs_inode_unpin(fs, ino);
	}

	/* S3 said "no such name" a moment ago, to the kernel's lookup that precedes this call
	 * (a rename's target): once, within NEG_FRESH_NS */
	pthread_mutex_lock(&parent->lock);
	bool just_absent = parent->neg_name && strcmp(parent->neg_name, name) == 0 &&
			   bfs_mono_ns() - parent->neg_at < NEG_FRESH_NS && fs->opts->neg_ttl > 0;
	if (just_absent) {
		free(parent->neg_name);
		parent->neg_name = NULL;
	}
	pthread_mutex_unlock(&parent->lock);
	if (just_absent)
		return -ENOENT;

	/* a fresh listing of the parent answers negative lookups and tells the type; a small
	 * one that expired is cheaper to list again (one LIST) than to probe name by name */
	int hint = -1;
	pthread_mutex_lock(&parent->lock);
	bool relist = parent->listing && parent->listing->expire <= bfs_mono_ns() &&
		      parent->listing->n < 1000;
	pthread_mutex_unlock(&parent->lock);
	if (relist) {
		struct bfs_listing *l;
		if (bfs_listing_fetch(fs, parent, &l) == 0) {
			pthread_mutex_lock(&parent->lock);
			bfs_listing_free(parent->listing);
			parent->listing = l;
			pthread_mutex_unlock(&parent->lock);
		}
	}
	pthread_mutex_lock(&parent->lock);
	int64_t now = bfs_mono_ns();
	if (parent->listing && parent->listing->expire > now) {
		long i = bfs_listing_find(parent->listing, name);
		/* a name missing from the listing: with writeback, missing; with close-to-open S3
		 * is asked by name (one LIST), since another mount may have made it since */
		if (i < 0 && !bfs_sync_changes(fs)) {
			pthread_mutex_unlock(&parent->lock);
			return -ENOENT;
		}
		hint = i < 0 ? PROBE_ABSENT : parent->listing->ents[i].is_dir ? 1 : 0;
	}
	pthread_mutex_unlock(&parent->lock);

	char *key = bfs_child_key(fs, parent, name, false);
	if (!key)
		return -ENOMEM;
	struct found f;
	int rc = probe(fs, key, hint, &f);
	if (rc == 0 && !f.exists && hint != -1 && hint != PROBE_ABSENT) {
		/* the listing was stale: ask without a hint */
		s3_object_free(&f.obj);
		free(f.link_key);
		rc = probe(fs, key, -1, &f);
	}
	if (rc)
		goto out;
	if (!f.exists) {
		rc = -ENOENT;
		pthread_mutex_lock(&parent->lock);
		free(parent->neg_name);
		parent->neg_name = strdup(name);
		parent->neg_at = bfs_mono_ns();
		pthread_mutex_unlock(&parent->lock);
		goto out;
	}
	mode_t type = S_IFREG;
	if (f.is_dir) {
		type = S_IFDIR;
	} else {
		struct stat st;
		bfs_meta_to_stat(&f.obj, false, &fs->defaults, &st);
		type = st.st_mode & S_IFMT;
	}
	ino = bfs_inode_make(fs, parent, name, type);
	if (!ino) {
		rc = -ENOMEM;
		goto out;
	}
	apply_found(fs, ino, &f, key);
	*out = ino;
out:
	s3_object_free(&f.obj);
	free(f.link_key);
	free(key);
	return rc;
}
