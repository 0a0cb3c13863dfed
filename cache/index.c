/* cache/index.c — the block index (db "blocks") and the read path.
 *
 * Index key: keypart '\0' etagpart '\0' block number (8 bytes big-endian), where keypart and
 * etagpart are the object key and ETag (hashed if long, see cache_keypart). All blocks of a
 * key share the prefix "keypart\0", all blocks of a version "keypart\0etagpart\0", and a
 * version's blocks sort by number. Value: struct cache_blkrec.
 *
 * Reads take short LMDB read transactions. Writes (store, drop, touch flush, revalidation)
 * are short write transactions; c->mu is never held across one, nor across a fetch. */
#include "cache/cache_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"

/* An index key being built: the object version prefix, then the block number. */
struct bkey {
	unsigned char b[CACHE_BKEY_MAX];
	size_t key_len; /* bytes of "keypart\0" */
	size_t ver_len; /* bytes of "keypart\0etagpart\0" */
	size_t len;     /* ver_len + 8 once a block number is set */
};

/* A fetch (or a revalidation) in progress; readers of the same block share it. */
struct cache_inflight {
	struct cache_inflight *next;   /* in c->inflight while !done; protected by c->mu */
	unsigned char key[CACHE_BKEY_MAX]; /* block key, or version prefix for a revalidation */
	size_t klen;
	bool reval;
	unsigned refs;                 /* leader + waiters; the last put frees; c->mu */
	bool done;                     /* c->mu */
	ssize_t rc;                    /* bytes in buf, or -errno; immutable once done */
	void *buf;                     /* owned; written by the leader only, read once done */
	pthread_cond_t cv;             /* broadcast when done; waited on with c->mu */
};

/* A hit whose last-used time is due to be written (see CACHE_TOUCH_GRAIN_S). */
struct cache_touch {
	unsigned char key[CACHE_BKEY_MAX];
	size_t klen;
	uint64_t fid;
	int64_t used_s;
};

static void bkey_version(struct bkey *k, const char *key, const char *etag)
{
	size_t n = cache_keypart(k->b, key, CACHE_KEYPART_MAX);

	k->b[n++] = '\0';
	k->key_len = n;
	n += cache_keypart(k->b + n, etag, CACHE_ETAGPART_MAX);
	k->b[n++] = '\0';
	k->ver_len = k->len = n;
}

static void bkey_block(struct bkey *k, uint64_t blk)
{
	for (int i = 7; i >= 0; i--, blk >>= 8)
		k->b[k->ver_len + (size_t)i] = (unsigned char)blk;
	k->len = k->ver_len + 8;
}

int cache_blkrec_decode(const MDB_val *v, struct cache_blkrec *r)
{
	if (v->mv_size != sizeof(*r))
		return -EBADMSG;
	memcpy(r, v->mv_data, sizeof(*r));
	return r->version == CACHE_FORMAT ? 0 : -EBADMSG;
}

/* ---- counters ---- */

static void account(struct cache *c, int64_t dblocks, int64_t dbytes)
{
	pthread_mutex_lock(&c->mu);
	c->blocks += (uint64_t)dblocks;
	c->bytes += (uint64_t)dbytes;
	pthread_mutex_unlock(&c->mu);
}

/* ---- index operations ---- */

/* 0 and *r if the index has the block, -ENOENT if not, -EBADMSG if the record is bad. */
static int index_get(struct cache *c, const unsigned char *key, size_t klen,
		     struct cache_blkrec *r)
{
	MDB_txn *txn;
	MDB_val k = { klen, (void *)key }, v;
	int rc;

	if ((rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn)))
		return cache_mdb_errno(rc);
	rc = mdb_get(txn, c->db_blocks, &k, &v);
	rc = rc ? cache_mdb_errno(rc) : cache_blkrec_decode(&v, r);
	mdb_txn_abort(txn);
	return rc;
}

/* Deletes the record of key if it still points at block file fid (UINT64_MAX: whatever it
 * points at), then the file. A record replaced meanwhile by a newer block is left alone. */
static void index_drop(struct cache *c, const unsigned char *key, size_t klen, uint64_t fid)
{
	MDB_txn *txn;
	MDB_val k = { klen, (void *)key }, v;
	struct cache_blkrec r;
	bool bad = false;
	int rc;

	if ((rc = mdb_txn_begin(c->env, NULL, 0, &txn)))
		goto out;
	rc = mdb_get(txn, c->db_blocks, &k, &v);
	if (rc == 0 && cache_blkrec_decode(&v, &r) < 0)
		bad = true;
	if (rc || (!bad && fid != UINT64_MAX && r.fid != fid)) {
		mdb_txn_abort(txn);
		return;
	}
	if ((rc = mdb_del(txn, c->db_blocks, &k, NULL))) {
		mdb_txn_abort(txn);
		goto out;
	}
	if ((rc = mdb_txn_commit(txn)))
		goto out;
	if (!bad) {
		cache_blk_unlink(c, r.fid);
		account(c, -1, -(int64_t)r.len);
	}
	return;
out:
	bfs_log(BFS_LOG_WARN, "cache: cannot drop block record: %s", mdb_strerror(rc));
}

