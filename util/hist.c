/* util/hist.c — latency histograms: fixed log-linear buckets of nanoseconds, atomic counters.
 *
 * Bucket b < 8 holds exactly the value b; above, each power of two [2^e, 2^(e+1)) is split
 * into 8 equal sub-buckets, so a bucket is at most 1/8 of its lower bound wide: a quantile
 * read from the buckets is within 12.5% of the true one. Values from 2^42 ns (~73 min) on
 * share the last bucket. */
#include "util/util.h"

static unsigned bucket_of(uint64_t ns)
{
	if (ns < 8)
		return (unsigned)ns;
	unsigned e = 63u - (unsigned)__builtin_clzll(ns); /* 2^e <= ns, e >= 3 */
	unsigned b = (e - 2) * 8 + (unsigned)((ns >> (e - 3)) & 7);
	return b < BFS_HIST_BUCKETS ? b : BFS_HIST_BUCKETS - 1;
}

uint64_t bfs_hist_bucket_low(unsigned b)
{
	if (b < 8)
		return b;
	unsigned e = b / 8 + 2, sub = b % 8;
	return (uint64_t)(8 + sub) << (e - 3);
}

void bfs_hist_add(struct bfs_hist *h, uint64_t ns)
{
	atomic_fetch_add_explicit(&h->bucket[bucket_of(ns)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
	uint64_t max = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
	while (ns > max && !atomic_compare_exchange_weak_explicit(&h->max_ns, &max, ns,
								    memory_order_relaxed,
								    memory_order_relaxed))
		;
}

/* The upper end of the bucket holding the rank-th smallest value (1-based) among counts. */
static uint64_t value_at(const uint64_t *counts, uint64_t rank)
{
	uint64_t seen = 0;
	for (unsigned b = 0; b < BFS_HIST_BUCKETS; b++) {
		seen += counts[b];
		if (seen >= rank)
			return b + 1 < BFS_HIST_BUCKETS ? bfs_hist_bucket_low(b + 1) - 1 : UINT64_MAX;
	}
	return 0;
}

void bfs_hist_summarize(const struct bfs_hist *h, struct bfs_hist_summary *out)
{
	static const double q[3] = { 0.50, 0.90, 0.99 };
	uint64_t counts[BFS_HIST_BUCKETS], n = 0;

	/* buckets first: a value added meanwhile may be in the sum and the max but not here */
	for (unsigned b = 0; b < BFS_HIST_BUCKETS; b++) {
		counts[b] = atomic_load_explicit(&h->bucket[b], memory_order_relaxed);
		n += counts[b];
	}
	out->count = n;
	out->sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
	out->max_ns = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
	uint64_t *dst[3] = { &out->p50_ns, &out->p90_ns, &out->p99_ns };
	for (int i = 0; i < 3; i++) {
		if (n == 0) {
			*dst[i] = 0;
			continue;
		}
		/* the smallest value with at least q of all values at or below it */
		uint64_t rank = (uint64_t)(q[i] * (double)n);
		if ((double)rank < q[i] * (double)n)
			rank++;
		if (rank == 0)
			rank = 1;
		uint64_t v = value_at(counts, rank);
		*dst[i] = v < out->max_ns ? v : out->max_ns; /* never above the largest seen */
	}
}
