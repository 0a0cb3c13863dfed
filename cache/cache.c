/* cache/cache.c — opening and closing a cache directory, the process lock, the LMDB
 * environment, counters. The parts live in blocks.c, index.c, evict.c, journal.c, meta.c.
 *
 * <dir>/lock      flock'd by the process holding the cache
 * <dir>/index/    LMDB environment, named dbs "misc", "blocks", "journal", "meta"
 * <dir>/blocks/   block files, 256 shard dirs
 * <dir>/dirty/    journal data files */
#include "cache/cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

#define DEFAULT_BLOCK_SIZE (1u << 20)
#define MAX_BLOCK_SIZE (64u << 20)

int cache_mdb_errno(int rc)
{
	if (rc == 0)
		return 0;
	if (rc == MDB_MAP_FULL)
		return -ENOSPC;
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc > 0)
		return -rc; /* LMDB passes system errors through as errno values */
	return -EIO;
}

int64_t cache_now_real(void)
{
	return (int64_t)time(NULL);
}

bool cache_expired(int64_t now, int64_t validated_s, unsigned ttl_sec)
{
	return ttl_sec > 0 && now >= validated_s + (int64_t)ttl_sec;
}

int cache_walk_begin(struct cache *c, unsigned txn_flags, struct cache_walk *w)
{
	memset(w, 0, sizeof(*w));
	return cache_mdb_errno(mdb_txn_begin(c->env, NULL, txn_flags, &w->txn));
}

int cache_walk_open(struct cache_walk *w, MDB_dbi dbi, const void *prefix, size_t plen)
{
	w->prefix = prefix;
	w->plen = plen;
	w->started = false;
	return cache_mdb_errno(mdb_cursor_open(w->txn, dbi, &w->cur));
}

bool cache_walk_next(struct cache_walk *w, MDB_val *k, MDB_val *v)
{
	MDB_cursor_op op = MDB_NEXT;

	if (!w->started) {
		w->started = true;
		op = MDB_FIRST;
		if (w->prefix) {
			k->mv_size = w->plen;
			k->mv_data = (void *)w->prefix;
			op = MDB_SET_RANGE;
		}
	}
	w->mrc = mdb_cursor_get(w->cur, k, v, op);
	if (w->mrc == 0 && w->prefix &&
	    (k->mv_size < w->plen || memcmp(k->mv_data, w->prefix, w->plen) != 0))
		w->mrc = MDB_NOTFOUND; /* past the keys with the prefix */
	return w->mrc == 0;
}

int cache_walk_commit(struct cache_walk *w)
{
	int rc;

	if (w->cur)
		mdb_cursor_close(w->cur);
	w->cur = NULL;
	rc = cache_mdb_errno(mdb_txn_commit(w->txn));
	w->txn = NULL;
	return rc;
}

void cache_walk_end(struct cache_walk *w)
{
	if (w->cur)
		mdb_cursor_close(w->cur);
	if (w->txn)
		mdb_txn_abort(w->txn);
	w->cur = NULL;
	w->txn = NULL;
}

_Static_assert(CACHE_ETAGPART_MAX >= 1 + 2 * SHA256_DIGEST_LENGTH, "hashed part must fit");

size_t cache_keypart(unsigned char *out, const char *s, size_t max)
{
	size_t n = strlen(s);
	unsigned char md[SHA256_DIGEST_LENGTH];
	char hex[2 * SHA256_DIGEST_LENGTH + 1];

	if (n <= max) {
		memcpy(out, s, n);
		return n;
	}
	SHA256((const unsigned char *)s, n, md);
	bfs_hex(md, sizeof(md), hex);
	out[0] = 0xff;
	memcpy(out + 1, hex, 2 * SHA256_DIGEST_LENGTH);
	return 1 + 2 * SHA256_DIGEST_LENGTH;
}