void cache_index_drop(struct cache *c, const unsigned char *key, size_t klen, uint64_t fid)
{
	if (!c->rdonly)
		index_drop(c, key, klen, fid);
}

/* Drops every record whose key starts with prefix, and their files. */
static int index_drop_prefix(struct cache *c, const unsigned char *prefix, size_t plen)
{
	struct cache_walk w;
	MDB_val k, v;
	struct cache_blkrec r;
	uint64_t *fids = NULL, bytes = 0;
	size_t n = 0, cap = 0;
	int rc;

	if ((rc = cache_walk_begin(c, 0, &w)) ||
	    (rc = cache_walk_open(&w, c->db_blocks, prefix, plen)))
		goto out;
	while (cache_walk_next(&w, &k, &v)) {
		if (cache_blkrec_decode(&v, &r) == 0) {
			if (n == cap) {
				uint64_t *nf = realloc(fids, (cap = cap ? 2 * cap : 16) * sizeof(*fids));
				if (!nf) {
					rc = -ENOMEM;
					goto out;
				}
				fids = nf;
			}
			fids[n++] = r.fid;
			bytes += r.len;
		}
		if ((rc = cache_mdb_errno(mdb_cursor_del(w.cur, 0))))
			goto out;
	}
	if (w.mrc != MDB_NOTFOUND && (rc = cache_mdb_errno(w.mrc)))
		goto out;
	if ((rc = cache_walk_commit(&w)))
		goto out;
	for (size_t i = 0; i < n; i++)
		cache_blk_unlink(c, fids[i]);
	account(c, -(int64_t)n, -(int64_t)bytes);
out:
	cache_walk_end(&w);
	free(fids);
	return rc;
}

/* Marks every block of a version as validated now. */
static int index_revalidated(struct cache *c, const unsigned char *prefix, size_t plen)
{
	struct cache_walk w;
	MDB_val k, v;
	struct cache_blkrec r;
	int64_t now = c->now();
	int rc;

	if ((rc = cache_walk_begin(c, 0, &w)) ||
	    (rc = cache_walk_open(&w, c->db_blocks, prefix, plen)))
		goto out;
	while (cache_walk_next(&w, &k, &v)) {
		if (cache_blkrec_decode(&v, &r) < 0)
			continue;
		r.validated_s = now;
		v.mv_size = sizeof(r);
		v.mv_data = &r;
		if ((rc = cache_mdb_errno(mdb_cursor_put(w.cur, &k, &v, MDB_CURRENT))))
			goto out;
	}
	rc = cache_walk_commit(&w);
out:
	cache_walk_end(&w);
	return rc;
}

/* One block record to write: block blk of a version is block file fid. */
struct blkput {
	uint64_t blk, fid;
	uint32_t len, crc;
};

/* Records n blocks of bk's version (n at most CACHE_RUN_MAX) in one transaction: one commit
 * for a prefetched run, not one per block. Replaces (and deletes the files of) older records
 * of the same blocks. -ENOSPC if the index is full. */
static int index_put(struct cache *c, struct bkey *bk, const struct blkput *p, unsigned n)
{
	MDB_txn *txn = NULL;
	MDB_val k, v;
	int64_t now = c->now();
	struct cache_blkrec r = { .version = CACHE_FORMAT, .validated_s = now, .used_s = now },
			    old[CACHE_RUN_MAX];
	bool had_old[CACHE_RUN_MAX];
	struct timespec ts;
	int rc;

	clock_gettime(CLOCK_REALTIME, &ts);
	r.fetched_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	if ((rc = cache_mdb_errno(mdb_txn_begin(c->env, NULL, 0, &txn))))
		goto out;
	for (unsigned i = 0; i < n; i++) {
		bkey_block(bk, p[i].blk);
		k = (MDB_val){ bk->len, bk->b };
		had_old[i] = mdb_get(txn, c->db_blocks, &k, &v) == 0 &&
			     cache_blkrec_decode(&v, &old[i]) == 0;
		r.len = p[i].len;
		r.crc = p[i].crc;
		r.fid = p[i].fid;
		v.mv_size = sizeof(r);
		v.mv_data = &r;
		if ((rc = cache_mdb_errno(mdb_put(txn, c->db_blocks, &k, &v, 0))))
			goto out;
	}
	rc = cache_mdb_errno(mdb_txn_commit(txn));
	txn = NULL;
	if (rc)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		if (had_old[i]) {
			cache_blk_unlink(c, old[i].fid);
			account(c, 0, (int64_t)p[i].len - (int64_t)old[i].len);
		} else {
			account(c, 1, p[i].len);
		}
	}
out:
	if (txn)
		mdb_txn_abort(txn);
	return rc;
}

/* ---- last-used times ---- */

static void touch(struct cache *c, const struct bkey *bk, const struct cache_blkrec *r)
{
	int64_t now = c->now();
	bool flush = false;

	if (now - r->used_s < CACHE_TOUCH_GRAIN_S)
		return;
	pthread_mutex_lock(&c->mu);
	if (c->ntouch == c->touch_cap) {
		size_t cap = c->touch_cap ? 2 * c->touch_cap : 64;
		struct cache_touch *nt = realloc(c->touches, cap * sizeof(*nt));
		if (!nt)
			goto out; /* a lost touch only makes LRU less exact */
		c->touches = nt;
		c->touch_cap = cap;
	}
	memcpy(c->touches[c->ntouch].key, bk->b, bk->len);
	c->touches[c->ntouch].klen = bk->len;
	c->touches[c->ntouch].fid = r->fid;
	c->touches[c->ntouch].used_s = now;
	flush = ++c->ntouch >= CACHE_TOUCH_BATCH;
out:
	pthread_mutex_unlock(&c->mu);
	if (flush)
		cache_touch_flush(c);
}

