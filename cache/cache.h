/* cache/cache.h — the local cache under cache_dir: clean blocks of objects (index.c, blocks.c),
 * and the write-back journal of files not yet uploaded (journal.c). LMDB indexes both.
 *
 * cache/ never calls s3/ directly: reads that miss go through the fetch callback the caller
 * gives. Every function is thread-safe; no lock is held across a fetch callback or an LMDB
 * write commit. In-flight fetches of one block are shared: one fetch, many waiters.
 * Functions return 0 (or a byte count) or a negative errno. */
#ifndef BFS_CACHE_H
#define BFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct cache; /* opaque; thread-safe */

struct cache_config {
	const char *dir;       /* created if missing (mode 0700) */
	uint64_t block_size;   /* 0 = 1 MiB; at most 64 MiB */
	uint64_t size_cap;     /* bytes of clean blocks; 0 = 10% of the cache file system */
	unsigned ttl_sec;      /* 0 = blocks never expire */
};

/* Opens (creating if needed) the cache in cfg->dir; only one process may hold a cache_dir:
 * a second open returns -EBUSY (a lock file, <dir>/lock, held with flock; a second open in
 * the same process is refused too). At open, journal entries never committed and block
 * files the index does not know are deleted. Starts the background eviction thread.
 * *out is owned by the caller and released with cache_close. */
int cache_open(const struct cache_config *cfg, struct cache **out);
/* Stops the eviction thread, writes pending last-used times, closes. No call may be running
 * on c. NULL is a no-op. */
void cache_close(struct cache *c);

/* ---- clean blocks ---- */

/* Fills buf with [off, off+len) of the object, returns bytes read or -errno.
 * Must return exactly len bytes unless the object ends first. */
typedef ssize_t (*cache_fetch_fn)(void *arg, uint64_t off, size_t len, void *buf);

/* Reads [off, off+len) of object version (key, etag) of size obj_size into buf, from cached
 * blocks where valid, else through fetch (whole blocks, stored for next time). Returns bytes
 * read (short only at end of object) or -errno. Every cached block's CRC32C is checked on
 * every read; a bad block is dropped and fetched again. If the cache disk is full the read
 * is served from the fetched bytes without caching. Same as cache_read_src with no
 * revalidate hook. Thread-safe. */
ssize_t cache_read(struct cache *c, const char *key, const char *etag, uint64_t obj_size,
		   uint64_t off, size_t len, void *buf, cache_fetch_fn fetch, void *arg);

/* Asks the source whether version etag of key is still current (e.g. a HEAD with
 * If-Match). Returns 0 if unchanged, -ESTALE if the object changed, other -errno on failure. */
typedef int (*cache_revalidate_fn)(void *arg, const char *key, const char *etag);

/* Where cache_read_src gets bytes the cache cannot serve. Owner: caller; used only during
 * the call. */
struct cache_source {
	cache_fetch_fn fetch;            /* required */
	cache_revalidate_fn revalidate;  /* optional; see cache_read_src */
	void *arg;                       /* passed to both */
};

/* cache_read with a revalidation hook. With ttl_sec > 0 a block whose version was last
 * confirmed (fetched or revalidated) ttl_sec or more seconds ago is not served blindly:
 *  - revalidate != NULL: called once per version (concurrent readers share the call);
 *    0 → every cached block of (key, etag) is confirmed again (expires ttl_sec from now) and
 *    served; -ESTALE → every block of (key, etag) is dropped and -ESTALE returned (the caller
 *    looks the object up again and retries with the new ETag); other -errno is returned.
 *  - revalidate == NULL: the expired block is dropped and fetched again.
 * Thread-safe; no lock is held while fetch or revalidate runs. */
ssize_t cache_read_src(struct cache *c, const char *key, const char *etag, uint64_t obj_size,
		       uint64_t off, size_t len, void *buf, const struct cache_source *src);

/* Drops every cached block of key (all versions). Fetches in flight when it is called are
 * not stored. Does not touch the metadata index (see cache_meta_del). */
void cache_invalidate(struct cache *c, const char *key);

/* Counters: blocks/bytes are the clean blocks on disk; hits/misses count blocks served from
 * disk / blocks that needed a fetch (waiters on a shared fetch count as misses) since open;
 * dirty_* are the journal entries (committed or not) and their data file sizes. */
struct cache_stats {
	uint64_t blocks, bytes, dirty_entries, dirty_bytes, hits, misses;
};
void cache_stats_get(struct cache *c, struct cache_stats *out);

/* ---- persistent object metadata index ----
 * Remembers, per object key, a caller blob (e.g. serialized attributes from a HEAD) together
 * with the (etag, last_modified, size) it was valid for, so a listing after a remount can
 * reuse it for unchanged objects without a HEAD. Survives close/open. Thread-safe. */

/* Stores (replaces) the entry of key. blob is copied. Returns 0, -EINVAL (etag longer than
 * 255 bytes), -ENOSPC if the index is full, or -errno. */
int cache_meta_put(struct cache *c, const char *key, const char *etag,
		   struct timespec last_modified, uint64_t size, const void *blob, size_t bloblen);

