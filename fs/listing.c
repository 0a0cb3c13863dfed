/* fs/listing.c — directory listings: one ListObjectsV2 walk per directory, cached for
 * stat_ttl, kept up to date by local creates and removes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "util/util.h"

void bfs_listing_free(struct bfs_listing *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->ents[i].name);
	free(l->ents);
	free(l);
}

/* Binary search: index of name, or -(insertion point)-1. */
static long search(const struct bfs_listing *l, const char *name)
{
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(l->ents[mid].name, name);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(long)lo - 1;
}

long bfs_listing_find(const struct bfs_listing *l, const char *name)
{
	long i = search(l, name);
	return i >= 0 ? i : -1;
}

int bfs_listing_add(struct bfs_listing *l, const char *name, bool is_dir)
{
	long i = search(l, name);
	if (i >= 0) {
		l->ents[i].is_dir = is_dir;
		l->ents[i].listed = false; /* changed locally: what LIST said no longer holds */
		return 0;
	}
	size_t at = (size_t)(-i - 1);
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		struct bfs_dirent *n = realloc(l->ents, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		l->ents = n;
		l->cap = ncap;
	}
	char *nm = strdup(name);
	if (!nm)
		return -ENOMEM;
	memmove(&l->ents[at + 1], &l->ents[at], (l->n - at) * sizeof(*l->ents));
	memset(&l->ents[at], 0, sizeof(l->ents[at]));
	l->ents[at].name = nm;
	l->ents[at].is_dir = is_dir;
	l->n++;
	return 0;
}

void bfs_listing_remove(struct bfs_listing *l, const char *name)
{
	long i = search(l, name);
	if (i < 0)
		return;
	free(l->ents[i].name);
	memmove(&l->ents[i], &l->ents[i + 1], (l->n - (size_t)i - 1) * sizeof(*l->ents));
	l->n--;
}

struct bfs_listing *bfs_listing_copy(const struct bfs_listing *l)
{
	struct bfs_listing *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->expire = l->expire;
	if (l->n) {
		c->ents = calloc(l->n, sizeof(*c->ents));
		if (!c->ents)
			goto fail;
		c->cap = l->n;
		for (size_t i = 0; i < l->n; i++) {
			c->ents[i] = l->ents[i];
			c->ents[i].name = strdup(l->ents[i].name);
			c->n++;
			if (!c->ents[i].name)
				goto fail;
		}
	}
	return c;
fail:
	bfs_listing_free(c);
	return NULL;
}

/* A name as S3 lists it → directory entry (skips the marker and names a file system can't
 * have). s3fs's legacy "name_$folder$" markers are directories. */
static int add_name(struct bfs_listing *l, const char *rel, size_t len, bool is_dir,
		    const struct s3_list_entry *obj)
{
	static const char legacy[] = "_$folder$";
	size_t ll = sizeof(legacy) - 1;
	if (!is_dir && len > ll && memcmp(rel + len - ll, legacy, ll) == 0) {
		len -= ll;
		is_dir = true;
	}
	if (len == 0 || len > BFS_NAME_MAX || memchr(rel, '/', len))
		return 0;
	if ((len == 1 && rel[0] == '.') || (len == 2 && rel[0] == '.' && rel[1] == '.'))
		return 0;
	char *name = strndup(rel, len);
	if (!name)
		return -ENOMEM;
	int rc = 0;
	long i = search(l, name);
	if (i < 0) {
		rc = bfs_listing_add(l, name, is_dir);
		if (rc == 0 && obj && !is_dir) {
			struct bfs_dirent *d = &l->ents[search(l, name)];
			d->listed = true;
			d->size = obj->size;
			d->last_modified = obj->last_modified;
			snprintf(d->etag, sizeof(d->etag), "%s", obj->etag);
		}
	}
	/* a name both a file and a prefix shows as the file (its content is reachable) */
	free(name);
	return rc;
}

int bfs_listing_fetch(struct bfs_fs *fs, struct bfs_inode *dir, struct bfs_listing **out)
{
	*out = NULL;
	char *dkey = bfs_inode_key(fs, dir);
	if (!dkey)
		return -ENOMEM;
	size_t dl = strlen(dkey);
	struct bfs_listing *l = calloc(1, sizeof(*l));
	char *token = NULL;
	int rc = l ? 0 : -ENOMEM;
	while (rc == 0) {
		struct s3_list_page page;
		/* start after the directory's own marker: 1000 names per page, not 999 */
		rc = s3_list_after(fs->s3, dl ? dkey : NULL, "/", token, dl ? dkey : NULL, 1000,
				   &page);
		if (rc)
			break;
		for (size_t i = 0; i < page.nobjects && rc == 0; i++) {
			const char *k = page.objects[i].key;
			if (strncmp(k, dkey, dl) == 0)
				rc = add_name(l, k + dl, strlen(k + dl), false, &page.objects[i]);
		}
		for (size_t i = 0; i < page.nprefixes && rc == 0; i++) {
			const char *p = page.prefixes[i];
			size_t pl = strlen(p);
			if (dir == fs->root && strcmp(p + dl, BFS_INTERNAL_DIR "/") == 0)
				continue; /* bucketfs's own objects are not files */
			if (strncmp(p, dkey, dl) == 0 && pl > dl + 1)
				rc = add_name(l, p + dl, pl - dl - 1, true, NULL);
		}
		free(token);
		token = page.next_token ? strdup(page.next_token) : NULL;
		bool more = page.next_token != NULL;
		s3_list_page_free(&page);
		if (!more)
			break;
		if (!token)
			rc = -ENOMEM;
	}
	free(token);
	free(dkey);
	if (rc)
		goto fail;

	/* local children not in S3 yet (pending uploads, new directories) are listed too */
	pthread_mutex_lock(&fs->lock);
	for (size_t b = 0; b < fs->nbuckets && rc == 0; b++) {
		for (struct bfs_inode *i = fs->by_nm[b]; i && rc == 0; i = i->hnext_nm) {
			if (i->parent != dir || i->unlinked)
				continue;
			/* reading i's dirty state without its lock is a hint only: a stale answer
			 * just lists a name that S3 lists anyway */
			if (__atomic_load_n(&i->stage_fd, __ATOMIC_RELAXED) >= 0 ||
			    __atomic_load_n(&i->uploading, __ATOMIC_RELAXED))
				rc = bfs_listing_add(l, i->name, S_ISDIR(i->st.st_mode));
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (rc)
		goto fail;
	l->expire = bfs_mono_ns() + fs->stat_ttl_ns;
	*out = l;
	return 0;
fail:
	bfs_listing_free(l);
	return rc;
}

void bfs_listing_note(struct bfs_fs *fs, struct bfs_inode *dir, const char *name, bool is_dir,
		      bool present)
{
	pthread_mutex_lock(&dir->lock);
	if (dir->neg_name && strcmp(dir->neg_name, name) == 0) {
		free(dir->neg_name);
		dir->neg_name = NULL;
	}
	if (dir->listing) {
		if (present) {
			if (bfs_listing_add(dir->listing, name, is_dir))
				dir->listing->expire = 0; /* can't trust it any more */
		} else {
			bfs_listing_remove(dir->listing, name);
		}
	}
	/* POSIX: an entry made or removed changes the directory's mtime and ctime */
	clock_gettime(CLOCK_REALTIME, &dir->touched);
	dir->st.st_mtim = dir->st.st_ctim = dir->touched;
	pthread_mutex_unlock(&dir->lock);
	bfs_dir_times_note(fs, dir);
}
