/* fs/readahead.c — sequential-read detection per open file, and parallel prefetch of the
 * blocks ahead of the reader into the block cache.
 *
 * Every open file handle keeps where its last read ended. A read that starts there is
 * sequential: the window ahead of it doubles (one block, two, four, ... up to -o readahead=)
 * and the blocks of the window not yet asked for are queued; any other read resets the
 * window, so random reads fetch only the block they need. A pool of workers fetches queued
 * runs of blocks in parallel, each run (8 MiB, a multipart part's worth) with one ranged GET
 * through the same verified fetch as a read (fs/integrity.c), sharing a fetch in flight with
 * readers of the same block (cache_prefetch_run). Memory: one run buffer per worker; the
 * queue holds small job records and is capped. Many handles reading disjoint slices of one
 * file each get their own window.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "util/util.h"

#define RA_MAX_QUEUED 4096 /* blocks waiting; beyond that a window is not extended */
#define RA_RUN_BYTES (8u << 20) /* one GET fetches this much of a window (a multipart part) */

/* One object version being read ahead; shared by its queued blocks. */
struct ra_obj {
	struct bfs_fs *fs;
	char *key;
	char etag[72];
	uint64_t size;
	struct bfs_verify *verify;
	int refs; /* ra->lock */
};

struct ra_job {
	struct ra_obj *obj;
	uint64_t blk;
	unsigned nblk; /* a run of blocks fetched with one GET */
	struct ra_job *next;
};

/* The pool (one per file system). Owner: bfs_fs. */
struct bfs_readahead {
	pthread_mutex_t lock; /* queue, refs, stopping */
	pthread_cond_t cond;
	struct ra_job *head, *tail;
	size_t queued;
	bool stopping;
	pthread_t *threads;
	int nthreads;
	uint64_t window_max;
	atomic_uint_least64_t window_last; /* window of the latest sequential read (statistics) */
	atomic_uint_least64_t prefetched;  /* blocks fetched by the workers */
};

static void obj_put(struct bfs_readahead *ra, struct ra_obj *o)
{
	pthread_mutex_lock(&ra->lock);
	bool last = --o->refs == 0;
	pthread_mutex_unlock(&ra->lock);
	if (!last)
		return;
	bfs_verify_free(o->verify);
	free(o->key);
	free(o);
}

static ssize_t ra_fetch(void *arg, uint64_t off, size_t len, void *buf)
{
	struct ra_obj *o = arg;
	return bfs_integrity_fetch(o->fs->s3, o->verify, o->key, o->etag[0] ? o->etag : NULL, off,
				   len, buf);
}

static void *ra_worker(void *arg)
{
	struct bfs_readahead *ra = arg;
	/* the worker's run buffer, reused for every run (allocated at the first one) */
	void *runbuf = NULL;
	size_t runlen = 0;
	pthread_mutex_lock(&ra->lock);
	for (;;) {
		while (!ra->head && !ra->stopping)
			pthread_cond_wait(&ra->cond, &ra->lock);
		if (ra->stopping)
			break;
		struct ra_job *j = ra->head;
		ra->head = j->next;
		if (!ra->head)
			ra->tail = NULL;
		ra->queued -= j->nblk;
		pthread_mutex_unlock(&ra->lock);

		struct cache_source src = { .fetch = ra_fetch, .arg = j->obj };
		size_t want = (size_t)j->nblk * cache_block_size(j->obj->fs->cache);
		if (want > runlen) {
			void *nb = realloc(runbuf, want);
			if (nb) {
				runbuf = nb;
				runlen = want;
			}
		}
		int rc = cache_prefetch_run(j->obj->fs->cache, j->obj->key, j->obj->etag,
					    j->obj->size, j->blk, j->nblk, &src, runbuf, runlen);
		if (rc > 0)
			atomic_fetch_add_explicit(&ra->prefetched, (uint64_t)rc,
						  memory_order_relaxed);
		if (rc < 0 && rc != -ESTALE) /* a changed object: the reader finds out itself */
			bfs_log(BFS_LOG_DEBUG, "readahead of %s block %llu: %s", j->obj->key,
				(unsigned long long)j->blk, strerror(-rc));
		obj_put(ra, j->obj);
		free(j);
		pthread_mutex_lock(&ra->lock);
	}
	pthread_mutex_unlock(&ra->lock);
	free(runbuf);
	return NULL;
}

int bfs_readahead_start(struct bfs_fs *fs)
{
	if (fs->opts->readahead == 0)
		return 0;
	struct bfs_readahead *ra = calloc(1, sizeof(*ra));
	if (!ra)
		return -ENOMEM;
	pthread_mutex_init(&ra->lock, NULL);
	pthread_cond_init(&ra->cond, NULL);
	ra->window_max = fs->opts->readahead;
	/* half the connections: reads of blocks nobody prefetched, and uploads, keep theirs */
	int n = fs->opts->max_connections / 2;
	ra->nthreads = n < 1 ? 1 : n;
	ra->threads = calloc((size_t)ra->nthreads, sizeof(*ra->threads));
	if (!ra->threads) {
		free(ra);
		return -ENOMEM;
	}
	for (int i = 0; i < ra->nthreads; i++)
		if (pthread_create(&ra->threads[i], NULL, ra_worker, ra)) {
			ra->nthreads = i;
			break;
		}
	fs->readahead = ra;
	return ra->nthreads ? 0 : -EAGAIN;
}

