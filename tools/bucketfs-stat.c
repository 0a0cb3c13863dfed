/* tools/bucketfs-stat.c — live statistics of a bucketfs mount: S3 requests by operation with
 * latency percentiles, bytes, errors and retries, cache hits, data waiting for upload,
 * readahead, FUSE operations. A thin main: the daemon serves the numbers as extended
 * attributes of the mount root (fs/stats.c, docs/stats.md); --json and --prom print those
 * documents as they are, the table is drawn from the Prometheus one. Exit status: 0 ok,
 * 1 the statistics could not be read, 2 usage. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define DOC_MAX 65536 /* the largest extended attribute Linux passes (XATTR_SIZE_MAX) */

static const char help_text[] =
	"usage: bucketfs-stat [--json | --prom] [--watch [SECONDS]] MOUNTPOINT\n"
	"\n"
	"Shows the live statistics of the bucketfs mount at MOUNTPOINT (its root): S3 requests\n"
	"by operation (every attempt, as the server sees them) with errors, retries and latency\n"
	"percentiles, bytes sent and received, cache hits and misses, files and bytes waiting\n"
	"for upload, the readahead window, and FUSE operations with their latency. Counters run\n"
	"from the start of the daemon. Only the user who mounted it and root may read them.\n"
	"\n"
	"  --json             the statistics as JSON (docs/stats.md)\n"
	"  --prom             the statistics in Prometheus' text exposition format\n"
	"  --watch [SECONDS]  refresh in place every SECONDS (default 2) until interrupted\n"
	"  -h, --help         this help\n"
	"\n"
	"Exit status: 0 ok, 1 the statistics could not be read, 2 usage error.\n";

/* ---- the Prometheus document, parsed ---- */

struct sample {
	char name[96];
	char op[48];       /* value of the operation label, "" if none */
	char quantile[8];  /* value of the quantile label, "" if none */
	char labels[1200]; /* every label, unescaped, "k=v" separated by '\n' (bucketfs_info) */
	double value;
};

struct doc {
	struct sample *s;
	size_t n, cap;
};

/* Parses one `name{k="v",...} value` line into out; false if it is not one. */
static bool parse_line(const char *line, struct sample *out)
{
	memset(out, 0, sizeof(*out));
	size_t n = strcspn(line, "{ ");
	if (n == 0 || n >= sizeof(out->name))
		return false;
	memcpy(out->name, line, n);
	const char *p = line + n;
	size_t lo = 0;
	if (*p == '{') {
		p++;
		while (*p && *p != '}') {
			char key[64], val[1024];
			size_t k = strcspn(p, "=");
			if (k == 0 || k >= sizeof(key) || p[k] != '=' || p[k + 1] != '"')
				return false;
			memcpy(key, p, k);
			key[k] = '\0';
			p += k + 2;
			size_t v = 0;
			while (*p && *p != '"') {
				char c = *p++;
				if (c == '\\' && *p) {
					c = *p++;
					if (c == 'n')
						c = '\n';
				}
				if (v + 1 < sizeof(val))
					val[v++] = c;
			}
			val[v] = '\0';
			if (*p++ != '"')
				return false;
			if (*p == ',')
				p++;
			if (strcmp(key, "operation") == 0)
				snprintf(out->op, sizeof(out->op), "%.*s", (int)sizeof(out->op) - 1, val);
			else if (strcmp(key, "quantile") == 0)
				snprintf(out->quantile, sizeof(out->quantile), "%.*s",
					 (int)sizeof(out->quantile) - 1, val);
			int w = snprintf(out->labels + lo, sizeof(out->labels) - lo, "%s=%s\n", key, val);
			if (w > 0 && (size_t)w < sizeof(out->labels) - lo)
				lo += (size_t)w;
		}
		if (*p != '}')
			return false;
		p++;
	}
	char *end;
	out->value = strtod(p, &end);
	return end != p;
}

static int doc_parse(char *text, struct doc *d)
{
	for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#' || !line[0])
			continue;
		if (d->n == d->cap) {
			size_t cap = d->cap ? d->cap * 2 : 256;
			struct sample *s = realloc(d->s, cap * sizeof(*s));
			if (!s)
				return -ENOMEM;
			d->s = s;
			d->cap = cap;
		}
		if (parse_line(line, &d->s[d->n]))
			d->n++;
	}
	return 0;
}

/* The value of name{operation=op,quantile=q} (op, q: "" = no such label); NAN if absent. */
static double get(const struct doc *d, const char *name, const char *op, const char *q)
{
	for (size_t i = 0; i < d->n; i++)
		if (!strcmp(d->s[i].name, name) && !strcmp(d->s[i].op, op) &&
		    !strcmp(d->s[i].quantile, q))
			return d->s[i].value;
	return NAN;
}

static uint64_t getu(const struct doc *d, const char *name, const char *op)
{
	double v = get(d, name, op, "");
	return isnan(v) || v < 0 ? 0 : (uint64_t)v;
}

