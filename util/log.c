/* util/log.c — bfs_log: one line per event to stderr (foreground) or syslog (daemon). */
#include "util/util.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

/* Set once at start-up by bfs_log_setup; read by every thread (atomics, no lock). */
static atomic_int log_syslog;
static atomic_int log_level_max = BFS_LOG_INFO;

void bfs_log_setup(int use_syslog, enum bfs_log_level level_max)
{
	if (use_syslog)
		openlog("bucketfs", LOG_PID, LOG_DAEMON);
	atomic_store(&log_syslog, use_syslog ? 1 : 0);
	atomic_store(&log_level_max, (int)level_max);
}

int bfs_log_level_parse(const char *name, enum bfs_log_level *out)
{
	static const struct { const char *name; enum bfs_log_level level; } levels[] = {
		{ "error", BFS_LOG_ERR }, { "warn", BFS_LOG_WARN }, { "warning", BFS_LOG_WARN },
		{ "info", BFS_LOG_INFO }, { "debug", BFS_LOG_DEBUG },
	};
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (strcmp(name, levels[i].name) == 0) {
			*out = levels[i].level;
			return 0;
		}
	return -EINVAL;
}

static const char *level_name(enum bfs_log_level level)
{
	switch (level) {
	case BFS_LOG_ERR: return "error";
	case BFS_LOG_WARN: return "warning";
	case BFS_LOG_INFO: return "info";
	case BFS_LOG_DEBUG: return "debug";
	}
	return "log";
}

void bfs_log(enum bfs_log_level level, const char *fmt, ...)
{
	char line[8192]; /* an S3 message with a 1024-byte key fits whole */
	va_list ap;

	if ((int)level > atomic_load(&log_level_max))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One event, one line: embedded newlines would split it. */
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';

	if (atomic_load(&log_syslog)) {
		syslog((int)level, "%s", line);
		return;
	}
	struct timespec ts;
	struct tm tm;
	char stamp[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	/* A single fprintf keeps lines from different threads whole (stdio locks the stream). */
	fprintf(stderr, "%s.%03ld bucketfs %s: %s\n", stamp, ts.tv_nsec / 1000000L,
		level_name(level), line);
}
