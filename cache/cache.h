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
	unsigned flags;        /* CACHE_OPEN_*; 0 for the file system */
};

/* Maintenance open by a tool (bucketfs-cache): the cache must already exist (-ENOENT if
 * not); the block size it was created with is kept (block_size is ignored); no size cap is
 * enforced (size_cap is ignored), no eviction thread runs and no stats file is written.
 * Takes the lock like a normal open (-EBUSY while a mount holds the cache). */
#define CACHE_OPEN_TOOL 0x1u
/* Read-only inspection, implies CACHE_OPEN_TOOL: takes no lock, so it works while a mount
 * holds the cache; opens LMDB with MDB_RDONLY and never writes anything (LMDB's reader
 * table in index/lock.mdb aside). Only cache_stats_get, cache_verify, cache_dirty_list and
 * cache_meta_get may be used; every call that would write returns -EROFS (cache_invalidate
 * does nothing). */
#define CACHE_OPEN_RDONLY 0x2u

/* Opens (creating if needed) the cache in cfg->dir; only one process may hold a cache_dir:
 * a second open returns -EBUSY (a lock file, <dir>/lock, held with flock; a second open in
 * the same process is refused too). At open, journal entries never committed and block
 * files the index does not know are deleted. Starts the background eviction thread, which
 * also writes <dir>/stats (see cache_live_stats_read) every 2 seconds
 * while the counters change, and at close. cfg->flags: see CACHE_OPEN_*.
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
 * read (short only at end of object) or -errno. Every cached block's CRC32C is checked
 * whenever it is read from disk (the last 16 MiB of verified blocks are also kept in memory,
 * so the FUSE reads within one block read its file once); a bad block is dropped and
 * fetched again. If the cache disk is full the read
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

/* Readahead of a run: blocks [blk, blk+nblk) (nblk at most CACHE_RUN_MAX) of the version,
 * skipping those at the start that are cached or in flight and ending before the next one
 * that is, fetched with one call of src->fetch (one ranged GET instead of one per block),
 * then stored with one index commit; readers waiting for any of them share it. Returns the
 * number of blocks fetched (0: nothing to fetch), or -errno. Thread-safe; no lock held
 * across the fetch. Memory: the run is fetched into runbuf (the caller's, runbuf_len bytes,
 * reused from run to run) if it fits, else into a buffer of its own. */
#define CACHE_RUN_MAX 64
int cache_prefetch_run(struct cache *c, const char *key, const char *etag, uint64_t obj_size,
		       uint64_t blk, unsigned nblk, const struct cache_source *src, void *runbuf,
		       size_t runbuf_len);
/* The cache's block size in bytes. */
uint64_t cache_block_size(const struct cache *c);

/* Drops every cached block of key (all versions). Fetches in flight when it is called are
 * not stored. Does not touch the metadata index (see cache_meta_del). */
void cache_invalidate(struct cache *c, const char *key);

/* Counters: blocks/bytes are the clean blocks on disk; hits/misses count blocks served from
 * disk / blocks that needed a fetch (waiters on a shared fetch count as misses) since open;
 * dirty_* are the journal entries (committed or not) and their data file sizes;
 * meta_entries the entries of the metadata index; block_size the cache's block size. */
struct cache_stats {
	uint64_t blocks, bytes, dirty_entries, dirty_bytes, hits, misses;
	uint64_t meta_entries, block_size;
};
void cache_stats_get(struct cache *c, struct cache_stats *out);

/* What the process holding a cache wrote to <dir>/stats: its pid, when it opened the cache
 * (wall clock seconds), its hits and misses since then, and when it wrote the file. */
struct cache_live_stats {
	long pid;
	int64_t since_s, written_s;
	uint64_t hits, misses;
};
/* Reads <dir>/stats. Needs no open cache. Returns 0, -ENOENT (no file), -EBADMSG. */
int cache_live_stats_read(const char *dir, struct cache_live_stats *out);

/* ---- maintenance (bucketfs-cache) ---- */

/* Who holds the cache in dir (flock on <dir>/lock), without taking the lock: the holder's
 * pid (from /proc/locks), -1 if held by an unknown process, 0 if free or no cache there. */
long cache_lock_holder(const char *dir);

/* The holder's own words on what it does with the cache (e.g. "mounted /mnt/x"), kept in
 * <dir>/lock for cache_owner_read by other processes. Replaces what was there. 0 or -errno;
 * -EROFS on a read-only open. */
int cache_set_owner(struct cache *c, const char *text);
/* What the holder of the cache in dir last said with cache_set_owner, NUL-terminated (cut
 * to len - 1 bytes); "" if nothing. Needs no open cache. 0 or -errno. */
int cache_owner_read(const char *dir, char *buf, size_t len);

