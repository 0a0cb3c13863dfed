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

int cache_meta_put(struct cache *c, const char *key, const char *etag,
		   struct timespec last_modified, uint64_t size, const void *blob, size_t bloblen)
{
	unsigned char kb[CACHE_KEYPART_MAX];
	struct meta_head h = { .version = META_VERSION, .mtime_sec = last_modified.tv_sec,
			       .mtime_nsec = last_modified.tv_nsec, .size = size };
	MDB_txn *txn = NULL;
	MDB_val k, v = { 0, NULL };
	size_t el;
	int rc;

	if (!key || !*key || !etag || (bloblen && !blob) || bloblen > UINT32_MAX)
		return -EINVAL;
	if (c->rdonly)
		return -EROFS;
	el = strlen(etag);
	if (el > META_ETAG_MAX)
		return -EINVAL;
	h.etag_len = (uint8_t)el;
	h.blob_len = (uint32_t)bloblen;
	k.mv_size = cache_keypart(kb, key, CACHE_KEYPART_MAX);
	k.mv_data = kb;
	v.mv_size = sizeof(h) + el + bloblen;
	if (!(v.mv_data = malloc(v.mv_size)))
		return -ENOMEM;
	memcpy(v.mv_data, &h, sizeof(h));
	memcpy((char *)v.mv_data + sizeof(h), etag, el);
	if (bloblen)
		memcpy((char *)v.mv_data + sizeof(h) + el, blob, bloblen);
	if ((rc = cache_mdb_errno(mdb_txn_begin(c->env, NULL, 0, &txn))) ||
	    (rc = cache_mdb_errno(mdb_put(txn, c->db_meta, &k, &v, 0))))
		goto out;
	rc = cache_mdb_errno(mdb_txn_commit(txn));
	txn = NULL;
out:
	if (txn)
		mdb_txn_abort(txn);
	free(v.mv_data);
	return rc;
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
