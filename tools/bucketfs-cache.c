/* tools/bucketfs-cache.c — inspect and maintain a bucketfs cache directory: stats, verify,
 * prune, clear. A thin main over cache/ (and fs/'s option parser, to find the default
 * cache_dir of BUCKET[:PREFIX]). Exit status: 0 ok, 1 verify found damage, 2 usage or
 * error. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "fs/fs.h"
#include "util/util.h"

#define EXIT_BAD 1
#define EXIT_USAGE 2

static const char help_text[] =
	"NAME\n"
	"    bucketfs-cache - inspect and maintain a bucketfs cache directory\n"
	"\n"
	"SYNOPSIS\n"
	"    bucketfs-cache --cache-dir DIR COMMAND [OPTIONS]\n"
	"    bucketfs-cache BUCKET[:PREFIX] [-o OPTION[,OPTION...]] COMMAND [OPTIONS]\n"
	"\n"
	"DESCRIPTION\n"
	"    A bucketfs cache directory holds clean blocks of objects (re-creatable, evicted\n"
	"    freely), a metadata index, and the write-back journal: data written through the\n"
	"    mount and not uploaded yet. bucketfs-cache never deletes journal data unless told\n"
	"    with --discard-dirty.\n"
	"\n"
	"    The directory is given with --cache-dir, or found the way bucketfs finds it: from\n"
	"    BUCKET[:PREFIX] and the -o options (endpoint=, cache_dir=, ...) and environment\n"
	"    ($AWS_ENDPOINT_URL, $AWS_REGION, $HOME) bucketfs would be mounted with.\n"
	"\n"
	"    While a bucketfs mount uses the cache, stats and verify open it read-only (they\n"
	"    write nothing); prune and clear refuse.\n"
	"\n"
	"COMMANDS\n"
	"    stats   Print, one \"name value\" per line: blocks and bytes of clean blocks,\n"
	"            dirty (journal) entries and bytes, metadata index entries, block size,\n"
	"            and, if mounted, the mount's block hits, misses and hit ratio since it\n"
	"            was mounted.\n"
	"    verify  Read every cached block and check its length and CRC32C; report each bad\n"
	"            one and drop it (it is fetched again when next read). While mounted, bad\n"
	"            blocks are only reported: the mount drops a bad block when it reads it.\n"
	"            Also reports journal entries whose data file is missing.\n"
	"    prune [--older-than DURATION] [--to SIZE]\n"
	"            Drop clean blocks not used for DURATION (e.g. 90s, 30m, 12h, 7d, 2w; a\n"
	"            plain number is seconds; last use is recorded to about a minute), then\n"
	"            least recently used ones until at most SIZE bytes (K, M, G, T: powers of\n"
	"            1024) remain. At least one of the two is required.\n"
	"    clear [--discard-dirty]\n"
	"            Drop every clean block and the metadata index. Journal entries are kept\n"
	"            (and counted) unless --discard-dirty is given: then written data that was\n"
	"            never uploaded is lost.\n"
	"\n"
	"OPTIONS\n"
	"    --cache-dir DIR   the cache directory\n"
	"    -o OPTIONS        bucketfs mount options, used to find the cache directory\n"
	"    --progress        verify and prune: show how far they are on stderr, a line a\n"
	"                      second (on a terminal, one line updated in place, always)\n"
	"    -h, --help        this text\n"
	"\n"
	"EXIT STATUS\n"
	"    0 success; 1 verify found damage; 2 usage error, no cache there, the cache is in\n"
	"    use (prune, clear), or another error (one line on stderr).\n"
	"\n"
	"FILES\n"
	"    DIR/index/  LMDB index     DIR/blocks/  block files     DIR/dirty/  journal data\n"
	"    DIR/stats   hit counters, rewritten every 2 s by the mount holding DIR/lock\n"
	"\n"
	"EXAMPLES\n"
	"    bucketfs-cache --cache-dir ~/.cache/bucketfs/127.0.0.1_9000/photos stats\n"
	"    bucketfs-cache photos -o endpoint=http://127.0.0.1:9000 prune --older-than 7d\n"
	"    bucketfs-cache --cache-dir /var/cache/bucketfs/x/y prune --to 10G\n";

static const char usage_line[] =
	"usage: bucketfs-cache [--cache-dir DIR | BUCKET[:PREFIX] [-o OPTIONS]] "
	"stats|verify|prune|clear [OPTIONS] (see --help)";

static int fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("bucketfs-cache: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

/* "90", "90s", "30m", "12h", "7d", "2w" → seconds. */
static int parse_duration(const char *s, int64_t *out)
{
	char *end;
	unsigned long long v;
	int64_t mult = 1;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0': case 's': break;
	case 'm': mult = 60; break;
	case 'h': mult = 3600; break;
	case 'd': mult = 86400; break;
	case 'w': mult = 7 * 86400; break;
	default: return -EINVAL;
	}
	if (*end && end[1])
		return -EINVAL;
	if (v > (unsigned long long)(INT64_MAX / mult))
		return -EINVAL;
	*out = (int64_t)v * mult;
	return 0;
}