/* Writes the pending last-used times in one transaction. */
int cache_touch_flush(struct cache *c)
{
	struct cache_touch *t;
	size_t n;
	MDB_txn *txn = NULL;
	int rc;

	if (c->rdonly)
		return 0;
	pthread_mutex_lock(&c->mu);
	t = c->touches;
	n = c->ntouch;
	c->touches = NULL;
	c->ntouch = c->touch_cap = 0;
	pthread_mutex_unlock(&c->mu);
	if (n == 0) {
		free(t);
		return 0;
	}
	if ((rc = cache_mdb_errno(mdb_txn_begin(c->env, NULL, 0, &txn))))
		goto out;
	for (size_t i = 0; i < n; i++) {
		MDB_val k = { t[i].klen, t[i].key }, v;
		struct cache_blkrec r;

		if (mdb_get(txn, c->db_blocks, &k, &v) || cache_blkrec_decode(&v, &r) ||
		    r.fid != t[i].fid || r.used_s >= t[i].used_s)
			continue;
		r.used_s = t[i].used_s;
		v.mv_size = sizeof(r);
		v.mv_data = &r;
		if ((rc = cache_mdb_errno(mdb_put(txn, c->db_blocks, &k, &v, 0))))
			goto out;
	}
	rc = cache_mdb_errno(mdb_txn_commit(txn));
	txn = NULL;
out:
	if (txn)
		mdb_txn_abort(txn);
	if (rc)
		bfs_log(BFS_LOG_WARN, "cache: cannot record last-used times: %s", strerror(-rc));
	free(t);
	return rc;
}

/* ---- in-flight sharing ---- */

/* Joins the fetch of key, or starts one. Returns it with a reference held; *leader says
 * whether the caller must do the work (and call inflight_finish). A waiter returns only once
 * the leader has finished. NULL on ENOMEM. */
/* The fetch of key in flight, or NULL (c->mu held). */
static struct cache_inflight *inflight_find(struct cache *c, const void *key, size_t klen,
					    bool reval)
{
	struct cache_inflight *f;

	for (f = c->inflight; f; f = f->next)
		if (f->reval == reval && f->klen == klen && memcmp(f->key, key, klen) == 0)
			break;
	return f;
}

/* A new in-flight record for key, listed, with the caller's reference (c->mu held). */
static struct cache_inflight *inflight_new(struct cache *c, const void *key, size_t klen,
					   bool reval)
{
	struct cache_inflight *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	memcpy(f->key, key, klen);
	f->klen = klen;
	f->reval = reval;
	f->refs = 1;
	pthread_cond_init(&f->cv, NULL);
	f->next = c->inflight;
	c->inflight = f;
	return f;
}

static struct cache_inflight *inflight_join(struct cache *c, const void *key, size_t klen,
					    bool reval, bool *leader)
{
	struct cache_inflight *f;

	pthread_mutex_lock(&c->mu);
	f = inflight_find(c, key, klen, reval);
	if (f) {
		f->refs++;
		while (!f->done)
			pthread_cond_wait(&f->cv, &c->mu);
		*leader = false;
	} else {
		f = inflight_new(c, key, klen, reval);
		*leader = true;
	}
	pthread_mutex_unlock(&c->mu);
	return f;
}

/* Starts the fetch of key unless one is in flight (then NULL, without waiting for it). */
static struct cache_inflight *inflight_lead(struct cache *c, const void *key, size_t klen)
{
	struct cache_inflight *f;

	pthread_mutex_lock(&c->mu);
	f = inflight_find(c, key, klen, false) ? NULL : inflight_new(c, key, klen, false);
	pthread_mutex_unlock(&c->mu);
	return f;
}

/* Takes f off the in-flight list: nobody joins it any more (c->mu held). */
static void inflight_unlist(struct cache *c, struct cache_inflight *f)
{
	for (struct cache_inflight **p = &c->inflight; *p; p = &(*p)->next) {
		if (*p == f) {
			*p = f->next;
			break;
		}
	}
	f->next = NULL;
}

/* Publishes f's result and wakes its waiters (c->mu held). */
static void inflight_done(struct cache_inflight *f, ssize_t rc)
{
	f->rc = rc;
	f->done = true;
	pthread_cond_broadcast(&f->cv);
}

static void inflight_finish(struct cache *c, struct cache_inflight *f, ssize_t rc)
{
	pthread_mutex_lock(&c->mu);
	inflight_unlist(c, f);
	inflight_done(f, rc);
	pthread_mutex_unlock(&c->mu);
}

/* Finishes a prefetched block: data (rc bytes, rc > 0) is copied for the readers waiting on
 * f only if there are any. The record leaves the list first, so nobody joins while we copy
 * (the block is already in the index). */
