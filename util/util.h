/* util/util.h — small helpers shared by every module: logging, time, strings.
 * All functions are thread-safe. */
#ifndef BFS_UTIL_H
#define BFS_UTIL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum bfs_log_level { BFS_LOG_ERR = 3, BFS_LOG_WARN = 4, BFS_LOG_INFO = 6, BFS_LOG_DEBUG = 7 };

/* Where log lines go: stderr while in the foreground, syslog once daemonized.
 * level_max: lines above it are dropped (BFS_LOG_INFO by default, DEBUG with -d). */
void bfs_log_setup(int use_syslog, enum bfs_log_level level_max);

/* "error", "warn", "info" or "debug" into *out: 0, or -EINVAL. */
int bfs_log_level_parse(const char *name, enum bfs_log_level *out);

/* One line per event; never pass secrets or signatures. A trailing newline is added. */
void bfs_log(enum bfs_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* CLOCK_REALTIME / CLOCK_MONOTONIC now, as nanoseconds. */
int64_t bfs_now_ns(void);
int64_t bfs_mono_ns(void);
/* a earlier than b */
bool bfs_ts_before(const struct timespec *a, const struct timespec *b);

/* ---- latency histograms (util/hist.c) ----
 * Log-linear buckets of nanoseconds (8 per power of two: quantiles within 12.5%), updated
 * with relaxed atomics: any thread may add or summarize at any time, without a lock.
 * Zero-initialised storage is an empty histogram. */
#define BFS_HIST_BUCKETS 320 /* up to 2^42 ns (~73 min); longer ones land in the last bucket */
struct bfs_hist {
	atomic_uint_least64_t bucket[BFS_HIST_BUCKETS];
	atomic_uint_least64_t sum_ns, max_ns;
};
/* What a histogram says: how many values, their sum and largest, and the 50th, 90th and 99th
 * percentiles, each the upper end of the bucket it falls in (capped at max_ns); 0 if empty. */
struct bfs_hist_summary {
	uint64_t count, sum_ns, max_ns, p50_ns, p90_ns, p99_ns;
};
void bfs_hist_add(struct bfs_hist *h, uint64_t ns);
void bfs_hist_summarize(const struct bfs_hist *h, struct bfs_hist_summary *out);
/* The smallest value bucket b holds (b < BFS_HIST_BUCKETS); for tests and docs. */
uint64_t bfs_hist_bucket_low(unsigned b);

/* Percent-encodes s for a URL path or query (RFC 3986 unreserved kept; '/' kept
 * when keep_slash). Returns malloc'd string owned by the caller, or NULL on ENOMEM. */
char *bfs_uri_encode(const char *s, int keep_slash);

/* Decodes %XX escapes (invalid escapes are kept as is); '+' becomes ' ' when plus_is_space.
 * Returns malloc'd string owned by the caller, or NULL on ENOMEM. */
char *bfs_uri_decode(const char *s, int plus_is_space);

/* Hex of n bytes into out (2n+1 bytes). */
void bfs_hex(const unsigned char *in, size_t n, char *out);
/* Decodes exactly 2n hex digits (either case) of s into n bytes: 0, or -EINVAL. */
int bfs_unhex(const char *s, unsigned char *out, size_t n);
/* Value of one hex digit (either case), or -1. */
int bfs_hexval(char c);
/* Trims blanks (and a CR) from both ends of [s, s+*n): returns the new start, *n shrinks. */
const char *bfs_trim(const char *s, size_t *n);

/* Base64 of n bytes into out (4*ceil(n/3)+1 bytes). Returns length written. */
size_t bfs_base64(const unsigned char *in, size_t n, char *out);

/* Decodes base64; returns decoded length or -EINVAL. out needs 3*len/4+3 bytes. */
long bfs_base64_decode(const char *in, size_t len, unsigned char *out);

/* Parses a size like "64M", "10G", "4096". Returns 0 or -EINVAL. */
int bfs_parse_size(const char *s, uint64_t *out);

#endif
