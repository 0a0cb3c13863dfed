/* cache/journal.c — the write-back journal: files written locally and not yet uploaded.
 *
 * Data: <dir>/dirty/<id as %016x>. Record: db "journal", key = id (8 bytes big-endian, so
 * records sort by id), value = struct jrec_head followed by key, base_etag and meta bytes.
 * Ids come from the persistent counter "journal_next" in db "misc", bumped in the same
 * transaction that writes the "created" record, so an id is never reused.
 *
 * Write order (see docs/cache.md): create = record(created) commit, then data file;
 * commit = fdatasync(data), fsync(dirty/), then record(committed) commit;
 * remove = record delete commit, then unlink(data); forget = the record back to "created"
 * in one commit. A crash between any two steps leaves either a committed record with
 * complete data, or garbage that cache_journal_recover deletes at the next open
 * (uncommitted records, data files without a record). */
#include "cache/cache_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

#define JREC_VERSION 1
enum { JREC_CREATED = 0, JREC_COMMITTED = 1 };

/* Record header (version 1), host byte order; the three strings follow, unterminated. */
struct jrec_head {
	uint8_t version;
	uint8_t state;     /* JREC_CREATED or JREC_COMMITTED */
	uint16_t pad;
	uint32_t key_len, etag_len, meta_len;
	uint64_t size;
};

void cache_journal_key(uint64_t id, unsigned char out[8])
{
	for (int i = 7; i >= 0; i--, id >>= 8)
		out[i] = (unsigned char)id;
}

static uint64_t key_id(const MDB_val *k)
{
	const unsigned char *p = k->mv_data;
	uint64_t id = 0;

	for (size_t i = 0; i < 8 && i < k->mv_size; i++)
		id = id << 8 | p[i];
	return id;
}

void cache_dirty_free(struct cache_dirty *d)
{
	if (!d)
		return;
	free(d->key);
	free(d->base_etag);
	free(d->meta);
	d->key = d->base_etag = d->meta = NULL;
}