static void inflight_finish_copy(struct cache *c, struct cache_inflight *f, ssize_t rc,
				 const void *data)
{
	bool waiters;

	pthread_mutex_lock(&c->mu);
	inflight_unlist(c, f);
	waiters = f->refs > 1;
	pthread_mutex_unlock(&c->mu);
	if (waiters && rc > 0) {
		if ((f->buf = malloc((size_t)rc)))
			memcpy(f->buf, data, (size_t)rc);
		else
			rc = -ENOMEM;
	}
	pthread_mutex_lock(&c->mu);
	inflight_done(f, rc);
	pthread_mutex_unlock(&c->mu);
}

static void inflight_put(struct cache *c, struct cache_inflight *f)
{
	bool last;

	pthread_mutex_lock(&c->mu);
	last = --f->refs == 0;
	pthread_mutex_unlock(&c->mu);
	if (!last)
		return;
	pthread_cond_destroy(&f->cv);
	free(f->buf);
	free(f);
}

/* Only at close, when no call is running: nothing can be in flight. */
void cache_inflight_free_all(struct cache *c)
{
	while (c->inflight) {
		struct cache_inflight *f = c->inflight;
		c->inflight = f->next;
		pthread_cond_destroy(&f->cv);
		free(f->buf);
		free(f);
	}
}

/* ---- recently verified blocks, in memory ---- */

/* Part of a block the caller wants, copied straight from a memory copy when there is one
 * (a 128 KiB FUSE read then copies 128 KiB, not the whole block twice). */
struct part {
	char *dst;     /* where [s, e) of the block goes */
	size_t s, e;
	bool done;     /* dst filled; the caller's block buffer was not */
};

/* Copies [from, to) of block file fid (len bytes) into out if a verified copy is in
 * memory. */
static bool mem_get(struct cache *c, uint64_t fid, size_t len, void *out, size_t from,
		    size_t to)
{
	struct cache_memblk *m = NULL;

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->nmem; i++) {
		if (c->mem[i].fid == fid && c->mem[i].len == len) {
			m = &c->mem[i];
			m->refs++;
			m->used = ++c->mem_clock;
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	if (!m)
		return false;
	memcpy(out, (char *)m->buf + from, to - from); /* refs > 0: the slot stays meanwhile */
	pthread_mutex_lock(&c->mu);
	m->refs--;
	pthread_mutex_unlock(&c->mu);
	return true;
}

/* Keeps a copy of verified block file fid, replacing the least recently used idle slot.
 * The slot's buffer is reused: no fresh memory (page faults) per block. While it is filled
 * the slot is reserved (refs) and matches no fid, so no reader copies a half-written block. */
static void mem_put(struct cache *c, uint64_t fid, const void *data, size_t len)
{
	struct cache_memblk *m = NULL;
	void *buf;
	size_t cap;

	if (c->nmem == 0)
		return;
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->nmem; i++) {
		struct cache_memblk *x = &c->mem[i];
		if (x->fid == fid) { /* another reader was first */
			m = NULL;
			break;
		}
		if (x->refs == 0 && (!m || x->used < m->used))
			m = x;
	}
	if (m) {
		m->fid = UINT64_MAX;
		m->refs++;
	}
	pthread_mutex_unlock(&c->mu);
	if (!m)
		return;
	buf = m->buf;
	cap = m->cap;
	if (cap < len) {
		free(buf);
		cap = len ? len : 1;
		buf = malloc(cap);
		if (!buf)
			cap = 0;
	}
	if (buf)
		memcpy(buf, data, len);
	pthread_mutex_lock(&c->mu);
	m->buf = buf;
	m->cap = cap;
	if (buf) {
		m->fid = fid;
		m->len = (uint32_t)len;
		m->used = ++c->mem_clock;
	}
	m->refs--;
	pthread_mutex_unlock(&c->mu);
}

/* At open. */
void cache_mem_init(struct cache *c)
{
	c->nmem = c->block_size >= CACHE_MEM_BYTES ? 1 : CACHE_MEM_BYTES / c->block_size;
	if (c->nmem > CACHE_MEM_SLOTS_MAX)
		c->nmem = CACHE_MEM_SLOTS_MAX;
	for (size_t i = 0; i < CACHE_MEM_SLOTS_MAX; i++)
		c->mem[i].fid = UINT64_MAX;
}

/* At close, when no call is running. */
void cache_mem_free(struct cache *c)
{
	for (size_t i = 0; i < CACHE_MEM_SLOTS_MAX; i++) {
		free(c->mem[i].buf);
		c->mem[i].buf = NULL;
		c->mem[i].cap = 0;
		c->mem[i].fid = UINT64_MAX;
	}
}

/* ---- the read path ---- */

/* Reads block bk (blen bytes) from disk into out and checks it. 0 on success with *r set;
 * -ENOENT if not cached. A bad record or block file is dropped (and -ENOENT returned): a
 * block that fails its checksum is never served. */
static int disk_get(struct cache *c, const struct bkey *bk, size_t blen, void *out,
		    struct cache_blkrec *r, struct part *part)
{
	int rc = index_get(c, bk->b, bk->len, r);

