/* tests/unit/test_util_hist.c — util/hist.c: bucket bounds, percentiles, concurrent adds. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/util.h"

static struct bfs_hist *hist_new(void)
{
	struct bfs_hist *h = calloc(1, sizeof(*h));
	assert_non_null(h);
	return h;
}

/* Buckets tile the values without gaps, each at most 1/8 of its lower bound wide. */
static void test_bucket_bounds(void **state)
{
	(void)state;
	for (unsigned b = 0; b < 8; b++)
		assert_int_equal(bfs_hist_bucket_low(b), b);
	assert_int_equal(bfs_hist_bucket_low(8), 8);
	assert_int_equal(bfs_hist_bucket_low(15), 15);
	assert_int_equal(bfs_hist_bucket_low(16), 16);
	assert_int_equal(bfs_hist_bucket_low(17), 18);
	for (unsigned b = 1; b < BFS_HIST_BUCKETS; b++) {
		uint64_t lo = bfs_hist_bucket_low(b - 1), hi = bfs_hist_bucket_low(b);
		assert_true(hi > lo);
		if (b > 8)
			assert_true((hi - lo) * 8 <= lo);
	}
	assert_true(bfs_hist_bucket_low(BFS_HIST_BUCKETS - 1) >= (1ULL << 41));
}

/* Every value's percentile lands in its own bucket: at or above it, within 12.5%. */
static void test_single_values(void **state)
{
	(void)state;
	static const uint64_t values[] = { 0, 1, 7, 8, 9, 15, 16, 17, 1000, 999999, 1000000,
					   123456789, 5000000000ULL };
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		struct bfs_hist *h = hist_new();
		struct bfs_hist_summary s;
		bfs_hist_add(h, values[i]);
		bfs_hist_add(h, values[i]);
		bfs_hist_summarize(h, &s);
		assert_int_equal(s.count, 2);
		assert_int_equal(s.sum_ns, 2 * values[i]);
		assert_int_equal(s.max_ns, values[i]);
		/* capped at the largest value seen: exact here */
		assert_int_equal(s.p50_ns, values[i]);
		assert_int_equal(s.p99_ns, values[i]);
		free(h);
	}
}

static void test_empty(void **state)
{
	(void)state;
	struct bfs_hist *h = hist_new();
	struct bfs_hist_summary s;
	memset(&s, 0xff, sizeof(s));
	bfs_hist_summarize(h, &s);
	assert_int_equal(s.count, 0);
	assert_int_equal(s.sum_ns, 0);
	assert_int_equal(s.max_ns, 0);
	assert_int_equal(s.p50_ns, 0);
	assert_int_equal(s.p90_ns, 0);
	assert_int_equal(s.p99_ns, 0);
	free(h);
}

/* 1 µs .. 1000 µs, one each: p50 ~500 µs, p90 ~900 µs, p99 ~990 µs, each within a bucket. */
static void test_uniform(void **state)
{
	(void)state;
	struct bfs_hist *h = hist_new();
	struct bfs_hist_summary s;
	uint64_t sum = 0;
	/* shuffled order: the result cannot depend on it */
	for (uint64_t i = 0; i < 1000; i++) {
		uint64_t v = ((i * 617) % 1000 + 1) * 1000;
		bfs_hist_add(h, v);
		sum += v;
	}
	bfs_hist_summarize(h, &s);
	assert_int_equal(s.count, 1000);
	assert_int_equal(s.sum_ns, sum);
	assert_int_equal(s.max_ns, 1000000);
	assert_true(s.p50_ns >= 500000 && s.p50_ns <= 500000 * 9 / 8);
	assert_true(s.p90_ns >= 900000 && s.p90_ns <= 900000 * 9 / 8);
	assert_true(s.p99_ns >= 990000 && s.p99_ns <= 1000000);
	assert_true(s.p50_ns <= s.p90_ns && s.p90_ns <= s.p99_ns && s.p99_ns <= s.max_ns);
	free(h);
}

/* The tail: 1 slow call in 100 does not move p99, 2 in 100 do. */
static void test_tail(void **state)
{
	(void)state;
	for (int slow = 1; slow <= 2; slow++) {
		struct bfs_hist *h = hist_new();
		struct bfs_hist_summary s;
		for (int i = 0; i < 100 - slow; i++)
			bfs_hist_add(h, 1000000);          /* 1 ms */
		for (int i = 0; i < slow; i++)
			bfs_hist_add(h, 2000000000);       /* 2 s */
		bfs_hist_summarize(h, &s);
		assert_true(s.p50_ns >= 1000000 && s.p50_ns < 1125000);
		assert_true(s.p90_ns >= 1000000 && s.p90_ns < 1125000);
		if (slow == 1)
			assert_true(s.p99_ns >= 1000000 && s.p99_ns < 1125000);
		else
			assert_int_equal(s.p99_ns, 2000000000);
		assert_int_equal(s.max_ns, 2000000000);
		free(h);
	}
}

/* Past the last bucket: counted there, the max still exact. */
static void test_huge(void **state)
{
	(void)state;
	struct bfs_hist *h = hist_new();
	struct bfs_hist_summary s;
	bfs_hist_add(h, 1ULL << 50);
	bfs_hist_add(h, UINT64_MAX / 4);
	bfs_hist_summarize(h, &s);
	assert_int_equal(s.count, 2);
	assert_int_equal(s.max_ns, UINT64_MAX / 4);
	assert_int_equal(s.p50_ns, UINT64_MAX / 4); /* the last bucket's top, capped at max */
	free(h);
}

#define THREADS 4
#define PER_THREAD 100000

static void *adder(void *arg)
{
	struct bfs_hist *h = arg;
	for (uint64_t i = 0; i < PER_THREAD; i++)
		bfs_hist_add(h, i % 5000 + 1);
	return NULL;
}

/* Lock-free adds from several threads lose nothing. */
static void test_concurrent(void **state)
{
	(void)state;
	struct bfs_hist *h = hist_new();
	struct bfs_hist_summary s;
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, adder, h), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	bfs_hist_summarize(h, &s);
	assert_int_equal(s.count, (uint64_t)THREADS * PER_THREAD);
	uint64_t one = 0;
	for (uint64_t i = 0; i < PER_THREAD; i++)
		one += i % 5000 + 1;
	assert_int_equal(s.sum_ns, THREADS * one);
	assert_int_equal(s.max_ns, 5000);
	assert_true(s.p50_ns >= 2500 && s.p50_ns <= 2500 * 9 / 8);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_bounds),
		cmocka_unit_test(test_single_values),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_uniform),
		cmocka_unit_test(test_tail),
		cmocka_unit_test(test_huge),
		cmocka_unit_test(test_concurrent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