static const char *human(uint64_t n, char *buf, size_t len)
{
	const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", v, unit[i]);
	return buf;
}

/* ---- commands ---- */

static bool pid_alive(long pid)
{
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

static int cmd_stats(struct cache *c, const char *dir, bool in_use)
{
	struct cache_stats st;
	struct cache_live_stats live;
	char h[32], when[64];

	long holder = cache_lock_holder(dir);

	cache_stats_get(c, &st);
	printf("%-14s %s\n", "cache_dir", dir);
	if (in_use && holder > 0)
		printf("%-14s yes (pid %ld holds the cache; opened read-only)\n", "in_use", holder);
	else
		printf("%-14s %s\n", "in_use", in_use ? "yes (opened read-only)" : "no");
	printf("%-14s %" PRIu64 "\n", "block_size", st.block_size);
	printf("%-14s %" PRIu64 "\n", "blocks", st.blocks);
	printf("%-14s %" PRIu64 " (%s)\n", "bytes", st.bytes, human(st.bytes, h, sizeof(h)));
	printf("%-14s %" PRIu64 "\n", "dirty_entries", st.dirty_entries);
	printf("%-14s %" PRIu64 " (%s)\n", "dirty_bytes", st.dirty_bytes,
	       human(st.dirty_bytes, h, sizeof(h)));
	printf("%-14s %" PRIu64 "\n", "meta_entries", st.meta_entries);
	if (in_use && cache_live_stats_read(dir, &live) == 0 && pid_alive(live.pid) &&
	    (holder <= 0 || holder == live.pid)) {
		time_t since = (time_t)live.since_s;
		uint64_t total = live.hits + live.misses;
		struct tm tm;

		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&since, &tm));
		printf("%-14s %" PRIu64 "\n", "hits", live.hits);
		printf("%-14s %" PRIu64 "\n", "misses", live.misses);
		if (total)
			printf("%-14s %.1f%% (blocks, since %s, pid %ld)\n", "hit_ratio",
			       100.0 * (double)live.hits / (double)total, when, live.pid);
		else
			printf("%-14s - (no block read since %s, pid %ld)\n", "hit_ratio", when,
			       live.pid);
	} else if (in_use) {
		printf("%-14s - (the mount has not written %s/stats)\n", "hit_ratio", dir);
	} else {
		printf("%-14s - (not mounted)\n", "hit_ratio");
	}
	return 0;
}

/* Progress of verify and prune on stderr (cache_set_progress): on a terminal one line
 * rewritten in place; with --progress elsewhere a line a second, and the last one. */
struct progress {
	bool tty;
	int64_t last_ns;
};

static void show_progress(void *arg, const char *what, uint64_t done, uint64_t total)
{
	struct progress *p = arg;
	int64_t now = bfs_mono_ns();
	if (done != total && done != 0 && now - p->last_ns < (p->tty ? 100000000 : 1000000000))
		return;
	p->last_ns = now;
	fprintf(stderr, "%s%s: %" PRIu64 "/%" PRIu64 " blocks (%d%%)%s", p->tty ? "\r" : "", what,
		done, total, total ? (int)(done * 100 / total) : 100,
		p->tty && done != total ? "" : "\n");
	fflush(stderr);
}

struct verify_ctx {
	bool rdonly;
};

static void report_bad(void *arg, const struct cache_bad *b)
{
	struct verify_ctx *v = arg;

	(void)v;
	if (b->blkno == UINT64_MAX)
		printf("bad: %s: key %s: %s\n", b->path, b->key, b->problem);
	else
		printf("bad: %s: key %s etag %s block %" PRIu64 ": %s%s\n", b->path, b->key,
		       b->etag, b->blkno, b->problem, b->dropped ? " (dropped)" : "");
}

static int cmd_verify(struct cache *c, bool in_use)
{
	struct verify_ctx v = { .rdonly = in_use };
	uint64_t checked, nbad;
	int rc = cache_verify(c, report_bad, &v, &checked, &nbad);

	if (rc)
		return fail(EXIT_USAGE, "verify failed: %s", strerror(-rc));
	printf("verified %" PRIu64 " blocks: %" PRIu64 " bad%s\n", checked, nbad,
	       nbad && in_use ? " (not dropped: the cache is in use; the mount drops a bad "
				"block when it reads it)" : "");
	return nbad ? EXIT_BAD : 0;
}