	if (rc == -EBADMSG) {
		index_drop(c, bk->b, bk->len, UINT64_MAX);
		return -ENOENT;
	}
	if (rc)
		return -ENOENT;
	if (r->len != blen) {
		/* the object's size changed under the same ETag, or the record is damaged */
		index_drop(c, bk->b, bk->len, r->fid);
		return -ENOENT;
	}
	if (part && mem_get(c, r->fid, blen, part->dst, part->s, part->e)) {
		part->done = true;
		return 0;
	}
	if (!part && mem_get(c, r->fid, blen, out, 0, blen))
		return 0;
	rc = cache_blk_read(c, r->fid, out, blen, r->crc);
	if (rc == 0)
		mem_put(c, r->fid, out, blen);
	if (rc) {
		char path[4096];
		cache_blk_path(c, r->fid, path, sizeof(path));
		bfs_log(BFS_LOG_WARN, "cache: block file %s %s, fetching again", path,
			rc == -EBADMSG ? "is corrupt" : "is unreadable");
		index_drop(c, bk->b, bk->len, r->fid);
		return -ENOENT;
	}
	return 0;
}

/* true if cache_invalidate ran since the caller read inval_gen == gen */
static bool invalidated_since(struct cache *c, uint64_t gen)
{
	bool changed;

	pthread_mutex_lock(&c->mu);
	changed = c->inval_gen != gen;
	pthread_mutex_unlock(&c->mu);
	return changed;
}

/* Says once a minute, not once per block, that a full disk keeps blocks out of the cache. */
static void store_failed(struct cache *c, const struct bkey *bk, int rc)
{
	int64_t now = c->now();
	bool quiet;

	pthread_mutex_lock(&c->mu);
	quiet = rc == -ENOSPC && now - c->nospc_logged_s < 60;
	if (!quiet && rc == -ENOSPC)
		c->nospc_logged_s = now;
	pthread_mutex_unlock(&c->mu);
	if (!quiet)
		bfs_log(BFS_LOG_WARN, "cache: not caching a block of %.*s: %s",
			(int)bk->key_len - 1, (const char *)bk->b, strerror(-rc));
}

/* After the records of p[0..n) went in: an invalidation that ran meanwhile must not be
 * undone; the others are kept in memory too. */
static void stored(struct cache *c, struct bkey *bk, const struct blkput *p, unsigned n,
		   const unsigned char *const *data, uint64_t gen)
{
	bool dropped = invalidated_since(c, gen);

	for (unsigned i = 0; i < n; i++) {
		if (dropped) {
			bkey_block(bk, p[i].blk);
			index_drop(c, bk->b, bk->len, p[i].fid);
		} else {
			mem_put(c, p[i].fid, data[i], p[i].len);
		}
	}
	cache_evict_kick(c);
}

/* Writes the block files of p[0..n), each with a new fid; returns how many were written
 * (*rc: why the next one was not). */
static unsigned write_files(struct cache *c, struct blkput *p, unsigned n,
			    const unsigned char *const *data, int *rc)
{
	unsigned m;

	*rc = 0;
	for (m = 0; m < n; m++) {
		p[m].crc = cache_crc32c(0, data[m], p[m].len);
		pthread_mutex_lock(&c->mu);
		p[m].fid = c->next_fid++;
		pthread_mutex_unlock(&c->mu);
		if ((*rc = cache_blk_write(c, p[m].fid, data[m], p[m].len)))
			break;
	}
	return m;
}

static void unlink_files(struct cache *c, const struct blkput *p, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		cache_blk_unlink(c, p[i].fid);
}

/* Stores a fetched block: file first, then the index record. If the disk (or the index) is
 * full, evicts clean blocks and tries once more; failing that the block is not cached. */
static void store(struct cache *c, struct bkey *bk, uint64_t blk, const void *data,
		  size_t len, uint64_t gen)
{
	struct blkput p = { .blk = blk, .len = (uint32_t)len };
	const unsigned char *d = data;
	int rc = 0;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (invalidated_since(c, gen))
			return;
		if (write_files(c, &p, 1, &d, &rc) == 1 && (rc = index_put(c, bk, &p, 1)))
			unlink_files(c, &p, 1);
		if (rc != -ENOSPC && rc != -EDQUOT)
			break;
		if (attempt == 0) {
			uint64_t bytes, reserve = c->size_cap / 10;
			if (reserve < 8 * c->block_size)
				reserve = 8 * c->block_size;
			pthread_mutex_lock(&c->mu);
			bytes = c->bytes;
			pthread_mutex_unlock(&c->mu);
			cache_evict_to(c, bytes > reserve ? bytes - reserve : 0);
		}
	}
	if (rc)
		store_failed(c, bk, rc);
	else
		stored(c, bk, &p, 1, &d, gen);
}

/* Stores the n whole blocks of a prefetched run (block start on, lens[i] bytes each at
 * data[i]): their files, then their records in one transaction. What a full disk keeps out
 * goes block by block through store(), which evicts and retries. */