static int mkdir_p(const char *dir)
{
	char path[4096];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(path))
		return -ENAMETOOLONG;
	memcpy(path, dir, n + 1);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int subdir(const struct cache *c, const char *name)
{
	char path[4096];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", c->dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* The cache holds file data and the journal, so it must be its user's own: a directory
 * owned by another user is refused with -EPERM (they could read or replace what it holds;
 * root too, since /tmp/x may be anybody's), and one open to group or others is closed to
 * 0700. A read-only open (a tool looking at a cache) only needs it to be a directory. */
static int check_private(const struct cache *c)
{
	struct stat st;
	if (stat(c->dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (c->rdonly)
		return 0;
	if (st.st_uid != geteuid())
		return -EPERM;
	if ((st.st_mode & 077) && chmod(c->dir, 0700) < 0)
		return -errno;
	return 0;
}

/* Takes the process lock: flock is per open file description, so a second cache_open of the
 * same dir, in this process or another, gets -EBUSY. */
static int lock_dir(struct cache *c)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/lock", c->dir);
	c->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (c->lock_fd < 0)
		return -errno;
	if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	return 0;
}

/* Opens the LMDB environment and its databases; creates them unless read-only. A tool open
 * takes the block size stored in db "misc" (if any) instead of the configured one. */
static int env_open(struct cache *c)
{
	char path[4096];
	MDB_txn *txn = NULL;
	MDB_val k = { sizeof("format") - 1, "format" }, v;
	MDB_val bk = { sizeof("block_size") - 1, "block_size" };
	uint32_t fmt = CACHE_FORMAT;
	unsigned dbflags = c->rdonly ? 0 : MDB_CREATE;
	int rc, dead;

	snprintf(path, sizeof(path), "%s/index", c->dir);
	if ((rc = mdb_env_create(&c->env)) || (rc = mdb_env_set_maxdbs(c->env, 4)) ||
	    (rc = mdb_env_set_mapsize(c->env, sizeof(size_t) >= 8 ? (size_t)4 << 30 : 256u << 20)))
		goto out;
	/* NOTLS: read transactions are not tied to the FUSE worker thread that began them. */
	if ((rc = mdb_env_open(c->env, path, MDB_NOTLS | (c->rdonly ? MDB_RDONLY : 0), 0600)))
		goto out;
	if (!c->rdonly)
		mdb_reader_check(c->env, &dead); /* reader slots left by a crashed process */
	if ((rc = mdb_txn_begin(c->env, NULL, c->rdonly ? MDB_RDONLY : 0, &txn)) ||
	    (rc = mdb_dbi_open(txn, "misc", dbflags, &c->db_misc)) ||
	    (rc = mdb_dbi_open(txn, "blocks", dbflags, &c->db_blocks)) ||
	    (rc = mdb_dbi_open(txn, "journal", dbflags, &c->db_journal)) ||
	    (rc = mdb_dbi_open(txn, "meta", dbflags, &c->db_meta)))
		goto out;
	rc = mdb_get(txn, c->db_misc, &k, &v);
	if (rc == MDB_NOTFOUND && !c->rdonly) {
		v.mv_size = sizeof(fmt);
		v.mv_data = &fmt;
		rc = mdb_put(txn, c->db_misc, &k, &v, 0);
	} else if (rc == 0 && (v.mv_size != sizeof(fmt) || memcmp(v.mv_data, &fmt, sizeof(fmt)))) {
		bfs_log(BFS_LOG_ERR, "cache: %s has an unknown format", c->dir);
		rc = EPROTO;
	}
	if (rc)
		goto out;
	if ((c->flags & CACHE_OPEN_TOOL) && mdb_get(txn, c->db_misc, &bk, &v) == 0 &&
	    v.mv_size == sizeof(uint64_t))
		memcpy(&c->block_size, v.mv_data, sizeof(uint64_t));
	rc = mdb_txn_commit(txn); /* also for a read-only txn: keeps the dbi handles open */
	txn = NULL;
out:
	if (txn)
		mdb_txn_abort(txn);
	if (rc)
		bfs_log(BFS_LOG_ERR, "cache: opening index in %s: %s", c->dir, mdb_strerror(rc));
	return cache_mdb_errno(rc);
}

int cache_open(const struct cache_config *cfg, struct cache **out)
{
	struct cache *c;
	struct statvfs vfs;
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (!cfg || !cfg->dir || !cfg->dir[0] || cfg->block_size > MAX_BLOCK_SIZE)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->lock_fd = -1;
	c->now = cache_now_real;
	c->flags = cfg->flags;
	if (c->flags & CACHE_OPEN_RDONLY)
		c->flags |= CACHE_OPEN_TOOL;
	c->rdonly = (c->flags & CACHE_OPEN_RDONLY) != 0;
	c->opened_s = (int64_t)time(NULL);
	c->block_size = cfg->block_size ? cfg->block_size : DEFAULT_BLOCK_SIZE;
	c->ttl_sec = cfg->ttl_sec;
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->evict_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&c->evict_done_cv, NULL);
	c->dir = strdup(cfg->dir);
	if (!c->dir) {
		rc = -ENOMEM;
		goto out;
	}
	if (c->flags & CACHE_OPEN_TOOL) {
		/* a tool never creates a cache, nor a lock file in a directory that is not one */
		char path[4200];
		struct stat st;
		snprintf(path, sizeof(path), "%s/index/data.mdb", c->dir);
		if (stat(path, &st) < 0) {
			rc = -errno;
			goto out;
		}
	}
	for (size_t i = 0; i < CACHE_MEM_SLOTS_MAX; i++)
		c->mem[i].fid = UINT64_MAX;
	if (c->rdonly) {
		if ((rc = env_open(c)) || (rc = cache_index_load(c)))
			goto out;
		c->size_cap = UINT64_MAX;
		*out = c;
		goto out;
	}
	if (!(c->flags & CACHE_OPEN_TOOL) && (rc = mkdir_p(c->dir)))
		goto out;
	if ((rc = check_private(c)) || (rc = lock_dir(c)) || (rc = subdir(c, "index")) || (rc = subdir(c, "blocks")) ||
	    (rc = subdir(c, "dirty")))
		goto out;
	c->size_cap = cfg->size_cap;
	if (c->flags & CACHE_OPEN_TOOL) {
		c->size_cap = UINT64_MAX; /* a tool never evicts on its own */
	} else if (!c->size_cap) {
		if (statvfs(c->dir, &vfs) < 0) {
			rc = -errno;
			goto out;
		}
		c->size_cap = (uint64_t)vfs.f_blocks * vfs.f_frsize / 10;
	}
	if ((rc = env_open(c)) || (rc = cache_journal_recover(c)) || (rc = cache_index_load(c)))
		goto out;
	cache_mem_init(c);
	if (!(c->flags & CACHE_OPEN_TOOL)) {
		cache_stats_file_write(c, true);
		if ((rc = cache_evict_start(c)))
			goto out;
	}
	*out = c;
out:
	if (rc < 0) {
		/* busy and someone else's (check_private) are the caller's to explain */
		if (rc != -EBUSY && rc != -EPERM && !((c->flags & CACHE_OPEN_TOOL) && rc == -ENOENT))
			bfs_log(BFS_LOG_ERR, "cache: cannot open %s: %s", cfg->dir, strerror(-rc));
		cache_close(c);
	}
	return rc;
}

void cache_close(struct cache *c)
{
	if (!c)
		return;
	cache_evict_stop(c);
	if (c->env) {
		if (!c->rdonly)
			cache_touch_flush(c);
		if (c->lock_fd >= 0)
			cache_stats_file_write(c, true);
		mdb_env_close(c->env);
	}
	cache_inflight_free_all(c);
	cache_mem_free(c);
	if (c->lock_fd >= 0)
		close(c->lock_fd); /* releases the flock */
	pthread_cond_destroy(&c->evict_done_cv);
	pthread_cond_destroy(&c->evict_cv);
	pthread_mutex_destroy(&c->mu);
	free(c->touches);
	free(c->dir);
	free(c);
}

void cache_stats_get(struct cache *c, struct cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&c->mu);
	out->blocks = c->blocks;
	out->bytes = c->bytes;
	out->hits = c->hits;
	out->misses = c->misses;
	pthread_mutex_unlock(&c->mu);
	out->block_size = c->block_size;
	cache_journal_usage(c, &out->dirty_entries, &out->dirty_bytes);
	cache_meta_count(c, &out->meta_entries);
}
