/* fs/inode.c — the inode table: nodeids handed to the kernel, the name tree, lookup counts.
 *
 * An inode lives while the kernel holds lookups on it (nlookup) or the process pins it (open
 * handles, queued uploads, running operations). Object keys are not stored: they are built
 * from the name tree, so renaming a directory moves its whole subtree at once. */
#include <errno.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/util.h"

static size_t hash_id(const struct bfs_fs *fs, fuse_ino_t id)
{
	return (size_t)(id * 0x9E3779B97F4A7C15ull) % fs->nbuckets;
}

static size_t hash_nm(const struct bfs_fs *fs, const struct bfs_inode *parent, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ parent->nodeid;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (size_t)(h % fs->nbuckets);
}

ino_t bfs_ino_of_key(const char *key)
{
	uint64_t h = 1469598103934665603ull;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	h &= 0x7fffffffffffffffull; /* stay positive for tools that use signed inode numbers */
	return h < 2 ? h + 2 : h;
}

ino_t bfs_ino_random(void)
{
	uint64_t n;
	if (RAND_bytes((unsigned char *)&n, sizeof(n)) != 1)
		return 0;
	n &= 0x7fffffffffffffffull;
	return n < 2 ? n + 2 : n;
}

/* "NUMBER-KEYHASH", 16 lower-case hex digits each */
static bool parse_hex16(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*out = v;
	return true;
}

ino_t bfs_ino_stored(const struct s3_meta *m, const char *key)
{
	const char *v = m ? s3_meta_get(m, BFS_INO_META) : NULL;
	uint64_t n, kh;
	if (!v || strlen(v) != 33 || v[16] != '-' || !parse_hex16(v, &n) ||
	    !parse_hex16(v + 17, &kh))
		return 0;
	if (n < 2 || n > 0x7fffffffffffffffull || kh != (uint64_t)bfs_ino_of_key(key))
		return 0;
	return (ino_t)n;
}

int bfs_ino_store(struct s3_meta *m, ino_t n, const char *key)
{
	char buf[40];
	snprintf(buf, sizeof(buf), "%016" PRIx64 "-%016" PRIx64, (uint64_t)n,
		 (uint64_t)bfs_ino_of_key(key));
	return s3_meta_set(m, BFS_INO_META, buf);
}

void bfs_ino_assign(struct bfs_inode *ino, const struct s3_meta *m, const char *key)
{
	ino_t n = bfs_ino_stored(m, key);
	ino->ino_stored = n != 0;
	ino->st.st_ino = n ? n : bfs_ino_of_key(key);
}

static struct bfs_inode *inode_alloc(struct bfs_fs *fs)
{
	struct bfs_inode *ino = calloc(1, sizeof(*ino));
	if (!ino)
		return NULL;
	pthread_mutex_init(&ino->lock, NULL);
	pthread_cond_init(&ino->cond, NULL);
	s3_meta_init(&ino->meta);
	ino->stage_fd = -1;
	ino->nodeid = fs->next_nodeid++;
	size_t b = hash_id(fs, ino->nodeid);
	ino->hnext_id = fs->by_id[b];
	fs->by_id[b] = ino;
	fs->ninodes++;
	return ino;
}

void bfs_inode_table_init(struct bfs_fs *fs)
{
	fs->nbuckets = 1 << 16;
	fs->by_id = calloc(fs->nbuckets, sizeof(*fs->by_id));
	fs->by_nm = calloc(fs->nbuckets, sizeof(*fs->by_nm));
	fs->next_nodeid = FUSE_ROOT_ID;
	fs->root = inode_alloc(fs);
	fs->root->nlookup = 1;
	fs->root->name = strdup("");
	fs->root->st.st_mode = S_IFDIR | (0777 & ~fs->defaults.umask);
	fs->root->st.st_uid = fs->defaults.uid;
	fs->root->st.st_gid = fs->defaults.gid;
	fs->root->st.st_nlink = 2;
	fs->root->st.st_ino = FUSE_ROOT_ID;
	/* the bucket root has no object to keep times in: it shows the mount time */
	clock_gettime(CLOCK_REALTIME, &fs->root->st.st_mtim);
	fs->root->st.st_atim = fs->root->st.st_ctim = fs->root->st.st_mtim;
	fs->root->attr_expire = INT64_MAX;
}