static void store_run(struct cache *c, struct bkey *bk, uint64_t start,
		      const unsigned char *const *data, const size_t *lens, unsigned n,
		      uint64_t gen)
{
	struct blkput p[CACHE_RUN_MAX];
	unsigned m;
	int rc;

	if (n == 0 || invalidated_since(c, gen))
		return;
	for (unsigned i = 0; i < n; i++)
		p[i] = (struct blkput){ .blk = start + i, .len = (uint32_t)lens[i] };
	m = write_files(c, p, n, data, &rc);
	if (m && (rc = index_put(c, bk, p, m))) {
		unlink_files(c, p, m);
		m = 0;
	}
	if (m)
		stored(c, bk, p, m, data, gen);
	for (unsigned i = m; i < n; i++)
		store(c, bk, start + i, data[i], lens[i], gen);
}

/* Fetches block blk into out through src, sharing the fetch with concurrent readers of the
 * same block; count: a reader's (hit/miss counters), not a prefetch. Returns bytes (blen
 * unless the object ended early) or -errno. */
static ssize_t fetch_shared(struct cache *c, struct bkey *bk, uint64_t blk, size_t blen,
			    void *out, const struct cache_source *src, bool count)
{
	struct cache_inflight *f;
	struct cache_blkrec r;
	bool leader = false, hit = false;
	uint64_t gen;
	ssize_t rc;

	f = inflight_join(c, bk->b, bk->len, false, &leader);
	if (!f)
		return -ENOMEM;
	if (!leader) {
		rc = f->rc;
		if (rc > 0)
			memcpy(out, f->buf, (size_t)rc);
		pthread_mutex_lock(&c->mu);
		c->misses += count;
		pthread_mutex_unlock(&c->mu);
		inflight_put(c, f);
		return rc;
	}
	pthread_mutex_lock(&c->mu);
	gen = c->inval_gen;
	pthread_mutex_unlock(&c->mu);
	f->buf = malloc(blen ? blen : 1);
	if (!f->buf) {
		rc = -ENOMEM;
		goto out;
	}
	/* another leader may have stored the block between our miss and our join */
	if (disk_get(c, bk, blen, f->buf, &r, NULL) == 0 &&
	    !cache_expired(c->now(), r.validated_s, c->ttl_sec)) {
		rc = (ssize_t)blen;
		hit = true;
		goto out;
	}
	rc = src->fetch(src->arg, blk * c->block_size, blen, f->buf);
	if (rc > (ssize_t)blen)
		rc = -EIO;
	if (rc == (ssize_t)blen)
		store(c, bk, blk, f->buf, blen, gen);
	else if (rc >= 0)
		bfs_log(BFS_LOG_WARN, "cache: %.*s ended %zu bytes early at block %" PRIu64,
			(int)bk->key_len - 1, (const char *)bk->b, blen - (size_t)rc, blk);
out:
	if (rc > 0)
		memcpy(out, f->buf, (size_t)rc);
	pthread_mutex_lock(&c->mu);
	if (hit)
		c->hits += count;
	else
		c->misses += count;
	pthread_mutex_unlock(&c->mu);
	inflight_finish(c, f, rc);
	inflight_put(c, f);
	return rc;
}

/* The version of an expired block is asked about once (shared by concurrent readers).
 * Returns 0 if the version is current (all its blocks now validated), 1 if the block must be
 * fetched again (no hook), or -errno (-ESTALE: the version's blocks were dropped). */
static int revalidate(struct cache *c, const struct bkey *bk, uint64_t fid, const char *key,
		      const char *etag, const struct cache_source *src)
{
	struct cache_inflight *f;
	bool leader = false;
	int rc;

	if (!src->revalidate) {
		index_drop(c, bk->b, bk->len, fid);
		return 1;
	}
	f = inflight_join(c, bk->b, bk->ver_len, true, &leader);
	if (!f)
		return -ENOMEM;
	if (!leader) {
		rc = (int)f->rc;
		inflight_put(c, f);
		return rc;
	}
	rc = src->revalidate(src->arg, key, etag);
	if (rc == 0) {
		int wrc = index_revalidated(c, bk->b, bk->ver_len);
		if (wrc)
			bfs_log(BFS_LOG_WARN, "cache: cannot record revalidation of %s: %s", key,
				strerror(-wrc));
	} else if (rc == -ESTALE) {
		index_drop_prefix(c, bk->b, bk->ver_len);
	} else if (rc > 0) {
		rc = -EIO;
	}
	inflight_finish(c, f, rc);
	inflight_put(c, f);
	return rc;
}

/* Serves block blk of the version into out. Returns bytes or -errno. */
static ssize_t block_get(struct cache *c, struct bkey *bk, uint64_t blk, size_t blen, void *out,
			 const char *key, const char *etag, const struct cache_source *src,
			 struct part *part)
{
	struct cache_blkrec r;
	int rc;

	bkey_block(bk, blk);
	part->done = false;
	if (disk_get(c, bk, blen, out, &r, part) == 0) {
		if (cache_expired(c->now(), r.validated_s, c->ttl_sec)) {
			rc = revalidate(c, bk, r.fid, key, etag, src);
			if (rc < 0)
				return rc;
			if (rc > 0) {
				part->done = false;
				return fetch_shared(c, bk, blk, blen, out, src, true);
			}
		}
		pthread_mutex_lock(&c->mu);
		c->hits++;
		pthread_mutex_unlock(&c->mu);
		touch(c, bk, &r);
		return (ssize_t)blen;
	}
	return fetch_shared(c, bk, blk, blen, out, src, true);
}

