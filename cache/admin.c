/* cache/admin.c — maintenance for bucketfs-cache: verify, prune, clear, and the live stats
 * file <dir>/stats through which a mounted bucketfs tells the tool its hit counters.
 *
 * <dir>/stats (text, one "name value" per line, written to stats.tmp and renamed):
 *   bucketfs-cache-stats 1
 *   pid <pid of the process holding the cache>
 *   since <wall clock seconds when it opened the cache>
 *   written <wall clock seconds of this write>
 *   hits <n>
 *   misses <n> */
#include "cache/cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util/util.h"

/* ---- the live stats file ---- */

void cache_stats_file_write(struct cache *c, bool force)
{
	char path[4096], tmp[4200], buf[512];
	uint64_t hits, misses;
	int fd, n;
	bool ok;

	if (c->flags & (CACHE_OPEN_TOOL | CACHE_OPEN_RDONLY))
		return;
	pthread_mutex_lock(&c->mu);
	hits = c->hits;
	misses = c->misses;
	if (!force && hits == c->stats_hits && misses == c->stats_misses) {
		pthread_mutex_unlock(&c->mu);
		return;
	}
	c->stats_hits = hits;
	c->stats_misses = misses;
	pthread_mutex_unlock(&c->mu);

	n = snprintf(buf, sizeof(buf),
		     "bucketfs-cache-stats 1\npid %ld\nsince %" PRId64 "\nwritten %" PRId64
		     "\nhits %" PRIu64 "\nmisses %" PRIu64 "\n",
		     (long)getpid(), c->opened_s, (int64_t)time(NULL), hits, misses);
	snprintf(path, sizeof(path), "%s/stats", c->dir);
	snprintf(tmp, sizeof(tmp), "%s/stats.tmp", c->dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return; /* advisory only: a full disk must not matter here */
	ok = write(fd, buf, (size_t)n) == n;
	if (close(fd) < 0)
		ok = false;
	if (!ok || rename(tmp, path) < 0)
		unlink(tmp);
}

int cache_live_stats_read(const char *dir, struct cache_live_stats *out)
{
	char path[4096], name[32];
	unsigned long long v;
	unsigned seen = 0;
	FILE *f;

	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), "%s/stats", dir);
	if (!(f = fopen(path, "re")))
		return -errno;
	while (fscanf(f, "%31s %llu", name, &v) == 2) {
		if (!strcmp(name, "bucketfs-cache-stats"))
			seen |= v == 1 ? 1 : 0;
		else if (!strcmp(name, "pid"))
			out->pid = (long)v, seen |= 2;
		else if (!strcmp(name, "since"))
			out->since_s = (int64_t)v, seen |= 4;
		else if (!strcmp(name, "written"))
			out->written_s = (int64_t)v;
		else if (!strcmp(name, "hits"))
			out->hits = v, seen |= 8;
		else if (!strcmp(name, "misses"))
			out->misses = v, seen |= 16;
	}
	fclose(f);
	return seen == 31 ? 0 : -EBADMSG;
}

/* ---- who holds the lock ---- */

long cache_lock_holder(const char *dir)
{
	char path[4096], line[512];
	struct stat st;
	long holder = 0;
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "%s/lock", dir);
	if (stat(path, &st) < 0)
		return 0;
	/* /proc/locks: "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (dev in hex) */
	if ((f = fopen("/proc/locks", "re"))) {
		while (fgets(line, sizeof(line), f)) {
			char kind[16], type[16];
			long pid;
			unsigned maj, min;
			unsigned long long ino;

			if (strstr(line, "->")) /* a waiter, not the holder */
				continue;
			if (sscanf(line, "%*s %15s %*s %15s %ld %x:%x:%llu", kind, type, &pid, &maj,
				   &min, &ino) != 6)
				continue;
			if (!strcmp(kind, "FLOCK") && ino == (unsigned long long)st.st_ino &&
			    maj == major(st.st_dev) && min == minor(st.st_dev)) {
				holder = pid;
				break;
			}
		}
		fclose(f);
		return holder;
	}
	/* no /proc: probe with a shared lock (released at once) */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_SH | LOCK_NB) < 0)
		holder = errno == EWOULDBLOCK ? -1 : 0;
	close(fd);
	return holder;
}

int cache_set_owner(struct cache *c, const char *text)
{
	if (c->lock_fd < 0)
		return -EROFS;
	size_t n = strlen(text);
	if (ftruncate(c->lock_fd, 0) < 0 || pwrite(c->lock_fd, text, n, 0) != (ssize_t)n)
		return -errno;
	return 0;
}

