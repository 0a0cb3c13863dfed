/* util/time.c — clocks as nanoseconds. */
#include "util/util.h"

#include <time.h>

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t bfs_now_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

bool bfs_ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int64_t bfs_mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}