ssize_t cache_read_src(struct cache *c, const char *key, const char *etag, uint64_t obj_size,
		       uint64_t off, size_t len, void *buf, const struct cache_source *src)
{
	struct bkey *bk = NULL;
	unsigned char *bounce = NULL;
	uint64_t bs = c->block_size, end;
	size_t done = 0;
	ssize_t rc = 0;

	if (!key || !etag || !src || !src->fetch || (len && !buf))
		return -EINVAL;
	if (c->rdonly)
		return -EROFS;
	if (off >= obj_size || len == 0)
		return 0;
	end = len > obj_size - off ? obj_size : off + len;
	bk = malloc(sizeof(*bk));
	bounce = malloc(bs);
	if (!bk || !bounce) {
		rc = -ENOMEM;
		goto out;
	}
	bkey_version(bk, key, etag);
	for (uint64_t blk = off / bs; blk * bs < end; blk++) {
		uint64_t boff = blk * bs, s, e;
		size_t blen = (size_t)(obj_size - boff < bs ? obj_size - boff : bs);
		struct part part;
		ssize_t got;

		s = off > boff ? off : boff;
		e = end < boff + blen ? end : boff + blen;
		part = (struct part){ .dst = (char *)buf + (s - off), .s = (size_t)(s - boff),
				      .e = (size_t)(e - boff) };
		got = block_get(c, bk, blk, blen, bounce, key, etag, src, &part);
		if (got < 0) {
			rc = got;
			goto out;
		}
		if (part.done) { /* whole block valid, our part already copied */
			done += (size_t)(e - s);
			continue;
		}
		e = end < boff + (uint64_t)got ? end : boff + (uint64_t)got;
		if (e > s) {
			memcpy((char *)buf + (s - off), bounce + (s - boff), (size_t)(e - s));
			done += (size_t)(e - s);
		}
		if ((size_t)got < blen)
			break; /* the object ended early */
	}
	rc = (ssize_t)done;
out:
	free(bounce);
	free(bk);
	return rc;
}

int cache_prefetch_run(struct cache *c, const char *key, const char *etag, uint64_t obj_size,
		       uint64_t blk, unsigned nblk, const struct cache_source *src, void *runbuf,
		       size_t runbuf_len)
{
	struct cache_inflight *fl[CACHE_RUN_MAX];
	const unsigned char *data[CACHE_RUN_MAX];
	size_t lens[CACHE_RUN_MAX];
	struct cache_blkrec r;
	struct bkey *bk;
	unsigned char *buf = NULL;
	uint64_t bs = c->block_size, gen, start = 0;
	unsigned n = 0, whole = 0;
	ssize_t got = 0;
	int rc = 0;

	if (!key || !etag || !src || !src->fetch)
		return -EINVAL;
	if (c->rdonly)
		return -EROFS;
	if (nblk > CACHE_RUN_MAX)
		nblk = CACHE_RUN_MAX;
	bk = malloc(sizeof(*bk));
	if (!bk)
		return -ENOMEM;
	bkey_version(bk, key, etag);
	pthread_mutex_lock(&c->mu);
	gen = c->inval_gen;
	pthread_mutex_unlock(&c->mu);
	/* the run: from the first block neither cached nor in flight, up to the next that is */
	for (uint64_t b = blk; b < blk + nblk && b * bs < obj_size; b++) {
		size_t blen = (size_t)(obj_size - b * bs < bs ? obj_size - b * bs : bs);
		bkey_block(bk, b);
		bool have = index_get(c, bk->b, bk->len, &r) == 0 && r.len == blen;
		struct cache_inflight *f = have ? NULL : inflight_lead(c, bk->b, bk->len);
		if (f && index_get(c, bk->b, bk->len, &r) == 0 && r.len == blen) {
			/* stored by another leader between our look and our lead */
			if ((f->buf = malloc(blen)) &&
			    disk_get(c, bk, blen, f->buf, &r, NULL) == 0) {
				inflight_finish(c, f, (ssize_t)blen);
				inflight_put(c, f);
				f = NULL;
			} else {
				free(f->buf);
				f->buf = NULL;
			}
		}
		if (!f) {
			if (n)
				break;
			continue;
		}
		if (n == 0)
			start = b;
		fl[n++] = f;
	}
	if (n == 0)
		goto out;
	uint64_t off = start * bs, end = start + n == (obj_size + bs - 1) / bs ? obj_size
					: (start + n) * bs;
	size_t total = (size_t)(end - off);
	buf = runbuf && runbuf_len >= total ? runbuf : malloc(total);
	got = buf ? src->fetch(src->arg, off, total, buf) : -ENOMEM;
	if (got > (ssize_t)total)
		got = -EIO;
	if (got >= 0 && got < (ssize_t)total)
		bfs_log(BFS_LOG_WARN, "cache: %s ended %zu bytes early at block %" PRIu64, key,
			total - (size_t)got, start + (uint64_t)got / bs);
	/* the whole blocks (a prefix of the run, got being contiguous) are stored at once */
	for (unsigned i = 0; i < n && got > 0; i++) {
		uint64_t boff = (uint64_t)i * bs;
		size_t blen = (size_t)(end - off - boff < bs ? end - off - boff : bs);
		if ((uint64_t)got < boff + blen)
			break;
		data[i] = buf + boff;
		lens[i] = blen;
		whole++;
	}
	store_run(c, bk, start, data, lens, whole, gen);
	for (unsigned i = 0; i < n; i++) {
		uint64_t boff = (uint64_t)i * bs;
		size_t blen = (size_t)(end - off - boff < bs ? end - off - boff : bs);
		ssize_t brc = got < 0 ? got
			      : (uint64_t)got <= boff ? 0
			      : (ssize_t)((uint64_t)got - boff < blen ? (uint64_t)got - boff : blen);
		inflight_finish_copy(c, fl[i], brc, buf + boff);
		inflight_put(c, fl[i]);
	}
	rc = got < 0 ? (int)got : (int)n;
out:
	if (buf != runbuf)
		free(buf);
	free(bk);
	return rc;
}