/* A label of bucketfs_info, into out. */
static void info_label(const struct doc *d, const char *key, char *out, size_t len)
{
	out[0] = '\0';
	for (size_t i = 0; i < d->n; i++) {
		if (strcmp(d->s[i].name, "bucketfs_info"))
			continue;
		size_t k = strlen(key);
		for (const char *l = d->s[i].labels; *l; l += strcspn(l, "\n") + 1) {
			if (!strncmp(l, key, k) && l[k] == '=') {
				snprintf(out, len, "%.*s", (int)strcspn(l + k + 1, "\n"), l + k + 1);
				return;
			}
			if (!l[strcspn(l, "\n")])
				break;
		}
	}
}

/* ---- the table ---- */

static const char *human_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", n);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

static const char *human_secs(double s, char *buf, size_t len)
{
	if (isnan(s))
		snprintf(buf, len, "-");
	else if (s < 1e-3)
		snprintf(buf, len, "%.0fus", s * 1e6);
	else if (s < 1)
		snprintf(buf, len, "%.2fms", s * 1e3);
	else
		snprintf(buf, len, "%.2fs", s);
	return buf;
}

/* One row per operation with a non-zero count of count_name (family: the summary). */
static void op_rows(const struct doc *d, const char *count_name, const char *family,
		    bool s3)
{
	char q[3][32];
	char seen[64][48];
	int nseen = 0;

	for (size_t i = 0; i < d->n; i++) {
		const struct sample *s = &d->s[i];
		if (strcmp(s->name, count_name) || !s->op[0] || s->value <= 0)
			continue;
		bool dup = false;
		for (int k = 0; k < nseen; k++)
			dup |= !strcmp(seen[k], s->op);
		if (dup || nseen == 64)
			continue;
		snprintf(seen[nseen++], sizeof(seen[0]), "%s", s->op);
		human_secs(get(d, family, s->op, "0.5"), q[0], sizeof(q[0]));
		human_secs(get(d, family, s->op, "0.9"), q[1], sizeof(q[1]));
		human_secs(get(d, family, s->op, "0.99"), q[2], sizeof(q[2]));
		if (s3)
			printf("  %-24s %9" PRIu64 " %7" PRIu64 " %7" PRIu64 " %9s %9s %9s\n", s->op,
			       (uint64_t)s->value, getu(d, "bucketfs_s3_errors_total", s->op),
			       getu(d, "bucketfs_s3_retries_total", s->op), q[0], q[1], q[2]);
		else
			printf("  %-24s %9" PRIu64 " %9s %9s %9s\n", s->op, (uint64_t)s->value, q[0],
			       q[1], q[2]);
	}
	if (nseen == 0)
		printf("  (none yet)\n");
}

static void print_table(const struct doc *d)
{
	char mnt[1024], bucket[256], prefix[1024], pid[32], b1[32], b2[32];
	info_label(d, "mountpoint", mnt, sizeof(mnt));
	info_label(d, "bucket", bucket, sizeof(bucket));
	info_label(d, "prefix", prefix, sizeof(prefix));
	info_label(d, "pid", pid, sizeof(pid));
	double up = get(d, "bucketfs_uptime_seconds", "", "");
	uint64_t ups = isnan(up) ? 0 : (uint64_t)up;

	printf("bucketfs %s  bucket %s%s%s  pid %s  up %" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s\n\n",
	       mnt, bucket, prefix[0] ? ":" : "", prefix, pid, ups / 3600, ups / 60 % 60, ups % 60);

	printf("  %-24s %9s %7s %7s %9s %9s %9s\n", "S3 operation", "requests", "errors",
	       "retries", "p50", "p90", "p99");
	op_rows(d, "bucketfs_s3_requests_total", "bucketfs_s3_request_duration_seconds", true);
	uint64_t req = 0, err = 0, retr = 0;
	for (size_t i = 0; i < d->n; i++) {
		uint64_t v = d->s[i].value > 0 ? (uint64_t)d->s[i].value : 0;
		if (!strcmp(d->s[i].name, "bucketfs_s3_requests_total"))
			req += v;
		else if (!strcmp(d->s[i].name, "bucketfs_s3_errors_total"))
			err += v;
		else if (!strcmp(d->s[i].name, "bucketfs_s3_retries_total"))
			retr += v;
	}
	printf("  %-24s %9" PRIu64 " %7" PRIu64 " %7" PRIu64 "\n", "all", req, err, retr);
	printf("  sent %s, received %s\n\n",
	       human_bytes(getu(d, "bucketfs_s3_sent_bytes_total", ""), b1, sizeof(b1)),
	       human_bytes(getu(d, "bucketfs_s3_received_bytes_total", ""), b2, sizeof(b2)));

	uint64_t hits = getu(d, "bucketfs_cache_hits_total", "");
	uint64_t misses = getu(d, "bucketfs_cache_misses_total", "");
	printf("  cache      hits %" PRIu64 ", misses %" PRIu64, hits, misses);
	if (hits + misses)
		printf(" (%.1f%% hits)", 100.0 * (double)hits / (double)(hits + misses));
	printf(", %" PRIu64 " blocks, %s\n", getu(d, "bucketfs_cache_blocks", ""),
	       human_bytes(getu(d, "bucketfs_cache_bytes", ""), b1, sizeof(b1)));
	printf("  upload     %" PRIu64 " dirty files, %s; %" PRIu64 " queued, %" PRIu64
	       " running\n", getu(d, "bucketfs_dirty_entries", ""),
	       human_bytes(getu(d, "bucketfs_dirty_bytes", ""), b1, sizeof(b1)),
	       getu(d, "bucketfs_uploads_queued", ""), getu(d, "bucketfs_uploads_running", ""));
	uint64_t wmax = getu(d, "bucketfs_readahead_window_max_bytes", "");
	if (wmax)
		printf("  readahead  window %s (max %s), %" PRIu64 " blocks queued, %" PRIu64
		       " prefetched\n\n",
		       human_bytes(getu(d, "bucketfs_readahead_window_bytes", ""), b1, sizeof(b1)),
		       human_bytes(wmax, b2, sizeof(b2)),
		       getu(d, "bucketfs_readahead_queued_blocks", ""),
		       getu(d, "bucketfs_readahead_prefetched_blocks_total", ""));
	else
		printf("  readahead  off\n\n");

	printf("  %-24s %9s %9s %9s %9s\n", "FUSE operation", "calls", "p50", "p90", "p99");
	op_rows(d, "bucketfs_fuse_operations_total", "bucketfs_fuse_operation_duration_seconds",
		false);
}