int cache_owner_read(const char *dir, char *buf, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/lock", dir);
	buf[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	ssize_t n = pread(fd, buf, len - 1, 0);
	int rc = n < 0 ? -errno : 0;
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	return rc;
}

/* ---- verify ---- */

struct vblock {
	unsigned char *key; /* owned */
	size_t klen;
	uint64_t fid;
	uint32_t len, crc;
};

/* Printable form of a key or ETag part of an index key: itself, or "sha256:<hex>". */
static char *part_str(const unsigned char *p, size_t n)
{
	char *s;

	if (n > 0 && p[0] == 0xff) {
		if (asprintf(&s, "sha256:%.*s", (int)(n - 1), (const char *)p + 1) < 0)
			return NULL;
		return s;
	}
	return strndup((const char *)p, n);
}

/* Splits an index key "keypart\0etagpart\0<8-byte block number>". */
static void report_block(const struct vblock *b, const char *path, const char *problem,
			 bool dropped, cache_bad_fn bad, void *arg)
{
	const unsigned char *k = b->key, *z1, *z2;
	struct cache_bad r = { .path = path, .problem = problem, .dropped = dropped,
			       .blkno = UINT64_MAX };
	char *key = NULL, *etag = NULL;

	z1 = memchr(k, 0, b->klen);
	z2 = z1 ? memchr(z1 + 1, 0, b->klen - (size_t)(z1 + 1 - k)) : NULL;
	if (z1 && z2 && (size_t)(z2 + 1 - k) + 8 == b->klen) {
		key = part_str(k, (size_t)(z1 - k));
		etag = part_str(z1 + 1, (size_t)(z2 - z1 - 1));
		r.blkno = 0;
		for (int i = 1; i <= 8; i++)
			r.blkno = r.blkno << 8 | z2[i];
	}
	r.key = key ? key : "?";
	r.etag = etag ? etag : "?";
	if (bad)
		bad(arg, &r);
	free(key);
	free(etag);
}

static int collect_blocks(struct cache *c, struct vblock **out, size_t *n)
{
	struct cache_walk w;
	MDB_val k, v;
	struct cache_blkrec r;
	size_t cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = cache_walk_begin(c, MDB_RDONLY, &w)) ||
	    (rc = cache_walk_open(&w, c->db_blocks, NULL, 0)))
		goto out;
	while (cache_walk_next(&w, &k, &v)) {
		struct vblock *b;

		if (*n == cap) {
			struct vblock *na = realloc(*out, (cap = cap ? 2 * cap : 256) * sizeof(*na));
			if (!na) {
				rc = -ENOMEM;
				goto out;
			}
			*out = na;
		}
		b = &(*out)[*n];
		memset(b, 0, sizeof(*b));
		if (!(b->key = malloc(k.mv_size))) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(b->key, k.mv_data, k.mv_size);
		b->klen = k.mv_size;
		if (cache_blkrec_decode(&v, &r) == 0) {
			b->fid = r.fid;
			b->len = r.len;
			b->crc = r.crc;
		} else {
			b->fid = UINT64_MAX; /* bad record */
		}
		(*n)++;
	}
	if (w.mrc != MDB_NOTFOUND)
		rc = cache_mdb_errno(w.mrc);
out:
	cache_walk_end(&w);
	return rc;
}

/* Read-only mode, where the mount changes the index under us: is the record of key still
 * there (and, for a block, still pointing at fid; UINT64_MAX: any value)? */
static bool still_there(struct cache *c, MDB_dbi dbi, const unsigned char *key, size_t klen,
			uint64_t fid)
{
	MDB_txn *txn;
	MDB_val k = { klen, (void *)key }, v;
	struct cache_blkrec r;
	bool there = false;

	if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))
		return true; /* cannot tell: report it */
	if (mdb_get(txn, dbi, &k, &v) == 0) {
		there = fid == UINT64_MAX;
		if (!there && v.mv_size == sizeof(r)) {
			memcpy(&r, v.mv_data, sizeof(r));
			there = r.fid == fid;
		}
	}
	mdb_txn_abort(txn);
	return there;
}

void cache_set_progress(struct cache *c, cache_progress_fn fn, void *arg)
{
	c->progress = fn;
	c->progress_arg = arg;
}

void cache_progress(struct cache *c, const char *what, uint64_t done, uint64_t total)
{
	if (c->progress && (done == total || done % CACHE_PROGRESS_STEP == 0))
		c->progress(c->progress_arg, what, done, total);
}

