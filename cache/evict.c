/* cache/evict.c — keeps clean block bytes under size_cap, least recently used first.
 *
 * A background thread is woken when a store takes bytes over the cap; a store that finds
 * bytes far over the cap (by a quarter) evicts inline, so a burst of reads cannot outrun the
 * thread. A pass evicts down to a low-water mark (95% of the cap) so passes are not run for
 * every block. Only db "blocks" and its files are ever evicted; journal data never is.
 *
 * A pass: flush pending last-used times; scan the index in a read transaction collecting
 * (last used, file id, length); sort; pick the oldest until enough bytes; collect their keys
 * (a second read scan); delete the records in one write transaction, skipping any record
 * that changed meanwhile (re-stored, or used); then unlink the files. */
#include "cache/cache_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"

#define EVICT_PERIOD_S 30 /* the thread also wakes this often to write last-used times */

struct victim {
	int64_t used_s;
	uint64_t fid;
	uint32_t len;
	unsigned char *key; /* owned; set by the second scan */
	size_t klen;
};

static int cmp_lru(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	if (x->used_s != y->used_s)
		return x->used_s < y->used_s ? -1 : 1;
	return x->fid < y->fid ? -1 : x->fid > y->fid; /* older file first on a tie */
}

static int cmp_fid(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	return x->fid < y->fid ? -1 : x->fid > y->fid;
}

static uint64_t low_water(const struct cache *c)
{
	return c->size_cap - c->size_cap / 20;
}

/* Scans db "blocks"; with v == NULL fills *all with every block, else sets the key of each
 * victim in v (sorted by fid). */
static int scan(struct cache *c, struct victim **all, size_t *n, struct victim *v, size_t nv)
{
	struct cache_walk w;
	MDB_val k, d;
	struct cache_blkrec r;
	size_t cap = 0;
	int rc;

	if ((rc = cache_walk_begin(c, MDB_RDONLY, &w)) ||
	    (rc = cache_walk_open(&w, c->db_blocks, NULL, 0)))
		goto out;
	while (cache_walk_next(&w, &k, &d)) {
		if (d.mv_size != sizeof(r))
			continue;
		memcpy(&r, d.mv_data, sizeof(r));
		if (!v) {
			if (*n == cap) {
				struct victim *na = realloc(*all, (cap = cap ? 2 * cap : 256) * sizeof(*na));
				if (!na) {
					rc = -ENOMEM;
					goto out;
				}
				*all = na;
			}
			(*all)[(*n)++] = (struct victim){ .used_s = r.used_s, .fid = r.fid, .len = r.len };
			continue;
		}
		struct victim key = { .fid = r.fid }, *hit;
		hit = bsearch(&key, v, nv, sizeof(*v), cmp_fid);
		if (!hit || hit->key)
			continue;
		hit->key = malloc(k.mv_size);
		if (!hit->key) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(hit->key, k.mv_data, k.mv_size);
		hit->klen = k.mv_size;
	}
out:
	cache_walk_end(&w);
	return rc;
}

/* Victims: the oldest blocks while bytes exceed target, and every block used before
 * cutoff_s. */