int cache_dirty_path(struct cache *c, uint64_t id, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/dirty/%016" PRIx64, c->dir, id);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int cache_jrec_decode(const MDB_val *k, const MDB_val *v, struct cache_dirty *d)
{
	struct jrec_head h;
	const char *p = (const char *)v->mv_data + sizeof(h);

	if (v->mv_size < sizeof(h) || k->mv_size != 8)
		return -EBADMSG;
	memcpy(&h, v->mv_data, sizeof(h));
	if (h.version != JREC_VERSION ||
	    (uint64_t)h.key_len + h.etag_len + h.meta_len != v->mv_size - sizeof(h))
		return -EBADMSG;
	if (!d)
		return h.state;
	memset(d, 0, sizeof(*d));
	d->id = key_id(k);
	d->size = h.size;
	d->key = strndup(p, h.key_len);
	d->base_etag = strndup(p + h.key_len, h.etag_len);
	d->meta = strndup(p + h.key_len + h.etag_len, h.meta_len);
	if (!d->key || !d->base_etag || !d->meta) {
		cache_dirty_free(d);
		return -ENOMEM;
	}
	return h.state;
}

int cache_jrec_encode(int state, const struct cache_dirty *d, MDB_val *out)
{
	const char *key = d && d->key ? d->key : "";
	const char *etag = d && d->base_etag ? d->base_etag : "";
	const char *meta = d && d->meta ? d->meta : "";
	struct jrec_head h = { .version = JREC_VERSION, .state = (uint8_t)state };
	size_t kl = strlen(key), el = strlen(etag), ml = strlen(meta);
	char *p;

	if (kl > UINT32_MAX || el > UINT32_MAX || ml > UINT32_MAX)
		return -EINVAL;
	h.key_len = (uint32_t)kl;
	h.etag_len = (uint32_t)el;
	h.meta_len = (uint32_t)ml;
	h.size = d ? d->size : 0;
	out->mv_size = sizeof(h) + kl + el + ml;
	out->mv_data = p = malloc(out->mv_size);
	if (!p)
		return -ENOMEM;
	memcpy(p, &h, sizeof(h));
	memcpy(p + sizeof(h), key, kl);
	memcpy(p + sizeof(h) + kl, etag, el);
	memcpy(p + sizeof(h) + kl + el, meta, ml);
	return 0;
}

/* Allocates an id and writes its "created" record in one transaction. */
static int record_created(struct cache *c, uint64_t *id)
{
	MDB_txn *txn = NULL;
	MDB_val nk = { sizeof("journal_next") - 1, "journal_next" }, v, jk, jv = { 0, NULL };
	unsigned char idk[8];
	uint64_t next = 1;
	int rc;

	if ((rc = cache_mdb_errno(mdb_txn_begin(c->env, NULL, 0, &txn))))
		goto out;
	rc = mdb_get(txn, c->db_misc, &nk, &v);
	if (rc == 0 && v.mv_size == sizeof(next)) {
		memcpy(&next, v.mv_data, sizeof(next));
	} else if (rc != MDB_NOTFOUND) {
		rc = rc ? cache_mdb_errno(rc) : -EBADMSG;
		goto out;
	}
	*id = next++;
	v.mv_size = sizeof(next);
	v.mv_data = &next;
	if ((rc = cache_mdb_errno(mdb_put(txn, c->db_misc, &nk, &v, 0))))
		goto out;
	if ((rc = cache_jrec_encode(JREC_CREATED, NULL, &jv)))
		goto out;
	cache_journal_key(*id, idk);
	jk.mv_size = 8;
	jk.mv_data = idk;
	if ((rc = cache_mdb_errno(mdb_put(txn, c->db_journal, &jk, &jv, 0))))
		goto out;
	rc = cache_mdb_errno(mdb_txn_commit(txn));
	txn = NULL;
out:
	if (txn)
		mdb_txn_abort(txn);
	free(jv.mv_data);
	return rc;
}

/* Deletes the record of id; -ENOENT if there is none. */
static int record_delete(struct cache *c, uint64_t id)
{
	MDB_txn *txn;
	unsigned char idk[8];
	MDB_val k = { 8, idk };
	int rc;

	cache_journal_key(id, idk);
	if ((rc = mdb_txn_begin(c->env, NULL, 0, &txn)))
		return cache_mdb_errno(rc);
	if ((rc = mdb_del(txn, c->db_journal, &k, NULL))) {
		mdb_txn_abort(txn);
		return cache_mdb_errno(rc);
	}
	return cache_mdb_errno(mdb_txn_commit(txn));
}

int cache_dirty_create(struct cache *c, uint64_t *id, int *fd)
{
	char path[4096];
	int rc;

	*fd = -1;
	if (c->rdonly)
		return -EROFS;
	if ((rc = record_created(c, id)))
		goto out;
	if ((rc = cache_dirty_path(c, *id, path, sizeof(path))))
		goto out;
	*fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (*fd < 0) {
		rc = -errno;
		record_delete(c, *id);
	}
out:
	if (rc)
		bfs_log(BFS_LOG_ERR, "cache: cannot create journal entry: %s", strerror(-rc));
	return rc;
}

static int fsync_path(const char *path, int flags, bool data_only)
{
	int fd = open(path, flags | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if ((data_only ? fdatasync(fd) : fsync(fd)) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* Replaces the record of id (which must exist: -ENOENT) with one in state, for d (NULL:
 * no key, as a created record), and deletes the record of drop (0: none; gone already is
 * fine), in one write transaction. */
static int record_replace(struct cache *c, uint64_t id, int state, const struct cache_dirty *d,
			  uint64_t drop)
{
	unsigned char idk[8], dk[8];
	MDB_txn *txn = NULL;
	MDB_val k = { 8, idk }, v, nv = { 0, NULL }, dv = { 8, dk };
	int rc;

	if ((rc = cache_jrec_encode(state, d, &nv)))
		goto out;
	cache_journal_key(id, idk);
	if ((rc = cache_mdb_errno(mdb_txn_begin(c->env, NULL, 0, &txn))))
		goto out;
	if ((rc = cache_mdb_errno(mdb_get(txn, c->db_journal, &k, &v))) ||
	    (rc = cache_mdb_errno(mdb_put(txn, c->db_journal, &k, &nv, 0))))
		goto out;
	if (drop && drop != id) {
		cache_journal_key(drop, dk);
		int mrc = mdb_del(txn, c->db_journal, &dv, NULL);
		if (mrc && mrc != MDB_NOTFOUND) {
			rc = cache_mdb_errno(mrc);
			goto out;
		}
	}
	rc = cache_mdb_errno(mdb_txn_commit(txn));
	txn = NULL;
out:
	if (txn)
		mdb_txn_abort(txn);
	free(nv.mv_data);
	return rc;
}

int cache_dirty_commit(struct cache *c, const struct cache_dirty *d)
{
	return cache_dirty_commit_replacing(c, d, 0);
}

int cache_dirty_commit_replacing(struct cache *c, const struct cache_dirty *d, uint64_t old)
{
	char path[4096];
	int rc;

	if (!d || !d->key)
		return -EINVAL;
	if (c->rdonly)
		return -EROFS;
	/* 1. the data, and its directory entry, reach the disk before the record says so */
	if ((rc = cache_dirty_path(c, d->id, path, sizeof(path))) ||
	    (rc = fsync_path(path, O_RDONLY, true)))
		goto out;
	snprintf(path, sizeof(path), "%s/dirty", c->dir);
	if ((rc = fsync_path(path, O_RDONLY | O_DIRECTORY, false)))
		goto out;
	/* 2. the record, and the one it replaces goes in the same transaction */
	rc = record_replace(c, d->id, JREC_COMMITTED, d, old);
	/* 3. the replaced data file (a crash before this leaves an orphan, removed at open) */
	if (rc == 0 && old && old != d->id && cache_dirty_path(c, old, path, sizeof(path)) == 0)
		unlink(path);
out:
	if (rc)
		bfs_log(BFS_LOG_ERR, "cache: cannot commit journal entry %" PRIu64 " (%s): %s",
			d->id, d->key, strerror(-rc));
	return rc;
}

int cache_dirty_forget(struct cache *c, uint64_t id)
{
	if (c->rdonly)
		return -EROFS;
	int rc = record_replace(c, id, JREC_CREATED, NULL, 0);
	if (rc)
		bfs_log(BFS_LOG_ERR, "cache: cannot withdraw journal entry %" PRIu64 ": %s", id,
			strerror(-rc));
	return rc;
}

int cache_dirty_remove(struct cache *c, uint64_t id)
{
	char path[4096];
	int rc, urc = 0;

	if (c->rdonly)
		return -EROFS;
	if ((rc = cache_dirty_path(c, id, path, sizeof(path))))
		return rc;
	/* record first: a crash before the unlink leaves an orphan file, removed at open */
	rc = record_delete(c, id);
	if (rc && rc != -ENOENT)
		return rc;
	if (unlink(path) < 0)
		urc = -errno;
	return rc == 0 ? 0 : urc == 0 ? 0 : rc;
}

int cache_dirty_list(struct cache *c, struct cache_dirty **out, size_t *n)
{
	struct cache_walk w;
	MDB_val k, v;
	struct cache_dirty *arr = NULL, d;
	size_t cnt = 0, cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = cache_walk_begin(c, MDB_RDONLY, &w)) ||
	    (rc = cache_walk_open(&w, c->db_journal, NULL, 0)))
		goto out;
	while (cache_walk_next(&w, &k, &v)) {
		int st = cache_jrec_decode(&k, &v, &d);
		if (st == -ENOMEM) {
			rc = st;
			goto out;
		}
		if (st < 0) {
			bfs_log(BFS_LOG_WARN, "cache: bad journal record %" PRIu64 " skipped", key_id(&k));
			continue;
		}
		if (st != JREC_COMMITTED) {
			cache_dirty_free(&d);
			continue;
		}
		if (cnt == cap) {
			struct cache_dirty *na = realloc(arr, (cap = cap ? 2 * cap : 16) * sizeof(*arr));
			if (!na) {
				cache_dirty_free(&d);
				rc = -ENOMEM;
				goto out;
			}
			arr = na;
		}
		arr[cnt++] = d;
	}
	if (w.mrc != MDB_NOTFOUND)
		rc = cache_mdb_errno(w.mrc);
out:
	cache_walk_end(&w);
	if (rc) {
		for (size_t i = 0; i < cnt; i++)
			cache_dirty_free(&arr[i]);
		free(arr);
		return rc;
	}
	*out = arr;
	*n = cnt;
	return 0;
}

/* At open: deletes records never committed with their data files, then data files that
 * have no record (a crash during cache_dirty_remove or before a record was written). */
int cache_journal_recover(struct cache *c)
{
	struct cache_walk w;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	char path[4096];
	uint64_t *ids = NULL;
	size_t n = 0, cap = 0, orphans = 0;
	DIR *d = NULL;
	struct dirent *e;
	int rc;

	if ((rc = cache_walk_begin(c, 0, &w)) || (rc = cache_walk_open(&w, c->db_journal, NULL, 0)))
		goto out;
	while (cache_walk_next(&w, &k, &v)) {
		if (cache_jrec_decode(&k, &v, NULL) == JREC_COMMITTED)
			continue;
		if (n == cap) {
			uint64_t *na = realloc(ids, (cap = cap ? 2 * cap : 16) * sizeof(*ids));
			if (!na) {
				rc = -ENOMEM;
				goto out;
			}
			ids = na;
		}
		ids[n++] = key_id(&k);
		if ((rc = cache_mdb_errno(mdb_cursor_del(w.cur, 0))))
			goto out;
	}
	if (w.mrc != MDB_NOTFOUND && (rc = cache_mdb_errno(w.mrc)))
		goto out;
	if ((rc = cache_walk_commit(&w)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		cache_dirty_path(c, ids[i], path, sizeof(path));
		unlink(path);
	}
	if (n)
		bfs_log(BFS_LOG_INFO, "cache: dropped %zu uncommitted journal entries", n);

	snprintf(path, sizeof(path), "%s/dirty", c->dir);
	if (!(d = opendir(path))) {
		rc = -errno;
		goto out;
	}
	if ((rc = cache_mdb_errno(mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))))
		goto out;
	while ((e = readdir(d))) {
		unsigned char idk[8];
		char *end;
		uint64_t id;

		if (e->d_name[0] == '.')
			continue;
		errno = 0;
		id = strtoull(e->d_name, &end, 16);
		if (errno == 0 && *end == '\0' && end - e->d_name == 16) {
			cache_journal_key(id, idk);
			k.mv_size = 8;
			k.mv_data = idk;
			if (mdb_get(txn, c->db_journal, &k, &v) == 0)
				continue;
		}
		if (unlinkat(dirfd(d), e->d_name, 0) == 0)
			orphans++;
	}
	if (orphans)
		bfs_log(BFS_LOG_INFO, "cache: removed %zu journal files without a record", orphans);
out:
	if (d)
		closedir(d);
	cache_walk_end(&w);
	if (txn)
		mdb_txn_abort(txn);
	free(ids);
	return rc;
}

int cache_journal_usage(struct cache *c, uint64_t *entries, uint64_t *bytes)
{
	struct cache_walk w;
	MDB_val k, v;
	char path[4096];
	struct stat st;
	int rc;

	*entries = *bytes = 0;
	if ((rc = cache_walk_begin(c, MDB_RDONLY, &w)) ||
	    (rc = cache_walk_open(&w, c->db_journal, NULL, 0)))
		goto out;
	while (cache_walk_next(&w, &k, &v)) {
		(*entries)++;
		cache_dirty_path(c, key_id(&k), path, sizeof(path));
		if (stat(path, &st) == 0)
			*bytes += (uint64_t)st.st_size;
	}
out:
	cache_walk_end(&w);
	return rc;
}