static int cmd_prune(struct cache *c, uint64_t to, int64_t older)
{
	uint64_t nb = 0, nbytes = 0;
	struct cache_stats st;
	char h1[32], h2[32];
	int64_t cutoff = older >= 0 ? (int64_t)time(NULL) - older : INT64_MIN;
	int rc = cache_prune(c, to, cutoff, &nb, &nbytes);

	if (rc)
		return fail(EXIT_USAGE, "prune failed: %s", strerror(-rc));
	cache_stats_get(c, &st);
	printf("pruned %" PRIu64 " blocks (%s); %" PRIu64 " blocks (%s) left\n", nb,
	       human(nbytes, h1, sizeof(h1)), st.blocks, human(st.bytes, h2, sizeof(h2)));
	return 0;
}

static int cmd_clear(struct cache *c, bool discard_dirty)
{
	struct cache_stats before, after;
	char h1[32], h2[32];
	int rc;

	cache_stats_get(c, &before);
	rc = cache_clear(c, discard_dirty);
	cache_stats_get(c, &after);
	if (rc)
		return fail(EXIT_USAGE, "clear failed: %s", strerror(-rc));
	printf("cleared %" PRIu64 " blocks (%s) and %" PRIu64 " metadata entries\n",
	       before.blocks, human(before.bytes, h1, sizeof(h1)), before.meta_entries);
	if (discard_dirty)
		printf("discarded %" PRIu64 " dirty entries (%s) that were never uploaded\n",
		       before.dirty_entries - after.dirty_entries,
		       human(before.dirty_bytes - after.dirty_bytes, h2, sizeof(h2)));
	else if (after.dirty_entries)
		printf("kept %" PRIu64 " dirty entries (%s) not yet uploaded; mount to upload "
		       "them, or --discard-dirty to drop them\n", after.dirty_entries,
		       human(after.dirty_bytes, h2, sizeof(h2)));
	return 0;
}

/* ---- main ---- */

/* The cache dir bucketfs would use for BUCKET[:PREFIX] with these -o options. */
static int dir_of_bucket(const char *bucket, char **opts, int nopts, char **dir)
{
	char **argv = calloc((size_t)(4 + 2 * nopts), sizeof(*argv)), err[512];
	struct bfs_options o;
	int argc = 0, rc;

	if (!argv)
		return fail(EXIT_USAGE, "out of memory");
	argv[argc++] = "bucketfs";
	argv[argc++] = (char *)bucket;
	argv[argc++] = "/"; /* a mount point is required by the parser; never used */
	for (int i = 0; i < nopts; i++) {
		argv[argc++] = "-o";
		argv[argc++] = opts[i];
	}
	rc = bfs_options_parse(argc, argv, &o, err, sizeof(err));
	free(argv);
	if (rc != 0)
		return fail(EXIT_USAGE, "%s", rc < 0 ? err : "unexpected --help in -o");
	*dir = strdup(o.cache_dir);
	bfs_options_free(&o);
	return *dir ? 0 : fail(EXIT_USAGE, "out of memory");
}