/* A damaged block found by cache_verify, or a journal entry whose data file is missing
 * (blkno = UINT64_MAX then). Strings owned by cache_verify, valid during the callback;
 * key/etag are the index forms ("sha256:<hex>" for a hashed long key). */
struct cache_bad {
	const char *key, *etag;
	uint64_t blkno;
	const char *path;      /* the block (or journal data) file */
	const char *problem;   /* "checksum mismatch", "missing", "wrong length", ... */
	bool dropped;          /* the record and file were deleted (not in read-only mode) */
};
typedef void (*cache_bad_fn)(void *arg, const struct cache_bad *bad);

/* Progress of a long cache_verify or cache_prune (what: "verify" or "prune"): done of total
 * blocks, called from the calling thread when done is a multiple of CACHE_PROGRESS_STEP
 * (0 first) and once with done == total at the end. */
#define CACHE_PROGRESS_STEP 256
typedef void (*cache_progress_fn)(void *arg, const char *what, uint64_t done, uint64_t total);
/* Sets the progress callback of c's later verify and prune calls (fn NULL: none). Not
 * thread-safe: set it before those calls, from the thread that makes them. */
void cache_set_progress(struct cache *c, cache_progress_fn fn, void *arg);

/* Reads every block file and checks its length and CRC32C; calls bad (may be NULL) for each
 * damaged one and, unless the cache is read-only, drops it (it is fetched again when next
 * read). Also checks that every journal entry has its data file (never dropped: journal
 * data is only removed by uploads or cache_clear(discard_dirty)). *checked: blocks read;
 * *nbad: damaged blocks plus journal entries without data. Returns 0 or -errno. */
int cache_verify(struct cache *c, cache_bad_fn bad, void *arg, uint64_t *checked,
		 uint64_t *nbad);

/* Drops clean blocks: the least recently used while their bytes exceed to_bytes
 * (UINT64_MAX: no size target), and every block last used before older_than_s (wall clock
 * seconds; INT64_MIN: no age limit; last use is recorded to about a minute). Adds what was
 * dropped to *nblocks and *nbytes (may be NULL). Journal data is never touched. -EROFS if
 * read-only. */
int cache_prune(struct cache *c, uint64_t to_bytes, int64_t older_than_s, uint64_t *nblocks,
		uint64_t *nbytes);

/* Drops every clean block and every metadata index entry; with discard_dirty also every
 * journal entry and its data (writes never uploaded are lost). -EROFS if read-only. */
int cache_clear(struct cache *c, bool discard_dirty);

/* ---- persistent object metadata index ----
 * Remembers, per object key, a caller blob (e.g. serialized attributes from a HEAD) together
 * with the (etag, last_modified, size) it was valid for, so a listing after a remount can
 * reuse it for unchanged objects without a HEAD. Survives close/open. Thread-safe. */

/* Stores (replaces) the entry of key. blob is copied. Returns 0, -EINVAL (etag longer than
 * 255 bytes), -ENOSPC if the index is full, or -errno. */
int cache_meta_put(struct cache *c, const char *key, const char *etag,
		   struct timespec last_modified, uint64_t size, const void *blob, size_t bloblen);

/* One entry for cache_meta_put_many (the caller's memory, only read). */
struct cache_meta_rec {
	const char *key, *etag;
	struct timespec last_modified;
	uint64_t size;
	const void *blob;
	size_t bloblen;
};

/* cache_meta_put of n entries in one transaction: one commit (and its fsync) for a
 * listing's worth of HEADs, not one per object. All or nothing; an invalid entry fails the
 * call (-EINVAL) before anything is written. */
int cache_meta_put_many(struct cache *c, const struct cache_meta_rec *r, size_t n);

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

/* The same, and the entry old (a committed one whose data d->id is a changed copy of; 0:
 * none) goes in the same LMDB transaction, its data file after it: at every moment
 * exactly one of the two is what recovery finds. */
int cache_dirty_commit_replacing(struct cache *c, const struct cache_dirty *d, uint64_t old);

/* Drops the record and the data file of id (after a successful upload or a discard). */
int cache_dirty_remove(struct cache *c, uint64_t id);

/* Withdraws the record of id: it is "created" again, so the next cache_open deletes the
 * entry, while the data file and fds on it stay usable until cache_dirty_remove (a file
 * removed while still open: its data must be readable, never uploaded). -ENOENT if id has
 * no record. */
int cache_dirty_forget(struct cache *c, uint64_t id);

/* Lists the committed entries (for recovery), by increasing id. *out is a malloc'd array
 * the caller frees (cache_dirty_free on each element, then free); NULL when *n is 0. */
int cache_dirty_list(struct cache *c, struct cache_dirty **out, size_t *n);


#endif