static void inode_destroy(struct bfs_inode *ino)
{
	if (ino->stream)
		bfs_stream_detach(ino->stream); /* aborted by the stream pool */
	if (ino->stage_fd >= 0)
		close(ino->stage_fd);
	s3_meta_free(&ino->meta);
	bfs_listing_free(ino->listing);
	free(ino->neg_name);
	free(ino->link_target);
	free(ino->link_key);
	free(ino->remote_key);
	free(ino->name);
	pthread_mutex_destroy(&ino->lock);
	pthread_cond_destroy(&ino->cond);
	free(ino);
}

void bfs_inode_table_free(struct bfs_fs *fs)
{
	for (size_t b = 0; fs->by_id && b < fs->nbuckets; b++) {
		struct bfs_inode *ino = fs->by_id[b];
		while (ino) {
			struct bfs_inode *next = ino->hnext_id;
			inode_destroy(ino);
			ino = next;
		}
	}
	free(fs->by_id);
	free(fs->by_nm);
	fs->by_id = fs->by_nm = NULL;
}

static void nm_unhash(struct bfs_fs *fs, struct bfs_inode *ino)
{
	if (!ino->hashed_nm)
		return;
	struct bfs_inode **pp = &fs->by_nm[hash_nm(fs, ino->parent, ino->name)];
	while (*pp && *pp != ino)
		pp = &(*pp)->hnext_nm;
	if (*pp)
		*pp = ino->hnext_nm;
	ino->hnext_nm = NULL;
	ino->hashed_nm = false;
}

static void nm_hash(struct bfs_fs *fs, struct bfs_inode *ino)
{
	size_t b = hash_nm(fs, ino->parent, ino->name);
	ino->hnext_nm = fs->by_nm[b];
	fs->by_nm[b] = ino;
	ino->hashed_nm = true;
}

static struct bfs_inode *child_locked(struct bfs_fs *fs, struct bfs_inode *parent,
				      const char *name)
{
	for (struct bfs_inode *i = fs->by_nm[hash_nm(fs, parent, name)]; i; i = i->hnext_nm)
		if (i->parent == parent && strcmp(i->name, name) == 0)
			return i;
	return NULL;
}

/* Frees ino if nothing references it any more (fs->lock held). */
static void maybe_free(struct bfs_fs *fs, struct bfs_inode *ino)
{
	while (ino && ino != fs->root && ino->nlookup == 0 && ino->pins == 0) {
		struct bfs_inode *parent = ino->parent;
		nm_unhash(fs, ino);
		struct bfs_inode **pp = &fs->by_id[hash_id(fs, ino->nodeid)];
		while (*pp != ino)
			pp = &(*pp)->hnext_id;
		*pp = ino->hnext_id;
		fs->ninodes--;
		inode_destroy(ino);
		/* the child held a pin on its parent */
		if (!parent)
			break;
		parent->pins--;
		ino = parent;
	}
}

struct bfs_inode *bfs_inode_get(struct bfs_fs *fs, fuse_ino_t nodeid)
{
	pthread_mutex_lock(&fs->lock);
	struct bfs_inode *ino = fs->by_id[hash_id(fs, nodeid)];
	while (ino && ino->nodeid != nodeid)
		ino = ino->hnext_id;
	if (ino)
		ino->pins++;
	pthread_mutex_unlock(&fs->lock);
	return ino;
}

struct bfs_inode *bfs_inode_child(struct bfs_fs *fs, struct bfs_inode *parent, const char *name)
{
	pthread_mutex_lock(&fs->lock);
	struct bfs_inode *ino = child_locked(fs, parent, name);
	if (ino)
		ino->pins++;
	pthread_mutex_unlock(&fs->lock);
	return ino;
}

