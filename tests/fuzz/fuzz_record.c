/* tests/fuzz/fuzz_record.c — the decoders of what bucketfs keeps on local disk: the record
 * line format (fs/record.c) of journal entries ("bfs1", fs/upload.c), hard-link intents
 * ("bfsL1", fs/link_intent.c) and the metadata index ("bfsm1", fs/ops_dir.c); the journal's
 * LMDB records (cache/journal.c) and the block index's (cache/index.c).
 * Input: one selector byte, then the bytes. Selector % 5: 0-2 a record of each magic,
 * 3 a journal record (8 key bytes, then the value, whose metadata is then decoded as a
 * "bfs1" record the way recovery does), 4 a block index value. */
#include <errno.h>
#include <string.h>

#include "cache/cache_int.h"
#include "fs/fs_int.h"
#include "tests/fuzz/fuzz.h"

#define MAX_FIELDS 6

struct format {
	const char *magic;
	const char *tags[MAX_FIELDS];
	size_t n;
};

/* the magics and field tags the writers use */
static const struct format formats[] = {
	{ "bfs1", { "k", "r", "t", "a" }, 4 },
	{ "bfsL1", { "l", "n", "a1", "r1", "a2", "r2" }, 6 },
	{ "bfsm1", { "ct" }, 1 },
};

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Decodes rec; what decodes encodes back to a record that decodes to the same. */
static void fuzz_fields(const struct format *fm, const char *rec, size_t len)
{
	struct bfs_field f[MAX_FIELDS], g[MAX_FIELDS];
	struct s3_meta m, m2;
	char *again;
	int rc;

	for (size_t i = 0; i < fm->n; i++)
		f[i].tag = g[i].tag = fm->tags[i];
	rc = bfs_record_decode(rec, len, fm->magic, f, fm->n, &m);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	if (rc) {
		for (size_t i = 0; i < fm->n; i++)
			FUZZ_CHECK(f[i].value == NULL);
		FUZZ_CHECK(m.n == 0 && m.kv == NULL);
		return;
	}
	again = bfs_record_encode(fm->magic, f, fm->n, &m);
	if (again) {
		FUZZ_CHECK(strncmp(again, fm->magic, strlen(fm->magic)) == 0);
		rc = bfs_record_decode(again, strlen(again), fm->magic, g, fm->n, &m2);
		FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
		if (rc == 0) {
			for (size_t i = 0; i < fm->n; i++)
				FUZZ_CHECK(same_str(f[i].value, g[i].value));
			FUZZ_CHECK(m2.n == m.n);
			for (size_t i = 0; i < m.n; i++)
				FUZZ_CHECK(same_str(s3_meta_get(&m2, m.kv[i].name), m.kv[i].value));
			bfs_record_fields_free(g, fm->n);
			s3_meta_free(&m2);
		}
		free(again);
	}
	bfs_record_fields_free(f, fm->n);
	s3_meta_free(&m);
}

static void fuzz_journal(const uint8_t *data, size_t size)
{
	MDB_val k = { size < 8 ? size : 8, (void *)data };
	MDB_val v = { size - k.mv_size, (void *)(data + k.mv_size) }, back;
	struct cache_dirty d, d2;
	int st = cache_jrec_decode(&k, &v, &d), st2;

	FUZZ_CHECK(st >= 0 || st == -EBADMSG || st == -ENOMEM);
	/* reading the state only (recovery) agrees */
	FUZZ_CHECK(st == -ENOMEM || cache_jrec_decode(&k, &v, NULL) == st);
	if (st < 0)
		return;
	FUZZ_CHECK(d.key && d.base_etag && d.meta);
	/* recovery reads the metadata as a record of its own */
	fuzz_fields(&formats[bfs_link_intent_is(d.meta) ? 1 : 0], d.meta, strlen(d.meta));
	if (cache_jrec_encode(st, &d, &back) == 0) {
		st2 = cache_jrec_decode(&k, &back, &d2);
		FUZZ_CHECK(st2 == st || st2 == -ENOMEM);
		if (st2 == st) {
			FUZZ_CHECK(strcmp(d.key, d2.key) == 0 && d.size == d2.size && d.id == d2.id);
			FUZZ_CHECK(strcmp(d.base_etag, d2.base_etag) == 0);
			FUZZ_CHECK(strcmp(d.meta, d2.meta) == 0);
			cache_dirty_free(&d2);
		}
		free(back.mv_data);
	}
	cache_dirty_free(&d);
}

static void fuzz_blkrec(const uint8_t *data, size_t size)
{
	MDB_val v = { size, (void *)data };
	struct cache_blkrec r;
	int rc = cache_blkrec_decode(&v, &r);

	FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
	if (rc == 0)
		FUZZ_CHECK(size == sizeof(r) && r.version == CACHE_FORMAT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned sel = data[0] % 5;
	size_t len = size - 1;
	/* an exact copy: the decoders are given a length */
	uint8_t *buf = malloc(len ? len : 1);

	if (!buf)
		return 0;
	memcpy(buf, data + 1, len);
	if (sel < 3)
		fuzz_fields(&formats[sel], (const char *)buf, len);
	else if (sel == 3)
		fuzz_journal(buf, len);
	else
		fuzz_blkrec(buf, len);
	free(buf);
	return 0;
}