/* Looks key up. Returns 0 and *blob (malloc'd, owned by the caller; NUL-terminated after
 * *len bytes for convenience) if present and etag, last_modified and size all equal the
 * stored ones; -ESTALE if present but any differs (*blob untouched); -ENOENT if absent. */
int cache_meta_get(struct cache *c, const char *key, const char *etag,
		   struct timespec last_modified, uint64_t size, void **blob, size_t *len);

/* Drops the entry of key. Returns 0 or -ENOENT. */
int cache_meta_del(struct cache *c, const char *key);

/* ---- write-back journal ----
 * A dirty entry is a file being written: its bytes live in a data file under cache_dir, its
 * record in LMDB says which object it becomes. After a crash, cache_dirty_list() at the next
 * open returns every entry so the caller can upload it. */
struct cache_dirty {
	uint64_t id;      /* journal id; names the data file */
	char *key;        /* object key the data becomes (changes on rename) */
	char *base_etag;  /* ETag of the object the data started from; "" if new/truncated */
	char *meta;       /* caller's serialized metadata (opaque to cache/), NUL-terminated */
	uint64_t size;    /* file size */
};
void cache_dirty_free(struct cache_dirty *d); /* frees strings, not d */

/* Creates an empty data file and a record; returns its id and an O_RDWR fd the caller
 * owns (and closes). The record is "uncommitted": if cache_dirty_commit never runs, the
 * next cache_open deletes both. Errors (e.g. -ENOSPC) are returned, never hidden. */
int cache_dirty_create(struct cache *c, uint64_t *id, int *fd);

/* Path of the data file of id into buf. */
int cache_dirty_path(struct cache *c, uint64_t id, char *buf, size_t len);

/* Makes the record for d->id durable (fdatasync of the data file, then an LMDB commit).
 * May be called again for the same id (e.g. after a rename or more writes): the last commit
 * wins. d->base_etag and d->meta may be NULL (stored as ""). Returns -ENOENT if id has no
 * record or data file. */
int cache_dirty_commit(struct cache *c, const struct cache_dirty *d);

/* Drops the record and the data file of id (after a successful upload or a discard). */
int cache_dirty_remove(struct cache *c, uint64_t id);

/* Lists the committed entries (for recovery), by increasing id. *out is a malloc'd array
 * the caller frees (cache_dirty_free on each element, then free); NULL when *n is 0. */
int cache_dirty_list(struct cache *c, struct cache_dirty **out, size_t *n);

#ifdef BFS_CACHE_INTERNAL
/* ==== private to the cache/ sources and their unit tests; fs/ must not define this ==== */
#include <lmdb.h>
#include <pthread.h>

#define CACHE_FORMAT 1 /* on-disk format version, stored in db "misc" as "format" */

struct cache_inflight; /* a fetch or revalidation in progress (index.c) */
struct cache_touch;    /* a pending last-used update (index.c) */

struct cache {
	/* ---- set by cache_open, immutable afterwards ---- */
	char *dir;                /* owned */
	int lock_fd;              /* holds flock(LOCK_EX) on <dir>/lock */
	MDB_env *env;
	MDB_dbi db_misc, db_blocks, db_journal, db_meta;
	uint64_t block_size, size_cap;
	unsigned ttl_sec;
	int64_t (*now)(void);     /* wall clock seconds; tests replace it before use */

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
	bool evicting, evict_wanted, stopping, evictor_running;
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

#define CACHE_KEYPART_MAX 256 /* object keys longer than this are hashed in index keys */
#define CACHE_ETAGPART_MAX 128
/* keypart 0 etagpart 0 u64: 394 bytes, under LMDB's 511-byte key limit */
#define CACHE_BKEY_MAX (CACHE_KEYPART_MAX + 1 + CACHE_ETAGPART_MAX + 1 + 8)

/* blocks.c — block files and CRC32C */
uint32_t cache_crc32c(uint32_t crc, const void *p, size_t n);
void cache_blk_path(const struct cache *c, uint64_t fid, char *buf, size_t len);
int cache_blk_write(struct cache *c, uint64_t fid, const void *data, size_t len);
int cache_blk_read(struct cache *c, uint64_t fid, void *buf, size_t len, uint32_t crc);
void cache_blk_unlink(struct cache *c, uint64_t fid);
/* Deletes block files whose id is not in live (sorted) and leftover temporaries. */
int cache_blk_sweep(struct cache *c, const uint64_t *live, size_t n);

/* index.c — block index, read path */
int cache_index_load(struct cache *c); /* at open: counters, next_fid, sweep */
int cache_touch_flush(struct cache *c);
void cache_inflight_free_all(struct cache *c);

/* evict.c */
int cache_evict_start(struct cache *c);
void cache_evict_stop(struct cache *c);
void cache_evict_kick(struct cache *c);          /* after bytes grew; may evict inline */
int cache_evict_to(struct cache *c, uint64_t target); /* evicts LRU until bytes <= target */

/* journal.c */
int cache_journal_recover(struct cache *c);      /* at open: drops uncommitted entries */
int cache_journal_usage(struct cache *c, uint64_t *entries, uint64_t *bytes);
#endif /* BFS_CACHE_INTERNAL */

#endif