static int evict_pass(struct cache *c, uint64_t target, int64_t cutoff_s, uint64_t *nblocks,
		      uint64_t *nbytes)
{
	struct victim *all = NULL;
	size_t n = 0, nv = 0, ndel = 0;
	uint64_t bytes, freed = 0, need;
	MDB_txn *txn = NULL;
	int rc;

	cache_touch_flush(c);
	pthread_mutex_lock(&c->mu);
	bytes = c->bytes;
	pthread_mutex_unlock(&c->mu);
	if (bytes <= target && cutoff_s == INT64_MIN)
		return 0;
	need = bytes > target ? bytes - target : 0;
	if ((rc = scan(c, &all, &n, NULL, 0)))
		goto out;
	if (n == 0)
		goto out;
	qsort(all, n, sizeof(*all), cmp_lru);
	while (nv < n && (freed < need || all[nv].used_s < cutoff_s))
		freed += all[nv++].len;
	if (nv == 0)
		goto out;
	qsort(all, nv, sizeof(*all), cmp_fid);
	if ((rc = scan(c, NULL, NULL, all, nv)))
		goto out;

	for (int attempt = 0;; attempt++) {
		if ((rc = cache_mdb_errno(mdb_txn_begin(c->env, NULL, 0, &txn))))
			break;
		freed = 0;
		ndel = 0;
		for (size_t i = 0; i < nv && rc == 0; i++) {
			MDB_val k = { all[i].klen, all[i].key }, d;
			struct cache_blkrec r;

			if (!all[i].key || mdb_get(txn, c->db_blocks, &k, &d) ||
			    d.mv_size != sizeof(r))
				goto skip;
			memcpy(&r, d.mv_data, sizeof(r));
			if (r.fid != all[i].fid || r.used_s != all[i].used_s)
				goto skip; /* re-stored or used since the scan */
			if ((rc = cache_mdb_errno(mdb_del(txn, c->db_blocks, &k, NULL))))
				break;
			freed += r.len;
			ndel++;
			continue;
skip:
			all[i].fid = UINT64_MAX; /* not deleted: keep its file */
		}
		if (rc == 0)
			rc = cache_mdb_errno(mdb_txn_commit(txn));
		else
			mdb_txn_abort(txn);
		txn = NULL;
		if (rc != -ENOSPC || attempt > 0)
			break;
		/* the disk is too full even to record the eviction: free the block files
		 * first (a block whose file is gone is dropped when read), then record it */
		for (size_t i = 0; i < nv; i++)
			if (all[i].fid != UINT64_MAX)
				cache_blk_unlink(c, all[i].fid);
	}
	if (rc)
		goto out;
	for (size_t i = 0; i < nv; i++) {
		cache_progress(c, "prune", i, nv); /* block files removed so far */
		if (all[i].fid != UINT64_MAX)
			cache_blk_unlink(c, all[i].fid);
	}
	cache_progress(c, "prune", nv, nv);
	pthread_mutex_lock(&c->mu);
	c->blocks -= ndel;
	c->bytes -= freed;
	pthread_mutex_unlock(&c->mu);
	if (nblocks)
		*nblocks += ndel;
	if (nbytes)
		*nbytes += freed;
	bfs_log(BFS_LOG_DEBUG, "cache: evicted %zu blocks, %llu bytes", ndel,
		(unsigned long long)freed);
out:
	if (txn)
		mdb_txn_abort(txn);
	for (size_t i = 0; i < nv; i++)
		free(all[i].key);
	free(all);
	if (rc)
		bfs_log(BFS_LOG_WARN, "cache: eviction failed: %s", strerror(-rc));
	return rc;
}

/* One pass at a time: a caller arriving during a pass waits for it, then runs its own. */
int cache_evict_pass(struct cache *c, uint64_t target, int64_t cutoff_s, uint64_t *nblocks,
		     uint64_t *nbytes)
{
	int rc;

	if (c->rdonly)
		return -EROFS;
	pthread_mutex_lock(&c->mu);
	while (c->evicting)
		pthread_cond_wait(&c->evict_done_cv, &c->mu);
	c->evicting = true;
	pthread_mutex_unlock(&c->mu);
	rc = evict_pass(c, target, cutoff_s, nblocks, nbytes);
	pthread_mutex_lock(&c->mu);
	c->evicting = false;
	pthread_cond_broadcast(&c->evict_done_cv);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int cache_evict_to(struct cache *c, uint64_t target)
{
	return cache_evict_pass(c, target, INT64_MIN, NULL, NULL);
}

void cache_evict_kick(struct cache *c)
{
	bool far;

	pthread_mutex_lock(&c->mu);
	far = c->bytes > c->size_cap + c->size_cap / 4;
	if (c->bytes > c->size_cap && !far) {
		c->evict_wanted = true;
		pthread_cond_signal(&c->evict_cv);
	}
	pthread_mutex_unlock(&c->mu);
	if (far)
		cache_evict_to(c, low_water(c));
}

/* Wakes when kicked, and every CACHE_STATS_PERIOD_S to rewrite the stats file; flushes
 * last-used times every EVICT_PERIOD_S (and with every eviction pass). */
static void *evictor(void *arg)
{
	struct cache *c = arg;
	struct timespec until, now;
	time_t next_flush;
	bool over, kicked, flush;

	clock_gettime(CLOCK_MONOTONIC, &now);
	next_flush = now.tv_sec + EVICT_PERIOD_S;
	pthread_mutex_lock(&c->mu);
	while (!c->stopping) {
		if (!c->evict_wanted) {
			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_sec += CACHE_STATS_PERIOD_S;
			pthread_cond_timedwait(&c->evict_cv, &c->mu, &until);
			if (c->stopping)
				break;
		}
		kicked = c->evict_wanted;
		c->evict_wanted = false;
		over = c->bytes > c->size_cap;
		pthread_mutex_unlock(&c->mu);
		clock_gettime(CLOCK_MONOTONIC, &now);
		flush = now.tv_sec >= next_flush;
		if (over) {
			cache_evict_to(c, low_water(c));
			next_flush = now.tv_sec + EVICT_PERIOD_S;
		} else if (flush || kicked) {
			cache_touch_flush(c);
			next_flush = now.tv_sec + EVICT_PERIOD_S;
		}
		cache_stats_file_write(c, false);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int cache_evict_start(struct cache *c)
{
	int rc = pthread_create(&c->evictor, NULL, evictor, c);

	if (rc)
		return -rc;
	c->evictor_running = true;
	return 0;
}

void cache_evict_stop(struct cache *c)
{
	if (!c->evictor_running)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_signal(&c->evict_cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->evictor, NULL);
	c->evictor_running = false;
}