void bfs_readahead_stop(struct bfs_fs *fs)
{
	struct bfs_readahead *ra = fs->readahead;
	if (!ra)
		return;
	pthread_mutex_lock(&ra->lock);
	ra->stopping = true;
	pthread_cond_broadcast(&ra->cond);
	pthread_mutex_unlock(&ra->lock);
	for (int i = 0; i < ra->nthreads; i++)
		pthread_join(ra->threads[i], NULL);
	while (ra->head) {
		struct ra_job *j = ra->head;
		ra->head = j->next;
		obj_put(ra, j->obj);
		free(j);
	}
	free(ra->threads);
	pthread_cond_destroy(&ra->cond);
	pthread_mutex_destroy(&ra->lock);
	free(ra);
	fs->readahead = NULL;
}

/* Decides what to prefetch after a read of [off, off+len) through handle state st (ino->lock
 * held): sets *from and *to (block numbers, to exclusive) and returns whether to queue. */
static bool plan(struct bfs_readahead *ra, struct bfs_ra *st, uint64_t bs, uint64_t fsize,
		 uint64_t off, size_t len, uint64_t *from, uint64_t *to)
{
	bool sequential = st->reads > 0 && off == st->next;
	st->reads++;
	st->next = off + len;
	if (!sequential) {
		st->window = 0; /* a random read: only its own block */
		st->ahead = 0;
		return false;
	}
	st->window = st->window ? st->window * 2 : bs;
	if (st->window > ra->window_max)
		st->window = ra->window_max;
	uint64_t end = off + len + st->window;
	if (end > fsize)
		end = fsize;
	uint64_t first = (off + len + bs - 1) / bs; /* the block after the one being read */
	if (st->ahead > first)
		first = st->ahead;
	uint64_t last = (end + bs - 1) / bs;
	/* what the window gained goes in batches (a run's GET each, up to half the window so
	 * the batch before it is still ahead of the reader), not a block per read */
	uint64_t batch = st->window / bs / 2, run = RA_RUN_BYTES / bs;
	uint64_t nblocks = (fsize + bs - 1) / bs;
	if (batch > run)
		batch = run;
	if (nblocks - last < batch)
		last = nblocks; /* a tail shorter than a batch goes with this one, not alone */
	if (first >= last || (last - first < batch && last < nblocks))
		return false;
	st->ahead = last;
	*from = first;
	*to = last;
	return true;
}

void bfs_readahead_note(struct bfs_fs *fs, struct bfs_inode *ino, struct bfs_ra *st,
			uint64_t off, size_t len)
{
	struct bfs_readahead *ra = fs->readahead;
	if (!ra || len == 0)
		return;
	uint64_t bs = cache_block_size(fs->cache), from, to;
	pthread_mutex_lock(&ino->lock);
	uint64_t fsize = (uint64_t)ino->st.st_size;
	bool go = ino->etag[0] && plan(ra, st, bs, fsize, off, len, &from, &to);
	if (st->window)
		atomic_store_explicit(&ra->window_last, st->window, memory_order_relaxed);
	struct ra_obj *o = go ? calloc(1, sizeof(*o)) : NULL;
	struct s3_meta meta;
	int rc = o ? s3_meta_copy(&meta, &ino->meta) : -ENOMEM;
	if (o) {
		memcpy(o->etag, ino->etag, sizeof(o->etag));
		o->key = bfs_data_key(fs, ino);
	}
	pthread_mutex_unlock(&ino->lock);
	if (!o)
		return;
	o->fs = fs;
	o->size = fsize;
	if (rc == 0) {
		rc = o->key ? bfs_integrity_prepare(fs->opts, o->key, o->etag, fsize, &meta,
						    &o->verify)
			    : -ENOMEM;
		s3_meta_free(&meta);
	}
	if (rc) {
		free(o->key);
		free(o);
		return;
	}
	o->refs = 1; /* ours, until every job is queued */
	uint64_t run = RA_RUN_BYTES / bs ? RA_RUN_BYTES / bs : 1;
	if (run > CACHE_RUN_MAX)
		run = CACHE_RUN_MAX;
	pthread_mutex_lock(&ra->lock);
	for (uint64_t b = from; b < to && ra->queued < RA_MAX_QUEUED && !ra->stopping; b += run) {
		struct ra_job *j = malloc(sizeof(*j));
		if (!j)
			break;
		*j = (struct ra_job){ .obj = o, .blk = b,
				      .nblk = (unsigned)(to - b < run ? to - b : run) };
		o->refs++;
		if (ra->tail)
			ra->tail->next = j;
		else
			ra->head = j;
		ra->tail = j;
		ra->queued += j->nblk;
	}
	pthread_cond_broadcast(&ra->cond);
	pthread_mutex_unlock(&ra->lock);
	obj_put(ra, o);
}

void bfs_readahead_stats(struct bfs_fs *fs, struct bfs_ra_stats *out)
{
	struct bfs_readahead *ra = fs->readahead;
	memset(out, 0, sizeof(*out));
	if (!ra)
		return;
	out->window_max = ra->window_max;
	out->window_last = atomic_load_explicit(&ra->window_last, memory_order_relaxed);
	out->prefetched = atomic_load_explicit(&ra->prefetched, memory_order_relaxed);
	pthread_mutex_lock(&ra->lock); /* never held across a fetch */
	out->queued = ra->queued;
	pthread_mutex_unlock(&ra->lock);
}