struct bfs_inode *bfs_inode_make(struct bfs_fs *fs, struct bfs_inode *parent, const char *name,
				 mode_t type)
{
	pthread_mutex_lock(&fs->lock);
	struct bfs_inode *ino = child_locked(fs, parent, name);
	if (ino && (ino->st.st_mode & S_IFMT) != (type & S_IFMT)) {
		/* the object changed type behind our back: a new inode for the new object */
		nm_unhash(fs, ino);
		ino->unlinked = true;
		ino = NULL;
	}
	if (!ino) {
		ino = inode_alloc(fs);
		if (!ino)
			goto out;
		ino->name = strdup(name);
		if (!ino->name) {
			/* leave it unnamed; freed when unpinned */
			ino->unlinked = true;
		} else {
			ino->parent = parent;
			parent->pins++;
			nm_hash(fs, ino);
		}
		ino->st.st_mode = type & S_IFMT;
		ino->st.st_nlink = S_ISDIR(type) ? 2 : 1;
	}
	ino->pins++;
out:
	pthread_mutex_unlock(&fs->lock);
	return ino;
}

struct bfs_inode **bfs_inode_pin_matching(struct bfs_fs *fs,
					  bool (*pick)(const struct bfs_inode *ino), size_t *n)
{
	size_t cap = 0;
	struct bfs_inode **list = NULL;
	*n = 0;
	pthread_mutex_lock(&fs->lock);
	for (size_t b = 0; b < fs->nbuckets; b++) {
		for (struct bfs_inode *i = fs->by_id[b]; i; i = i->hnext_id) {
			if (!pick(i))
				continue;
			if (*n == cap) {
				cap = cap ? cap * 2 : 64;
				struct bfs_inode **nl = realloc(list, cap * sizeof(*nl));
				if (!nl)
					goto out; /* the ones found so far */
				list = nl;
			}
			i->pins++;
			list[(*n)++] = i;
		}
	}
out:
	pthread_mutex_unlock(&fs->lock);
	return list;
}

void bfs_inode_wait_busy(struct bfs_inode *ino)
{
	while (ino->uploading || ino->staging || ino->committing)
		pthread_cond_wait(&ino->cond, &ino->lock);
}

void bfs_inode_pin(struct bfs_fs *fs, struct bfs_inode *ino)
{
	pthread_mutex_lock(&fs->lock);
	ino->pins++;
	pthread_mutex_unlock(&fs->lock);
}

void bfs_inode_unpin(struct bfs_fs *fs, struct bfs_inode *ino)
{
	if (!ino)
		return;
	pthread_mutex_lock(&fs->lock);
	ino->pins--;
	maybe_free(fs, ino);
	pthread_mutex_unlock(&fs->lock);
}

void bfs_inode_lookup_ref(struct bfs_fs *fs, struct bfs_inode *ino, uint64_t n)
{
	pthread_mutex_lock(&fs->lock);
	ino->nlookup += n;
	pthread_mutex_unlock(&fs->lock);
}

void bfs_inode_forget(struct bfs_fs *fs, fuse_ino_t nodeid, uint64_t n)
{
	pthread_mutex_lock(&fs->lock);
	struct bfs_inode *ino = fs->by_id[hash_id(fs, nodeid)];
	while (ino && ino->nodeid != nodeid)
		ino = ino->hnext_id;
	if (ino) {
		ino->nlookup = n > ino->nlookup ? 0 : ino->nlookup - n;
		maybe_free(fs, ino);
	}
	pthread_mutex_unlock(&fs->lock);
}

/* Appends the path of ino (without prefix) to a buffer; fs->lock held. */
static int path_locked(struct bfs_fs *fs, struct bfs_inode *ino, char **buf, size_t *len,
		       size_t *cap)
{
	if (ino == fs->root || !ino->parent)
		return 0;
	int rc = path_locked(fs, ino->parent, buf, len, cap);
	if (rc)
		return rc;
	size_t nl = strlen(ino->name);
	if (*len + nl + 2 > *cap) {
		size_t ncap = (*cap + nl + 2) * 2;
		char *n = realloc(*buf, ncap);
		if (!n)
			return -ENOMEM;
		*buf = n;
		*cap = ncap;
	}
	memcpy(*buf + *len, ino->name, nl);
	*len += nl;
	(*buf)[(*len)++] = '/';
	(*buf)[*len] = '\0';
	return 0;
}