int main(int argc, char **argv)
{
	const char *cache_dir = NULL, *pos[3] = { NULL, NULL, NULL }, *cmd, *bucket = NULL;
	char **opts = calloc((size_t)argc + 1, sizeof(*opts)), *dir = NULL;
	int nopts = 0, npos = 0, status = EXIT_USAGE, rc;
	bool discard_dirty = false, have_to = false, in_use = false, progress = false;
	uint64_t to = UINT64_MAX;
	int64_t older = -1;
	struct cache *c = NULL;
	struct cache_config cfg = { 0 };

	bfs_log_setup(0, BFS_LOG_WARN);
	if (!opts)
		return fail(EXIT_USAGE, "out of memory");
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(help_text, stdout);
			status = 0;
			goto out;
		} else if (!strcmp(a, "--cache-dir") || !strcmp(a, "-o") ||
			   !strcmp(a, "--older-than") || !strcmp(a, "--to")) {
			if (++i == argc) {
				status = fail(EXIT_USAGE, "%s needs an argument", a);
				goto out;
			}
			if (!strcmp(a, "--cache-dir")) {
				cache_dir = argv[i];
			} else if (!strcmp(a, "-o")) {
				opts[nopts++] = argv[i];
			} else if (!strcmp(a, "--to")) {
				if (bfs_parse_size(argv[i], &to)) {
					status = fail(EXIT_USAGE, "--to %s: not a size (e.g. 500M, 10G)",
						      argv[i]);
					goto out;
				}
				have_to = true;
			} else if (parse_duration(argv[i], &older)) {
				status = fail(EXIT_USAGE, "--older-than %s: not a duration "
					      "(e.g. 90s, 30m, 12h, 7d, 2w)", argv[i]);
				goto out;
			}
		} else if (!strncmp(a, "--cache-dir=", 12)) {
			cache_dir = a + 12;
		} else if (!strncmp(a, "-o", 2) && a[2]) {
			opts[nopts++] = (char *)a + 2;
		} else if (!strcmp(a, "--discard-dirty")) {
			discard_dirty = true;
		} else if (!strcmp(a, "--progress")) {
			progress = true;
		} else if (a[0] == '-' && a[1]) {
			status = fail(EXIT_USAGE, "unknown option '%s' (%s)", a, usage_line);
			goto out;
		} else if (npos < 3) {
			pos[npos++] = a;
		} else {
			status = fail(EXIT_USAGE, "unexpected argument '%s' (%s)", a, usage_line);
			goto out;
		}
	}
	if (cache_dir && nopts) {
		status = fail(EXIT_USAGE, "-o is only used with BUCKET; give --cache-dir or BUCKET, "
			      "not both");
		goto out;
	}
	if (!cache_dir && npos >= 2)
		bucket = pos[0];
	cmd = cache_dir ? pos[0] : pos[1];
	if (npos == 0) {
		status = fail(EXIT_USAGE, "missing --cache-dir DIR or BUCKET, and a command (%s)",
			      usage_line);
		goto out;
	}
	if (!cmd) {
		status = fail(EXIT_USAGE, "missing command: stats, verify, prune or clear (%s)",
			      usage_line);
		goto out;
	}
	if (npos > (cache_dir ? 1 : 2)) {
		status = fail(EXIT_USAGE, "unexpected argument '%s' (%s)", pos[npos - 1],
			      usage_line);
		goto out;
	}
	if (strcmp(cmd, "stats") && strcmp(cmd, "verify") && strcmp(cmd, "prune") &&
	    strcmp(cmd, "clear")) {
		status = fail(EXIT_USAGE, "unknown command '%s' (%s)", cmd, usage_line);
		goto out;
	}
	if ((have_to || older >= 0) && strcmp(cmd, "prune")) {
		status = fail(EXIT_USAGE, "--older-than and --to are options of prune");
		goto out;
	}
	if (!strcmp(cmd, "prune") && !have_to && older < 0) {
		status = fail(EXIT_USAGE, "prune needs --older-than DURATION and/or --to SIZE");
		goto out;
	}
	if (discard_dirty && strcmp(cmd, "clear")) {
		status = fail(EXIT_USAGE, "--discard-dirty is an option of clear");
		goto out;
	}
	if (bucket) {
		if ((status = dir_of_bucket(bucket, opts, nopts, &dir)))
			goto out;
		status = EXIT_USAGE;
	} else if (!(dir = strdup(cache_dir))) {
		status = fail(EXIT_USAGE, "out of memory");
		goto out;
	}

	/* stats never needs the lock: it opens read-only, so it changes nothing at all */
	cfg.dir = dir;
	cfg.flags = CACHE_OPEN_TOOL;
	if (!strcmp(cmd, "stats"))
		rc = -EBUSY;
	else
		rc = cache_open(&cfg, &c);
	if (rc == -EBUSY && (!strcmp(cmd, "prune") || !strcmp(cmd, "clear"))) {
		status = fail(EXIT_USAGE, "%s: cache in use by a mounted bucketfs; unmount first",
			      dir);
		goto out;
	}
	if (rc == -EBUSY) {
		cfg.flags = CACHE_OPEN_RDONLY;
		rc = cache_open(&cfg, &c);
		in_use = cache_lock_holder(dir) != 0;
	}
	if (rc == -ENOENT) {
		status = fail(EXIT_USAGE, "%s: no bucketfs cache there", dir);
		goto out;
	}
	if (rc) {
		status = fail(EXIT_USAGE, "%s: cannot open the cache: %s", dir, strerror(-rc));
		goto out;
	}
	struct progress prog = { .tty = isatty(STDERR_FILENO) == 1 };
	if (progress || prog.tty)
		cache_set_progress(c, show_progress, &prog);
	if (!strcmp(cmd, "stats"))
		status = cmd_stats(c, dir, in_use);
	else if (!strcmp(cmd, "verify"))
		status = cmd_verify(c, in_use);
	else if (!strcmp(cmd, "prune"))
		status = cmd_prune(c, to, older);
	else
		status = cmd_clear(c, discard_dirty);
out:
	cache_close(c);
	free(dir);
	free(opts);
	return status;
}
