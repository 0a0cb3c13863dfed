/* tests/unit/test_cache_journal.c — the write-back journal (cache/journal.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cache/cache.h"
#include "tests/unit/cache_test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
	char dir[64];
	struct cache *c;
};

static void reopen(struct fixture *fx)
{
	struct cache_config cfg = { .dir = fx->dir, .block_size = 4096, .size_cap = 1 << 20 };

	cache_close(fx->c);
	fx->c = NULL;
	assert_int_equal(cache_open(&cfg, &fx->c), 0);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	cache_test_mkdtemp(fx->dir, sizeof(fx->dir), "test_cache_journal");
	reopen(fx);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	return cache_test_fixture_free(fx, fx->c, fx->dir);
}

static uint64_t create_with(struct cache *c, const char *data)
{
	uint64_t id;
	int fd;

	assert_int_equal(cache_dirty_create(c, &id, &fd), 0);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
	return id;
}

static void commit(struct cache *c, uint64_t id, const char *key, const char *etag,
		   const char *meta, uint64_t size)
{
	struct cache_dirty d = { .id = id, .key = (char *)key, .base_etag = (char *)etag,
				 .meta = (char *)meta, .size = size };

	assert_int_equal(cache_dirty_commit(c, &d), 0);
}

static void test_create_commit_list_remove(void **state)
{
	struct fixture *fx = *state;
	struct cache_dirty *l;
	struct cache_stats st;
	char path[4096];
	size_t n;
	uint64_t a, b;

	a = create_with(fx->c, "hello");
	b = create_with(fx->c, "world!");
	assert_true(b > a);
	assert_int_equal(cache_dirty_path(fx->c, a, path, sizeof(path)), 0);
	assert_int_equal(access(path, F_OK), 0);

	/* created but not committed: not listed */
	assert_int_equal(cache_dirty_list(fx->c, &l, &n), 0);
	assert_int_equal(n, 0);
	assert_null(l);

	commit(fx->c, a, "dir/a.txt", "\"etag-a\"", "{\"mode\":420}", 5);
	commit(fx->c, b, "b.bin", NULL, NULL, 6);
	/* a second commit of the same id (after a rename) wins */
	commit(fx->c, a, "dir/renamed.txt", "\"etag-a\"", "{\"mode\":384}", 5);
	assert_int_equal(cache_dirty_list(fx->c, &l, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(l[0].id, a);
	assert_string_equal(l[0].key, "dir/renamed.txt");
	assert_string_equal(l[0].base_etag, "\"etag-a\"");
	assert_string_equal(l[0].meta, "{\"mode\":384}");
	assert_int_equal(l[0].size, 5);
	assert_int_equal(l[1].id, b);
	assert_string_equal(l[1].key, "b.bin");
	assert_string_equal(l[1].base_etag, "");
	assert_string_equal(l[1].meta, "");
	for (size_t i = 0; i < n; i++)
		cache_dirty_free(&l[i]);
	free(l);

	cache_stats_get(fx->c, &st);
	assert_int_equal(st.dirty_entries, 2);
	assert_int_equal(st.dirty_bytes, 11);

	assert_int_equal(cache_dirty_remove(fx->c, a), 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(cache_dirty_remove(fx->c, a), -ENOENT);
	assert_int_equal(cache_dirty_list(fx->c, &l, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(l[0].id, b);
	cache_dirty_free(&l[0]);
	free(l);
}

static void test_commit_unknown_id(void **state)
{
	struct fixture *fx = *state;
	struct cache_dirty d = { .id = 999, .key = "x" };

	assert_int_equal(cache_dirty_commit(fx->c, &d), -ENOENT);
	d.key = NULL;
	assert_int_equal(cache_dirty_commit(fx->c, &d), -EINVAL);
}

/* Closing without removing is what a crash leaves behind (every commit is durable when it
 * returns). Committed entries come back with their data; uncommitted ones and stray files
 * are cleaned; ids are not reused. */
static void test_recovery_after_reopen(void **state)
{
	struct fixture *fx = *state;
	struct cache_dirty *l;
	char path[4096], buf[16] = { 0 }, stray[4096];
	size_t n;
	uint64_t a, b, c2;
	int fd;

	a = create_with(fx->c, "committed");
	commit(fx->c, a, "k1", "\"e1\"", "m1", 9);
	b = create_with(fx->c, "never committed");
	assert_int_equal(cache_dirty_path(fx->c, b, path, sizeof(path)), 0);
	snprintf(stray, sizeof(stray), "%s/dirty/00000000000000ff", fx->dir);
	fd = open(stray, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);

	reopen(fx);

	assert_int_equal(access(path, F_OK), -1); /* uncommitted data file deleted */
	assert_int_equal(access(stray, F_OK), -1);
	assert_int_equal(cache_dirty_list(fx->c, &l, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(l[0].id, a);
	assert_string_equal(l[0].key, "k1");
	assert_string_equal(l[0].meta, "m1");
	assert_int_equal(cache_dirty_path(fx->c, a, path, sizeof(path)), 0);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 9);
	close(fd);
	assert_string_equal(buf, "committed");
	cache_dirty_free(&l[0]);
	free(l);

	c2 = create_with(fx->c, "x");
	assert_true(c2 > b); /* the counter survived the reopen */
}

/* A changed copy of a committed entry replaces it at its commit: before, only the old one
 * is recovered (the copy is uncommitted); after, only the copy, and the old data file is
 * gone. Another entry is left alone. */
static void test_commit_replacing(void **state)
{
	struct fixture *fx = *state;
	struct cache_dirty *l;
	char path[4096];
	size_t n;
	uint64_t a, b, other;

	a = create_with(fx->c, "closed");
	commit(fx->c, a, "k", "\"e1\"", "m1", 6);
	other = create_with(fx->c, "other");
	commit(fx->c, other, "o", NULL, NULL, 5);
	b = create_with(fx->c, "closed, then changed");

	assert_int_equal(cache_dirty_list(fx->c, &l, &n), 0);
	assert_int_equal(n, 2); /* a and other: b is not committed yet */
	for (size_t i = 0; i < n; i++) {
		assert_true(l[i].id == a || l[i].id == other);
		cache_dirty_free(&l[i]);
	}
	free(l);

	struct cache_dirty d = { .id = b, .key = "k", .base_etag = "\"e1\"", .meta = "m2",
				 .size = 20 };
	assert_int_equal(cache_dirty_commit_replacing(fx->c, &d, a), 0);
	assert_int_equal(cache_dirty_path(fx->c, a, path, sizeof(path)), 0);
	assert_int_equal(access(path, F_OK), -1); /* the old data file went with its record */

	reopen(fx);
	assert_int_equal(cache_dirty_list(fx->c, &l, &n), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		assert_true(l[i].id == b || l[i].id == other);
		if (l[i].id == b) {
			assert_string_equal(l[i].meta, "m2");
			assert_int_equal(l[i].size, 20);
		}
		cache_dirty_free(&l[i]);
	}
	free(l);
	/* replacing an entry that is gone already is fine */
	d.meta = "m3";
	assert_int_equal(cache_dirty_commit_replacing(fx->c, &d, a), 0);
}

/* An entry withdrawn (its file removed while still open) is listed no more, its data stays
 * readable until cache_dirty_remove, and a crash before that leaves nothing to recover. */
static void test_forget(void **state)
{
	struct fixture *fx = *state;
	struct cache_dirty *l;
	char path[4096], buf[16] = { 0 };
	size_t n;
	uint64_t a, b;
	int fd;

	a = create_with(fx->c, "withdrawn");
	commit(fx->c, a, "gone", "\"e1\"", "m1", 9);
	b = create_with(fx->c, "kept");
	commit(fx->c, b, "kept", NULL, NULL, 4);
	assert_int_equal(cache_dirty_path(fx->c, a, path, sizeof(path)), 0);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);

	assert_int_equal(cache_dirty_forget(fx->c, a), 0);
	assert_int_equal(cache_dirty_forget(fx->c, 999), -ENOENT);
	assert_int_equal(cache_dirty_list(fx->c, &l, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(l[0].id, b);
	cache_dirty_free(&l[0]);
	free(l);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), 9);
	assert_string_equal(buf, "withdrawn");
	close(fd);

	reopen(fx); /* the crash */
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(cache_dirty_list(fx->c, &l, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(l[0].id, b);
	cache_dirty_free(&l[0]);
	free(l);

	/* without the crash, the last close removes it as any other */
	a = create_with(fx->c, "again");
	commit(fx->c, a, "gone", NULL, NULL, 5);
	assert_int_equal(cache_dirty_forget(fx->c, a), 0);
	assert_int_equal(cache_dirty_path(fx->c, a, path, sizeof(path)), 0);
	assert_int_equal(cache_dirty_remove(fx->c, a), 0);
	assert_int_equal(access(path, F_OK), -1);
}

struct creator {
	struct cache *c;
	uint64_t ids[50];
	int rc;
};

static void *creator_main(void *arg)
{
	struct creator *cr = arg;

	for (int i = 0; i < 50 && cr->rc == 0; i++) {
		int fd;
		cr->rc = cache_dirty_create(cr->c, &cr->ids[i], &fd);
		if (cr->rc == 0)
			close(fd);
	}
	return NULL;
}

static int cmp_id(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_concurrent_create_unique_ids(void **state)
{
	struct fixture *fx = *state;
	struct creator cr[4];
	pthread_t t[4];
	uint64_t all[200];

	for (int i = 0; i < 4; i++) {
		cr[i] = (struct creator){ .c = fx->c };
		assert_int_equal(pthread_create(&t[i], NULL, creator_main, &cr[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(cr[i].rc, 0);
		memcpy(all + 50 * i, cr[i].ids, sizeof(cr[i].ids));
	}
	qsort(all, 200, sizeof(all[0]), cmp_id);
	for (int i = 1; i < 200; i++)
		assert_true(all[i] > all[i - 1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_commit_list_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_unknown_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recovery_after_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_replacing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_create_unique_ids, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