/* Key of ino's parent dir + "name" (+ "/" when dir). fs->lock held. */
static char *key_locked(struct bfs_fs *fs, struct bfs_inode *dir, const char *name, bool is_dir)
{
	size_t cap = 256, len = strlen(fs->opts->prefix);
	char *buf = malloc(cap > len + 1 ? cap : len + 1);
	if (!buf)
		return NULL;
	if (len + 1 > cap)
		cap = len + 1;
	memcpy(buf, fs->opts->prefix, len + 1);
	if (path_locked(fs, dir, &buf, &len, &cap))
		goto fail;
	if (name) {
		size_t nl = strlen(name);
		char *n = realloc(buf, len + nl + 2);
		if (!n)
			goto fail;
		buf = n;
		memcpy(buf + len, name, nl);
		len += nl;
		if (is_dir)
			buf[len++] = '/';
		buf[len] = '\0';
	}
	return buf;
fail:
	free(buf);
	return NULL;
}

char *bfs_inode_key(struct bfs_fs *fs, struct bfs_inode *ino)
{
	pthread_mutex_lock(&fs->lock);
	char *key;
	if (ino == fs->root || !ino->parent)
		key = key_locked(fs, fs->root, NULL, false);
	else
		key = key_locked(fs, ino->parent, ino->name, S_ISDIR(ino->st.st_mode));
	pthread_mutex_unlock(&fs->lock);
	return key;
}

char *bfs_data_key(struct bfs_fs *fs, struct bfs_inode *ino)
{
	return ino->link_key ? strdup(ino->link_key) : bfs_inode_key(fs, ino);
}

char *bfs_child_key(struct bfs_fs *fs, struct bfs_inode *parent, const char *name, bool dir)
{
	pthread_mutex_lock(&fs->lock);
	char *key = key_locked(fs, parent, name, dir);
	pthread_mutex_unlock(&fs->lock);
	return key;
}

int bfs_name_check(struct bfs_fs *fs, struct bfs_inode *dir, const char *name, bool is_dir)
{
	if (strlen(name) > BFS_NAME_MAX)
		return -ENAMETOOLONG;
	char *key = bfs_child_key(fs, dir, name, is_dir);
	if (!key)
		return -ENOMEM;
	size_t len = strlen(key);
	free(key);
	return len > S3_MAX_KEY ? -ENAMETOOLONG : 0;
}

static void detach_locked(struct bfs_fs *fs, struct bfs_inode *ino)
{
	struct bfs_inode *parent = ino->parent;
	nm_unhash(fs, ino);
	ino->unlinked = true;
	ino->parent = NULL;
	if (parent) {
		parent->pins--;
		maybe_free(fs, parent);
	}
}

void bfs_inode_move(struct bfs_fs *fs, struct bfs_inode *ino, struct bfs_inode *newparent,
		    const char *newname)
{
	char *nn = strdup(newname);
	if (!nn)
		return; /* keeps the old name in the table; the next lookup fixes it */
	pthread_mutex_lock(&fs->lock);
	struct bfs_inode *victim = child_locked(fs, newparent, newname);
	if (victim && victim != ino)
		detach_locked(fs, victim);
	struct bfs_inode *oldparent = ino->parent;
	nm_unhash(fs, ino);
	free(ino->name);
	ino->name = nn;
	ino->parent = newparent;
	newparent->pins++;
	nm_hash(fs, ino);
	if (oldparent) {
		oldparent->pins--;
		maybe_free(fs, oldparent);
	}
	pthread_mutex_unlock(&fs->lock);
}

void bfs_inode_detach(struct bfs_fs *fs, struct bfs_inode *ino)
{
	pthread_mutex_lock(&fs->lock);
	if (!ino->unlinked)
		detach_locked(fs, ino);
	pthread_mutex_unlock(&fs->lock);
}