/* ---- reading ---- */

/* The attribute name of mnt into a malloc'd NUL-terminated string; NULL with a message. */
static char *read_doc(const char *mnt, const char *name)
{
	char *buf = malloc(DOC_MAX + 1);
	if (!buf) {
		fprintf(stderr, "bucketfs-stat: out of memory\n");
		return NULL;
	}
	ssize_t n = getxattr(mnt, name, buf, DOC_MAX);
	if (n >= 0) {
		buf[n] = '\0';
		return buf;
	}
	int e = errno;
	free(buf);
	if (e == ENODATA || e == ENOTSUP)
		fprintf(stderr, "bucketfs-stat: %s is not the root of a bucketfs mount (%s)\n", mnt,
			strerror(e));
	else if (e == EACCES || e == EPERM)
		fprintf(stderr, "bucketfs-stat: %s: only the user who mounted it, or root, may "
			"read its statistics\n", mnt);
	else
		fprintf(stderr, "bucketfs-stat: %s: %s\n", mnt, strerror(e));
	return NULL;
}

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

enum format { TABLE, JSON, PROM };

static int show(const char *mnt, enum format f)
{
	char *text = read_doc(mnt, f == JSON ? BFS_STATS_XATTR : BFS_STATS_XATTR_PROM);
	if (!text)
		return EXIT_FAIL;
	int status = 0;
	if (f != TABLE) {
		fputs(text, stdout);
	} else {
		struct doc d = { 0 };
		if (doc_parse(text, &d) == 0) {
			print_table(&d);
		} else {
			fprintf(stderr, "bucketfs-stat: out of memory\n");
			status = EXIT_FAIL;
		}
		free(d.s);
	}
	free(text);
	fflush(stdout);
	return status;
}

static bool parse_interval(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || !(v > 0) || v > 86400)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	enum format f = TABLE;
	const char *mnt = NULL;
	bool watch = false;
	double interval = 2;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(help_text, stdout);
			return 0;
		} else if (!strcmp(a, "--json")) {
			f = JSON;
		} else if (!strcmp(a, "--prom")) {
			f = PROM;
		} else if (!strcmp(a, "--watch")) {
			watch = true;
			if (i + 1 < argc && parse_interval(argv[i + 1], &interval))
				i++;
		} else if (!strncmp(a, "--watch=", 8)) {
			watch = true;
			if (!parse_interval(a + 8, &interval)) {
				fprintf(stderr, "bucketfs-stat: bad interval '%s' (want seconds > 0)\n",
					a + 8);
				return EXIT_USAGE;
			}
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "bucketfs-stat: unknown option '%s' (see --help)\n", a);
			return EXIT_USAGE;
		} else if (!mnt) {
			mnt = a;
		} else {
			fprintf(stderr, "bucketfs-stat: one MOUNTPOINT only (see --help)\n");
			return EXIT_USAGE;
		}
	}
	if (!mnt) {
		fputs(help_text, stderr);
		return EXIT_USAGE;
	}
	if (!watch)
		return show(mnt, f);

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	int status = 0;
	while (!stop) {
		if (isatty(STDOUT_FILENO))
			fputs("\033[H\033[2J", stdout); /* home, clear: redraw in place */
		status = show(mnt, f);
		if (status)
			break;
		struct timespec ts = { (time_t)interval,
				       (long)((interval - (double)(time_t)interval) * 1e9) };
		while (!stop && nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	return status;
}
