/* cache/cache_int.h — private to the cache/ sources and their unit tests: the struct cache
 * layout, the on-disk record formats and the functions the cache/ sources share. fs/ and
 * tools/ include cache/cache.h only. Layout and formats are described in docs/cache.md. */
#ifndef BFS_CACHE_INT_H
#define BFS_CACHE_INT_H

#include "cache/cache.h"

#include <lmdb.h>
#include <pthread.h>

#define CACHE_FORMAT 1 /* on-disk format version, stored in db "misc" as "format" */

struct cache_inflight; /* a fetch or revalidation in progress (index.c) */

/* A block recently read from disk and verified (or just fetched and stored), kept in memory
 * so that the several FUSE reads that cover one block (128 KiB each by default) read and
 * checksum its file once. Keyed by block file id: a file's bytes never change under its id
 * (ids are not reused), so a copy is valid as long as the index points at that id. */
struct cache_memblk {
	uint64_t fid;             /* UINT64_MAX: empty */
	uint32_t len;
	unsigned refs;            /* readers copying out of buf; the slot is not replaced meanwhile */
	uint64_t used;            /* c->mem_clock at last use (LRU) */
	void *buf;                /* owned, cap bytes (len of them used); reused by the next block */
	size_t cap;
};
#define CACHE_MEM_BYTES (16u << 20) /* memory for recently verified blocks */
#define CACHE_MEM_SLOTS_MAX 16
struct cache_touch;    /* a pending last-used update (index.c) */

/* cache_progress (admin.c): reports done of total to c's progress callback, if any, when
 * done is a multiple of CACHE_PROGRESS_STEP or equals total. */
void cache_progress(struct cache *c, const char *what, uint64_t done, uint64_t total);

struct cache {
	/* ---- set by cache_open, immutable afterwards ---- */
	char *dir;                /* owned */
	int lock_fd;              /* holds flock(LOCK_EX) on <dir>/lock */
	MDB_env *env;
	MDB_dbi db_misc, db_blocks, db_journal, db_meta;
	uint64_t block_size, size_cap;
	unsigned ttl_sec;
	int64_t (*now)(void);     /* wall clock seconds; tests replace it before use */
	unsigned flags;           /* CACHE_OPEN_* given to cache_open */
	bool rdonly;              /* CACHE_OPEN_RDONLY: nothing is written, no lock is held */
	int64_t opened_s;         /* wall clock at open ("since" in the stats file) */

	pthread_mutex_t mu;       /* protects every field below; never held across I/O waits */
	pthread_cond_t evict_cv;  /* wakes the evictor (evict_wanted, stopping) */
	pthread_cond_t evict_done_cv; /* signalled when an eviction pass ends */
	struct cache_inflight *inflight; /* list; entries owned by their refs */
	struct cache_touch *touches;     /* array of ntouch pending last-used updates; owned */
	size_t ntouch, touch_cap;
	uint64_t next_fid;        /* next block file id */
	uint64_t blocks, bytes;   /* clean blocks in the index and their bytes */
	uint64_t hits, misses;
	uint64_t inval_gen;       /* bumped by cache_invalidate; fetches started before don't store */
	int64_t nospc_logged_s;   /* when "not caching: disk full" was last logged */
	uint64_t stats_hits, stats_misses; /* values last written to <dir>/stats */
	struct cache_memblk mem[CACHE_MEM_SLOTS_MAX]; /* recently verified blocks */
	size_t nmem;              /* slots in use: CACHE_MEM_BYTES / block_size, 1..MAX */
	uint64_t mem_clock;
	bool evicting, evict_wanted, stopping, evictor_running;
	cache_progress_fn progress; /* cache_set_progress: the caller's thread only */
	void *progress_arg;
	pthread_t evictor;
};

