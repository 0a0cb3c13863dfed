/* tests/unit/test_cache_meta.c — the persistent object metadata index (cache/meta.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cache/cache.h"
#include "tests/unit/cache_test_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct fixture {
	char dir[64];
	struct cache *c;
};

static void fx_open(struct fixture *fx)
{
	struct cache_config cfg = { .dir = fx->dir, .size_cap = 1 << 20 };

	assert_int_equal(cache_open(&cfg, &fx->c), 0);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	cache_test_mkdtemp(fx->dir, sizeof(fx->dir), "test_cache_meta");
	fx_open(fx);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	return cache_test_fixture_free(fx, fx->c, fx->dir);
}

static const struct timespec T1 = { 1700000000, 123000000 };

static void test_put_get_match(void **state)
{
	struct fixture *fx = *state;
	void *blob = NULL;
	size_t len = 0;

	assert_int_equal(cache_meta_put(fx->c, "dir/f.txt", "\"abc\"", T1, 42, "mode=644", 8), 0);
	assert_int_equal(cache_meta_get(fx->c, "dir/f.txt", "\"abc\"", T1, 42, &blob, &len), 0);
	assert_int_equal(len, 8);
	assert_string_equal(blob, "mode=644");
	free(blob);
	/* replace */
	assert_int_equal(cache_meta_put(fx->c, "dir/f.txt", "\"abd\"", T1, 43, "x", 1), 0);
	assert_int_equal(cache_meta_get(fx->c, "dir/f.txt", "\"abd\"", T1, 43, &blob, &len), 0);
	assert_int_equal(len, 1);
	free(blob);
	/* empty blob */
	assert_int_equal(cache_meta_put(fx->c, "empty", "e", T1, 0, NULL, 0), 0);
	assert_int_equal(cache_meta_get(fx->c, "empty", "e", T1, 0, &blob, &len), 0);
	assert_int_equal(len, 0);
	free(blob);
}

static void test_changed_is_stale(void **state)
{
	struct fixture *fx = *state;
	struct timespec t2 = T1;
	void *blob = (void *)0x1;
	size_t len = 99;

	assert_int_equal(cache_meta_put(fx->c, "k", "\"e\"", T1, 10, "b", 1), 0);
	assert_int_equal(cache_meta_get(fx->c, "k", "\"f\"", T1, 10, &blob, &len), -ESTALE);
	assert_int_equal(cache_meta_get(fx->c, "k", "\"e\"", T1, 11, &blob, &len), -ESTALE);
	t2.tv_nsec++;
	assert_int_equal(cache_meta_get(fx->c, "k", "\"e\"", t2, 10, &blob, &len), -ESTALE);
	t2 = T1;
	t2.tv_sec++;
	assert_int_equal(cache_meta_get(fx->c, "k", "\"e\"", t2, 10, &blob, &len), -ESTALE);
	assert_int_equal(cache_meta_get(fx->c, "k", "\"e\"x", T1, 10, &blob, &len), -ESTALE);
	assert_ptr_equal(blob, (void *)0x1); /* untouched on failure */
	assert_int_equal(len, 99);
	assert_int_equal(cache_meta_get(fx->c, "nope", "\"e\"", T1, 10, &blob, &len), -ENOENT);
}

static void test_del_and_persistence(void **state)
{
	struct fixture *fx = *state;
	char longkey[1100];
	void *blob;
	size_t len;

	memset(longkey, 'z', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	assert_int_equal(cache_meta_put(fx->c, "a", "e", T1, 1, "A", 1), 0);
	assert_int_equal(cache_meta_put(fx->c, "b", "e", T1, 2, "B", 1), 0);
	assert_int_equal(cache_meta_put(fx->c, longkey, "e", T1, 3, "L", 1), 0);
	assert_int_equal(cache_meta_del(fx->c, "a"), 0);
	assert_int_equal(cache_meta_del(fx->c, "a"), -ENOENT);
	/* survives a remount */
	cache_close(fx->c);
	fx_open(fx);
	assert_int_equal(cache_meta_get(fx->c, "a", "e", T1, 1, &blob, &len), -ENOENT);
	assert_int_equal(cache_meta_get(fx->c, "b", "e", T1, 2, &blob, &len), 0);
	assert_string_equal(blob, "B");
	free(blob);
	assert_int_equal(cache_meta_get(fx->c, longkey, "e", T1, 3, &blob, &len), 0);
	assert_string_equal(blob, "L");
	free(blob);
	longkey[5] = 'y';
	assert_int_equal(cache_meta_get(fx->c, longkey, "e", T1, 3, &blob, &len), -ENOENT);
}

/* Many entries in one call: all stored (and after a reopen); an invalid entry anywhere
 * stores none of them. */
static void test_put_many(void **state)
{
	struct fixture *fx = *state;
	struct cache_meta_rec r[50];
	char keys[50][16], blobs[50][16];
	void *blob = NULL;
	size_t len = 0;

	for (int i = 0; i < 50; i++) {
		snprintf(keys[i], sizeof(keys[i]), "d/f%02d", i);
		snprintf(blobs[i], sizeof(blobs[i]), "mode=%d", 600 + i);
		r[i] = (struct cache_meta_rec){ .key = keys[i], .etag = "\"e\"", .last_modified = T1,
						.size = (uint64_t)i, .blob = blobs[i],
						.bloblen = strlen(blobs[i]) };
	}
	r[49].etag = NULL;
	assert_int_equal(cache_meta_put_many(fx->c, r, 50), -EINVAL);
	assert_int_equal(cache_meta_get(fx->c, "d/f00", "\"e\"", T1, 0, &blob, &len), -ENOENT);
	r[49].etag = "\"e\"";
	assert_int_equal(cache_meta_put_many(fx->c, r, 50), 0);
	assert_int_equal(cache_meta_put_many(fx->c, r, 0), 0);
	cache_close(fx->c);
	fx_open(fx);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(cache_meta_get(fx->c, keys[i], "\"e\"", T1, (uint64_t)i, &blob, &len), 0);
		assert_int_equal(len, strlen(blobs[i]));
		assert_memory_equal(blob, blobs[i], len);
		free(blob);
	}
	struct cache_stats st;
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.meta_entries, 50);
}

static void test_invalid_args(void **state)
{
	struct fixture *fx = *state;
	char etag[300];

	memset(etag, 'e', sizeof(etag) - 1);
	etag[sizeof(etag) - 1] = '\0';
	assert_int_equal(cache_meta_put(fx->c, "k", etag, T1, 1, "x", 1), -EINVAL);
	assert_int_equal(cache_meta_put(fx->c, "", "e", T1, 1, "x", 1), -EINVAL);
	assert_int_equal(cache_meta_put(fx->c, "k", NULL, T1, 1, "x", 1), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get_match, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_is_stale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_del_and_persistence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_args, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