int cache_verify(struct cache *c, cache_bad_fn bad, void *arg, uint64_t *checked,
		 uint64_t *nbad)
{
	struct vblock *blks = NULL;
	struct cache_dirty *dirty = NULL;
	size_t n = 0, nd = 0;
	char path[4096];
	void *buf = NULL;
	int rc;

	*checked = *nbad = 0;
	if ((rc = collect_blocks(c, &blks, &n)))
		goto out;
	if (!(buf = malloc(c->block_size))) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct vblock *b = &blks[i];
		const char *problem;
		int brc;

		cache_progress(c, "verify", i, n); /* blocks checked so far */
		if (b->fid == UINT64_MAX) {
			(*nbad)++;
			cache_index_drop(c, b->key, b->klen, UINT64_MAX);
			report_block(b, "-", "unreadable index record", !c->rdonly, bad, arg);
			continue;
		}
		cache_blk_path(c, b->fid, path, sizeof(path));
		(*checked)++;
		if (b->len > c->block_size)
			brc = -EBADMSG;
		else
			brc = cache_blk_read(c, b->fid, buf, b->len, b->crc);
		if (brc == 0)
			continue;
		if (brc == -ENOENT && c->rdonly && !still_there(c, c->db_blocks, b->key, b->klen, b->fid))
			continue; /* evicted or replaced by the mount since the scan: not bad */
		problem = brc == -ENOENT ? "missing" : brc == -EBADMSG ? "checksum or length mismatch"
									: strerror(-brc);
		(*nbad)++;
		cache_index_drop(c, b->key, b->klen, b->fid);
		report_block(b, path, problem, !c->rdonly, bad, arg);
	}

	cache_progress(c, "verify", n, n);
	/* journal entries must have their data; they are reported, never dropped */
	if ((rc = cache_dirty_list(c, &dirty, &nd)))
		goto out;
	for (size_t i = 0; i < nd; i++) {
		struct cache_bad r = { .key = dirty[i].key, .etag = dirty[i].base_etag,
				       .blkno = UINT64_MAX, .path = path,
				       .problem = "journal data file missing", .dropped = false };
		unsigned char idk[8];

		cache_dirty_path(c, dirty[i].id, path, sizeof(path));
		if (access(path, F_OK) == 0)
			continue;
		cache_journal_key(dirty[i].id, idk);
		if (c->rdonly && !still_there(c, c->db_journal, idk, 8, UINT64_MAX))
			continue; /* uploaded and removed by the mount since the listing */
		(*nbad)++;
		if (bad)
			bad(arg, &r);
	}
out:
	for (size_t i = 0; i < n; i++)
		free(blks[i].key);
	free(blks);
	for (size_t i = 0; i < nd; i++)
		cache_dirty_free(&dirty[i]);
	free(dirty);
	free(buf);
	return rc;
}

/* ---- prune, clear ---- */

int cache_prune(struct cache *c, uint64_t to_bytes, int64_t older_than_s, uint64_t *nblocks,
		uint64_t *nbytes)
{
	if (c->rdonly)
		return -EROFS;
	return cache_evict_pass(c, to_bytes, older_than_s, nblocks, nbytes);
}

int cache_clear(struct cache *c, bool discard_dirty)
{
	MDB_txn *txn = NULL;
	struct cache_dirty *dirty = NULL;
	size_t nd = 0;
	int rc;

	if (c->rdonly)
		return -EROFS;
	cache_touch_flush(c);
	if ((rc = cache_mdb_errno(mdb_txn_begin(c->env, NULL, 0, &txn))) ||
	    (rc = cache_mdb_errno(mdb_drop(txn, c->db_blocks, 0))) ||
	    (rc = cache_mdb_errno(mdb_drop(txn, c->db_meta, 0))))
		goto out;
	rc = cache_mdb_errno(mdb_txn_commit(txn));
	txn = NULL;
	if (rc)
		goto out;
	pthread_mutex_lock(&c->mu);
	c->inval_gen++; /* fetches in flight must not store into the emptied index */
	c->blocks = c->bytes = 0;
	pthread_mutex_unlock(&c->mu);
	/* every block file is now without a record: the sweep deletes them all */
	if ((rc = cache_blk_sweep(c, NULL, 0)))
		goto out;
	if (!discard_dirty)
		goto out;
	if ((rc = cache_dirty_list(c, &dirty, &nd)))
		goto out;
	for (size_t i = 0; i < nd; i++) {
		int r = cache_dirty_remove(c, dirty[i].id);
		if (r && !rc)
			rc = r;
		bfs_log(BFS_LOG_INFO, "cache: discarded journal entry %" PRIu64 " (%s, %" PRIu64
			" bytes), never uploaded", dirty[i].id, dirty[i].key, dirty[i].size);
	}
out:
	if (txn)
		mdb_txn_abort(txn);
	for (size_t i = 0; i < nd; i++)
		cache_dirty_free(&dirty[i]);
	free(dirty);
	return rc;
}