/* Value of db "blocks" (format 1), host byte order like LMDB itself. */
struct cache_blkrec {
	uint8_t version;          /* CACHE_FORMAT */
	uint8_t pad[3];
	uint32_t len;             /* bytes in the block file */
	uint32_t crc;             /* CRC32C of those bytes */
	uint32_t pad2;
	uint64_t fid;             /* block file id: <dir>/blocks/<fid % 256 as %02x>/<fid as %016x> */
	int64_t fetched_ns;       /* wall clock when fetched */
	int64_t validated_s;      /* wall clock when fetched or last revalidated; expiry = this + ttl */
	int64_t used_s;           /* last use, at CACHE_TOUCH_GRAIN_S granularity */
};

#define CACHE_TOUCH_GRAIN_S 60 /* a hit rewrites used_s only if it is older than this */
#define CACHE_TOUCH_BATCH 256  /* pending touches written in one transaction */

/* cache.c */
int cache_mdb_errno(int rc);   /* LMDB/system rc → -errno (MDB_MAP_FULL → -ENOSPC) */
int64_t cache_now_real(void);  /* default c->now */
/* Writes the index form of an object key or ETag into out (max bytes, max >= 65; no NUL)
 * and returns its length: s itself if at most max bytes, else 0xff + the 64 hex digits of
 * SHA-256(s) (0xff is never in UTF-8, so a hashed form cannot equal a real key). */
size_t cache_keypart(unsigned char *out, const char *s, size_t max);
/* true if a block validated at validated_s is expired at now (ttl 0: never). */
bool cache_expired(int64_t now, int64_t validated_s, unsigned ttl_sec);

/* A cursor over one db in a transaction of its own, walked in key order:
 *	if ((rc = cache_walk_begin(c, MDB_RDONLY, &w)) ||
 *	    (rc = cache_walk_open(&w, c->db_blocks, NULL, 0)))
 *		goto out;
 *	while (cache_walk_next(&w, &k, &v))
 *		...;  (a write walk may mdb_cursor_del(w.cur, 0) or mdb_cursor_put(w.cur, ...))
 *	if (w.mrc != MDB_NOTFOUND) ...;  (the cursor failed)
 *	rc = cache_walk_commit(&w);      (a write walk)
 * out:
 *	cache_walk_end(&w);
 * A walk belongs to the thread that began it (LMDB: a write txn is not shared). */
struct cache_walk {
	MDB_txn *txn;             /* NULL before begin and once committed or ended */
	MDB_cursor *cur;          /* NULL until opened and once closed */
	const void *prefix;       /* only keys starting with these plen bytes; NULL: every key */
	size_t plen;
	bool started;
	int mrc;                  /* last mdb_cursor_get: 0, MDB_NOTFOUND past the last record
				   * (or the last one with the prefix), else an LMDB error */
};
/* Begins a transaction (txn_flags 0 or MDB_RDONLY); w need not be initialised. The caller
 * may use w->txn for other operations before and after cache_walk_open. 0 or -errno; on
 * error too, cache_walk_end(w) is the cleanup. */
int cache_walk_begin(struct cache *c, unsigned txn_flags, struct cache_walk *w);
/* Opens the cursor on dbi; the walk starts at the first key starting with prefix (plen
 * bytes, owned by the caller for the whole walk), or at the first key if prefix is NULL. */
int cache_walk_open(struct cache_walk *w, MDB_dbi dbi, const void *prefix, size_t plen);
/* Moves to the next record (the first one on the first call) into *k, *v (valid until the
 * next call or the end of the transaction); false at the end or on error (see w->mrc). */
bool cache_walk_next(struct cache_walk *w, MDB_val *k, MDB_val *v);
/* Closes the cursor and commits. 0 or -errno. */
int cache_walk_commit(struct cache_walk *w);
/* Closes the cursor and aborts the transaction, if still open. */
void cache_walk_end(struct cache_walk *w);

