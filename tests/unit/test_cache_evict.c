/* tests/unit/test_cache_evict.c — eviction: size cap, LRU order, background thread, journal
 * data never evicted (cache/evict.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cache/cache_int.h"
#include "tests/unit/cache_test_util.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BS 4096
#define NBLK 16

static atomic_llong fake_now = 1000;
static int64_t fake_clock(void) { return atomic_load(&fake_now); }

/* One object of NBLK blocks; fetches are counted per block. */
struct src {
	unsigned char data[NBLK * BS];
	atomic_int calls[NBLK];
};

static ssize_t fetch(void *arg, uint64_t off, size_t len, void *buf)
{
	struct src *s = arg;

	atomic_fetch_add(&s->calls[off / BS], 1);
	memcpy(buf, s->data + off, len);
	return (ssize_t)len;
}

struct fixture {
	char dir[64];
	struct cache *c;
	struct src s;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	struct cache_config cfg = { .block_size = BS, .size_cap = 10 * BS };

	cache_test_mkdtemp(fx->dir, sizeof(fx->dir), "test_cache_evict");
	cfg.dir = fx->dir;
	assert_int_equal(cache_open(&cfg, &fx->c), 0);
	fx->c->now = fake_clock;
	for (size_t i = 0; i < sizeof(fx->s.data); i++)
		fx->s.data[i] = (unsigned char)(i * 29 + i / 4096);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	return cache_test_fixture_free(fx, fx->c, fx->dir);
}

static void read_block(struct fixture *fx, int b)
{
	unsigned char buf[BS];

	assert_int_equal(cache_read(fx->c, "obj", "e", sizeof(fx->s.data), (uint64_t)b * BS, BS,
				    buf, fetch, &fx->s), BS);
	assert_memory_equal(buf, fx->s.data + (size_t)b * BS, BS);
}

/* Reads blocks 0..n-1, one second apart. */
static void fill(struct fixture *fx, int from, int to)
{
	for (int b = from; b < to; b++) {
		atomic_fetch_add(&fake_now, 1);
		read_block(fx, b);
	}
}

static bool cached(struct fixture *fx, int b)
{
	int before = fx->s.calls[b];

	read_block(fx, b);
	return fx->s.calls[b] == before;
}

static void test_lru_order(void **state)
{
	struct fixture *fx = *state;
	struct cache_stats st;

	fill(fx, 0, 10); /* exactly at the cap: nothing evicted */
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.blocks, 10);
	/* use blocks 0 and 1 again, late enough to count (CACHE_TOUCH_GRAIN_S); the touches are
	 * still pending in memory when the eviction pass starts */
	atomic_fetch_add(&fake_now, CACHE_TOUCH_GRAIN_S + 1);
	read_block(fx, 0);
	read_block(fx, 1);
	assert_int_equal(fx->s.calls[0], 1);
	/* evict down to 6 blocks: the 4 least recently used go, 2, 3, 4, 5 */
	assert_int_equal(cache_evict_to(fx->c, 6 * BS), 0);
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.blocks, 6);
	assert_int_equal(st.bytes, 6 * BS);
	assert_true(cached(fx, 0));
	assert_true(cached(fx, 1));
	for (int b = 6; b < 10; b++)
		assert_true(cached(fx, b));
	for (int b = 2; b < 6; b++)
		assert_false(cached(fx, b));
}

/* A burst of stores cannot outrun the background thread: a store that finds the cache more
 * than 25% over the cap evicts before returning. */
static void test_far_over_cap_evicts_inline(void **state)
{
	struct fixture *fx = *state;
	unsigned char *buf = malloc(NBLK * BS);
	struct cache_stats st;

	cache_evict_stop(fx->c); /* only the inline path is left to keep the cap */
	assert_int_equal(cache_read(fx->c, "obj", "e", NBLK * BS, 0, NBLK * BS, buf, fetch,
				    &fx->s), NBLK * BS);
	cache_stats_get(fx->c, &st);
	assert_true(st.bytes <= 10 * BS + 10 * BS / 4);
	free(buf);
}

static void test_touch_is_coarse(void **state)
{
	struct fixture *fx = *state;

	fill(fx, 0, 1);
	for (int i = 0; i < 5; i++)
		read_block(fx, 0); /* within the grain: no pending write */
	pthread_mutex_lock(&fx->c->mu);
	assert_int_equal(fx->c->ntouch, 0);
	pthread_mutex_unlock(&fx->c->mu);
	atomic_fetch_add(&fake_now, CACHE_TOUCH_GRAIN_S);
	read_block(fx, 0);
	pthread_mutex_lock(&fx->c->mu);
	assert_int_equal(fx->c->ntouch, 1);
	pthread_mutex_unlock(&fx->c->mu);
}

static void test_background_eviction(void **state)
{
	struct fixture *fx = *state;
	struct cache_stats st;

	fill(fx, 0, 11); /* over the cap but not far: the thread evicts */
	for (int i = 0; i < 500; i++) {
		cache_stats_get(fx->c, &st);
		if (st.bytes <= 10 * BS)
			break;
		usleep(10000);
	}
	assert_true(st.bytes <= 10 * BS);
	assert_int_equal(st.blocks, 9); /* down to 95%: blocks 0 and 1 */
	assert_false(cached(fx, 0));
	/* that read stored block 0 again, evicting (eventually) the next oldest */
	assert_true(cached(fx, 10));
}

static void test_journal_never_evicted(void **state)
{
	struct fixture *fx = *state;
	struct cache_dirty d = { .key = "dirty-file", .size = 3 * BS };
	struct cache_stats st;
	char path[4096];
	struct stat sb;
	int fd;

	assert_int_equal(cache_dirty_create(fx->c, &d.id, &fd), 0);
	assert_int_equal(write(fd, fx->s.data, 3 * BS), 3 * BS);
	close(fd);
	assert_int_equal(cache_dirty_commit(fx->c, &d), 0);
	fill(fx, 0, 13);
	assert_int_equal(cache_evict_to(fx->c, 0), 0);
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.blocks, 0);
	assert_int_equal(st.bytes, 0);
	assert_int_equal(st.dirty_entries, 1);
	assert_int_equal(st.dirty_bytes, 3 * BS);
	assert_int_equal(cache_dirty_path(fx->c, d.id, path, sizeof(path)), 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, 3 * BS);
	/* and the evicted blocks' files are gone from disk */
	for (int b = 0; b < 13; b++)
		assert_false(cached(fx, b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lru_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_far_over_cap_evicts_inline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_touch_is_coarse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_background_eviction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_never_evicted, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