uint64_t cache_block_size(const struct cache *c)
{
	return c->block_size;
}

ssize_t cache_read(struct cache *c, const char *key, const char *etag, uint64_t obj_size,
		   uint64_t off, size_t len, void *buf, cache_fetch_fn fetch, void *arg)
{
	struct cache_source src = { .fetch = fetch, .revalidate = NULL, .arg = arg };

	return cache_read_src(c, key, etag, obj_size, off, len, buf, &src);
}

void cache_invalidate(struct cache *c, const char *key)
{
	struct bkey bk;
	int rc;

	if (!key || c->rdonly)
		return;
	bkey_version(&bk, key, "");
	pthread_mutex_lock(&c->mu);
	c->inval_gen++;
	pthread_mutex_unlock(&c->mu);
	rc = index_drop_prefix(c, bk.b, bk.key_len);
	if (rc)
		bfs_log(BFS_LOG_WARN, "cache: cannot invalidate %s: %s", key, strerror(-rc));
}

/* ---- open ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Read-only open: counts blocks and bytes, nothing else. */
static int index_count(struct cache *c)
{
	struct cache_walk w;
	MDB_val k, v;
	struct cache_blkrec r;
	int rc;

	if ((rc = cache_walk_begin(c, MDB_RDONLY, &w)) ||
	    (rc = cache_walk_open(&w, c->db_blocks, NULL, 0)))
		goto out;
	while (cache_walk_next(&w, &k, &v)) {
		if (cache_blkrec_decode(&v, &r) < 0)
			continue;
		c->blocks++;
		c->bytes += r.len;
	}
out:
	cache_walk_end(&w);
	return rc;
}

/* At open: forgets every block if the block size changed (block numbers would mean other
 * offsets), drops bad records, counts blocks and bytes, and deletes stray block files.
 * Read-only: only counts. */
int cache_index_load(struct cache *c)
{
	struct cache_walk w;
	MDB_val bk = { sizeof("block_size") - 1, "block_size" }, k, v;
	struct cache_blkrec r;
	uint64_t *fids = NULL, maxfid = 0;
	size_t n = 0, cap = 0;
	int rc, mrc;

	if (c->rdonly)
		return index_count(c);
	if ((rc = cache_walk_begin(c, 0, &w)))
		goto out;
	mrc = mdb_get(w.txn, c->db_misc, &bk, &v);
	if (mrc == 0 && (v.mv_size != sizeof(uint64_t) || memcmp(v.mv_data, &c->block_size, 8))) {
		bfs_log(BFS_LOG_INFO, "cache: block size changed, dropping cached blocks");
		if ((rc = cache_mdb_errno(mdb_drop(w.txn, c->db_blocks, 0))))
			goto out;
		mrc = MDB_NOTFOUND;
	}
	if (mrc == MDB_NOTFOUND) {
		v.mv_size = sizeof(c->block_size);
		v.mv_data = &c->block_size;
		if ((rc = cache_mdb_errno(mdb_put(w.txn, c->db_misc, &bk, &v, 0))))
			goto out;
	} else if (mrc && (rc = cache_mdb_errno(mrc))) {
		goto out;
	}
	if ((rc = cache_walk_open(&w, c->db_blocks, NULL, 0)))
		goto out;
	while (cache_walk_next(&w, &k, &v)) {
		if (cache_blkrec_decode(&v, &r) < 0) {
			if ((rc = cache_mdb_errno(mdb_cursor_del(w.cur, 0))))
				goto out;
			continue;
		}
		if (n == cap) {
			uint64_t *nf = realloc(fids, (cap = cap ? 2 * cap : 256) * sizeof(*fids));
			if (!nf) {
				rc = -ENOMEM;
				goto out;
			}
			fids = nf;
		}
		fids[n++] = r.fid;
		c->bytes += r.len;
		if (r.fid > maxfid)
			maxfid = r.fid;
	}
	/* the sweep deletes every block file not in fids: only with the complete list */
	if (w.mrc != MDB_NOTFOUND) {
		rc = cache_mdb_errno(w.mrc ? w.mrc : MDB_CORRUPTED);
		goto out;
	}
	c->blocks = n;
	c->next_fid = maxfid + 1;
	if ((rc = cache_walk_commit(&w)))
		goto out;
	if (n)
		qsort(fids, n, sizeof(*fids), cmp_u64);
	rc = cache_blk_sweep(c, fids, n);
out:
	cache_walk_end(&w);
	free(fids);
	return rc;
}
