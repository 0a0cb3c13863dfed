/* cache/meta.c — the persistent object metadata index (db "meta").
 *
 * Key: the object key's index form (cache_keypart, hashed if longer than
 * CACHE_KEYPART_MAX). Value (version 1, host byte order): struct meta_head, then the ETag,
 * then the caller's blob. */
#include "cache/cache_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define META_VERSION 1
#define META_ETAG_MAX 255

struct meta_head {
	uint8_t version;
	uint8_t etag_len;
	uint16_t pad;
	uint32_t blob_len;
	int64_t mtime_sec, mtime_nsec;
	uint64_t size;
};

static bool meta_rec_valid(const struct cache_meta_rec *r)
{
	return r->key && *r->key && r->etag && strlen(r->etag) <= META_ETAG_MAX &&
	       (!r->bloblen || r->blob) && r->bloblen <= UINT32_MAX;
}

/* The stored value of r (valid): struct meta_head, the ETag, the blob (malloc'd into *v). */
static int meta_value(const struct cache_meta_rec *r, MDB_val *v)
{
	struct meta_head h = { .version = META_VERSION, .mtime_sec = r->last_modified.tv_sec,
			       .mtime_nsec = r->last_modified.tv_nsec, .size = r->size };
	size_t el = strlen(r->etag);

	h.etag_len = (uint8_t)el;
	h.blob_len = (uint32_t)r->bloblen;
	v->mv_size = sizeof(h) + el + r->bloblen;
	if (!(v->mv_data = malloc(v->mv_size)))
		return -ENOMEM;
	memcpy(v->mv_data, &h, sizeof(h));
	memcpy((char *)v->mv_data + sizeof(h), r->etag, el);
	if (r->bloblen)
		memcpy((char *)v->mv_data + sizeof(h) + el, r->blob, r->bloblen);
	return 0;
}

int cache_meta_put_many(struct cache *c, const struct cache_meta_rec *r, size_t n)
{
	unsigned char kb[CACHE_KEYPART_MAX];
	MDB_txn *txn = NULL;
	MDB_val k, v = { 0, NULL };
	int rc = 0;

	if (n && !r)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) /* nothing is written if one entry is invalid */
		if (!meta_rec_valid(&r[i]))
			return -EINVAL;
	if (c->rdonly)
		return -EROFS;
	if (n == 0)
		return 0;
	if ((rc = cache_mdb_errno(mdb_txn_begin(c->env, NULL, 0, &txn))))
		goto out;
	for (size_t i = 0; i < n; i++) {
		if ((rc = meta_value(&r[i], &v)))
			goto out;
		k.mv_size = cache_keypart(kb, r[i].key, CACHE_KEYPART_MAX);
		k.mv_data = kb;
		rc = cache_mdb_errno(mdb_put(txn, c->db_meta, &k, &v, 0));
		free(v.mv_data);
		v.mv_data = NULL;
		if (rc)
			goto out;
	}
	rc = cache_mdb_errno(mdb_txn_commit(txn));
	txn = NULL;
out:
	if (txn)
		mdb_txn_abort(txn);
	return rc;
}

int cache_meta_put(struct cache *c, const char *key, const char *etag,
		   struct timespec last_modified, uint64_t size, const void *blob, size_t bloblen)
{
	struct cache_meta_rec r = { .key = key, .etag = etag, .last_modified = last_modified,
				    .size = size, .blob = blob, .bloblen = bloblen };

	return cache_meta_put_many(c, &r, 1);
}

int cache_meta_get(struct cache *c, const char *key, const char *etag,
		   struct timespec last_modified, uint64_t size, void **blob, size_t *len)
{
	unsigned char kb[CACHE_KEYPART_MAX];
	struct meta_head h;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	const char *p;
	int rc;

	if (!key || !*key || !etag || !blob || !len)
		return -EINVAL;
	k.mv_size = cache_keypart(kb, key, CACHE_KEYPART_MAX);
	k.mv_data = kb;
	if ((rc = cache_mdb_errno(mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))) ||
	    (rc = cache_mdb_errno(mdb_get(txn, c->db_meta, &k, &v))))
		goto out;
	if (v.mv_size < sizeof(h)) {
		rc = -ESTALE; /* unreadable: as good as changed */
		goto out;
	}
	memcpy(&h, v.mv_data, sizeof(h));
	p = (const char *)v.mv_data + sizeof(h);
	if (h.version != META_VERSION || v.mv_size != sizeof(h) + h.etag_len + h.blob_len ||
	    h.etag_len != strlen(etag) || memcmp(p, etag, h.etag_len) != 0 ||
	    h.mtime_sec != (int64_t)last_modified.tv_sec ||
	    h.mtime_nsec != (int64_t)last_modified.tv_nsec || h.size != size) {
		rc = -ESTALE;
		goto out;
	}
	if (!(*blob = malloc((size_t)h.blob_len + 1))) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(*blob, p + h.etag_len, h.blob_len);
	((char *)*blob)[h.blob_len] = '\0';
	*len = h.blob_len;
out:
	if (txn)
		mdb_txn_abort(txn);
	return rc;
}

int cache_meta_del(struct cache *c, const char *key)
{
	unsigned char kb[CACHE_KEYPART_MAX];
	MDB_txn *txn = NULL;
	MDB_val k;
	int rc;

	if (!key || !*key)
		return -EINVAL;
	if (c->rdonly)
		return -EROFS;
	k.mv_size = cache_keypart(kb, key, CACHE_KEYPART_MAX);
	k.mv_data = kb;
	if ((rc = cache_mdb_errno(mdb_txn_begin(c->env, NULL, 0, &txn))) ||
	    (rc = cache_mdb_errno(mdb_del(txn, c->db_meta, &k, NULL))))
		goto out;
	rc = cache_mdb_errno(mdb_txn_commit(txn));
	txn = NULL;
out:
	if (txn)
		mdb_txn_abort(txn);
	return rc;
}

int cache_meta_count(struct cache *c, uint64_t *n)
{
	MDB_txn *txn = NULL;
	MDB_stat st;
	int rc;

	*n = 0;
	if ((rc = cache_mdb_errno(mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))) ||
	    (rc = cache_mdb_errno(mdb_stat(txn, c->db_meta, &st))))
		goto out;
	*n = st.ms_entries;
out:
	if (txn)
		mdb_txn_abort(txn);
	return rc;
}