#define CACHE_KEYPART_MAX 256 /* object keys longer than this are hashed in index keys */
#define CACHE_ETAGPART_MAX 128
/* keypart 0 etagpart 0 u64: 394 bytes, under LMDB's 511-byte key limit */
#define CACHE_BKEY_MAX (CACHE_KEYPART_MAX + 1 + CACHE_ETAGPART_MAX + 1 + 8)

/* blocks.c — block files and CRC32C */
/* crc is the value returned for the preceding bytes (0 to start). Uses SSE4.2 where the CPU
 * has it; cache_crc32c_sw is the portable version (same results). */
uint32_t cache_crc32c(uint32_t crc, const void *p, size_t n);
uint32_t cache_crc32c_sw(uint32_t crc, const void *p, size_t n);
void cache_blk_path(const struct cache *c, uint64_t fid, char *buf, size_t len);
int cache_blk_write(struct cache *c, uint64_t fid, const void *data, size_t len);
int cache_blk_read(struct cache *c, uint64_t fid, void *buf, size_t len, uint32_t crc);
void cache_blk_unlink(struct cache *c, uint64_t fid);
/* Deletes block files whose id is not in live (sorted) and leftover temporaries. */
int cache_blk_sweep(struct cache *c, const uint64_t *live, size_t n);

/* index.c — block index, read path */
/* Decodes a db "blocks" value into *r: 0, or -EBADMSG if its size or version is wrong. */
int cache_blkrec_decode(const MDB_val *v, struct cache_blkrec *r);
int cache_index_load(struct cache *c); /* at open: counters, next_fid, sweep */
int cache_touch_flush(struct cache *c);
void cache_inflight_free_all(struct cache *c);
void cache_mem_init(struct cache *c);  /* at open, once block_size is known */
void cache_mem_free(struct cache *c);  /* at close */

/* Drops the record of an index key if it still points at block file fid (UINT64_MAX: any),
 * then the file. */
void cache_index_drop(struct cache *c, const unsigned char *key, size_t klen, uint64_t fid);

/* evict.c */
int cache_evict_start(struct cache *c);
void cache_evict_stop(struct cache *c);
void cache_evict_kick(struct cache *c);          /* after bytes grew; may evict inline */
int cache_evict_to(struct cache *c, uint64_t target); /* evicts LRU until bytes <= target */
/* One pass: drops least recently used blocks while bytes > target, and every block last
 * used before cutoff_s (INT64_MIN: none); adds what it dropped to *nblocks, *nbytes (may be
 * NULL). */
int cache_evict_pass(struct cache *c, uint64_t target, int64_t cutoff_s, uint64_t *nblocks,
		     uint64_t *nbytes);

/* meta.c */
int cache_meta_count(struct cache *c, uint64_t *n); /* entries of db "meta" */

/* admin.c — the live stats file */
#define CACHE_STATS_PERIOD_S 2 /* the evictor thread rewrites <dir>/stats this often if changed */
/* Writes <dir>/stats (atomically: stats.tmp, then rename) if force or the counters changed
 * since the last write. Not in read-only or tool mode. */
void cache_stats_file_write(struct cache *c, bool force);

/* journal.c */
void cache_journal_key(uint64_t id, unsigned char out[8]); /* db "journal" key: id, big-endian */
int cache_journal_recover(struct cache *c);      /* at open: drops uncommitted entries */
int cache_journal_usage(struct cache *c, uint64_t *entries, uint64_t *bytes);
/* A db "journal" record: key k (8 bytes) and value v into *d (initialised by the callee; its
 * strings owned by the caller, cache_dirty_free; d NULL: the state only). Returns the
 * record's state (0 created, 1 committed) or -EBADMSG, -ENOMEM (d then needs no freeing). */
int cache_jrec_decode(const MDB_val *k, const MDB_val *v, struct cache_dirty *d);
/* The value of a record in state for d (NULL: an empty "created" one); out->mv_data is
 * malloc'd, owned by the caller. 0, -EINVAL or -ENOMEM. */
int cache_jrec_encode(int state, const struct cache_dirty *d, MDB_val *out);

#endif
