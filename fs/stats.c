/* fs/stats.c — live statistics of a mount: a snapshot of the counters the S3 client, the
 * cache, the upload queue, readahead and the FUSE op wrappers (fs/trace.c) keep, formatted as
 * JSON or as Prometheus text, and served as two virtual extended attributes of the mount
 * root (BFS_STATS_XATTR, BFS_STATS_XATTR_PROM; docs/stats.md describes both documents).
 *
 * The channel: getxattr(2) on the mount root, so it needs nothing but the mount itself, works
 * wherever the mount is visible, and is answered by the daemon that serves it. Only the user
 * who mounted it and root may read it (checked on the caller's uid; without allow_other,
 * nobody else reaches the mount anyway). The attributes are listed by no listxattr and
 * cannot be set or removed. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/util.h"

/* ---- snapshot ---- */

void bfs_stats_take(struct bfs_fs *fs, struct bfs_stats_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	out->bucket = fs->opts->bucket;
	out->prefix = fs->opts->prefix;
	out->mountpoint = fs->opts->mountpoint;
	out->pid = (long)getpid();
	out->uptime_ns = bfs_mono_ns() - fs->started_ns;
	if (fs->s3)
		s3_metrics_get(fs->s3, &out->s3);
	if (fs->cache)
		cache_stats_get(fs->cache, &out->cache);
	pthread_mutex_lock(&fs->lock);
	for (struct bfs_inode *i = fs->qhead; i; i = i->qnext)
		out->uploads_queued++;
	out->uploads_running = fs->uploads_running > 0 ? (uint64_t)fs->uploads_running : 0;
	pthread_mutex_unlock(&fs->lock);
	out->streamed_parts = atomic_load(&fs->streamed_parts);
	bfs_readahead_stats(fs, &out->readahead);
	for (int op = 0; op < BFS_FUSE_OP_COUNT; op++)
		bfs_hist_summarize(&fs->fuse_latency[op], &out->fuse[op]);
}

/* ---- a growing string ---- */

struct buf {
	char *s;
	size_t len, cap;
	bool oom;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
	va_list ap;

	if (b->oom)
		return;
	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		int n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *p = realloc(b->s, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->s = p;
		b->cap = cap;
	}
}

static char *finish(struct buf *b)
{
	if (b->oom || !b->s) {
		free(b->s);
		return NULL;
	}
	return b->s;
}

/* Seconds of ns with 9 decimals. */
#define SEC_FMT "%" PRIu64 ".%09" PRIu64
#define SEC_ARGS(ns) (uint64_t)(ns) / 1000000000u, (uint64_t)(ns) % 1000000000u

/* ---- JSON ---- */

/* s as a JSON string: quotes, backslashes and control characters escaped; other bytes as
 * they are (names on Linux are bytes; UTF-8 ones come out as valid JSON). */
static void json_str(struct buf *b, const char *s)
{
	put(b, "\"");
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		if (*p == '"' || *p == '\\')
			put(b, "\\%c", *p);
		else if (*p == '\n')
			put(b, "\\n");
		else if (*p < 0x20 || *p == 0x7f)
			put(b, "\\u%04x", *p);
		else
			put(b, "%c", *p);
	}
	put(b, "\"");
}

/* "sum_seconds", "max_seconds", "p50_seconds", ... of one latency summary; the percentiles
 * are null while nothing was measured. */
static void json_latency(struct buf *b, const struct bfs_hist_summary *h)
{
	put(b, "\"sum_seconds\": " SEC_FMT ", \"max_seconds\": " SEC_FMT, SEC_ARGS(h->sum_ns),
	    SEC_ARGS(h->max_ns));
	const uint64_t q[3] = { h->p50_ns, h->p90_ns, h->p99_ns };
	const char *qn[3] = { "p50", "p90", "p99" };
	for (int i = 0; i < 3; i++) {
		if (h->count)
			put(b, ", \"%s_seconds\": " SEC_FMT, qn[i], SEC_ARGS(q[i]));
		else
			put(b, ", \"%s_seconds\": null", qn[i]);
	}
}

char *bfs_stats_json(const struct bfs_stats_snapshot *s)
{
	struct buf b = { 0 };

	put(&b, "{\n  \"version\": 1,\n  \"bucket\": ");
	json_str(&b, s->bucket);
	put(&b, ",\n  \"prefix\": ");
	json_str(&b, s->prefix);
	put(&b, ",\n  \"mountpoint\": ");
	json_str(&b, s->mountpoint);
	put(&b, ",\n  \"pid\": %ld,\n  \"uptime_seconds\": " SEC_FMT ",\n", s->pid,
	    SEC_ARGS(s->uptime_ns > 0 ? s->uptime_ns : 0));

	put(&b, "  \"s3\": {\n    \"requests\": %" PRIu64 ", \"errors\": %" PRIu64
	    ", \"retries\": %" PRIu64 ", \"bytes_up\": %" PRIu64 ", \"bytes_down\": %" PRIu64
	    ",\n    \"operations\": {", s->s3.requests, s->s3.errors, s->s3.retries,
	    s->s3.bytes_up, s->s3.bytes_down);
	for (int op = 0; op < S3_OP_COUNT; op++) {
		const struct s3_op_metrics *m = &s->s3.op[op];
		put(&b, "%s\n      \"%s\": {\"requests\": %" PRIu64 ", \"errors\": %" PRIu64
		    ", \"retries\": %" PRIu64 ", ", op ? "," : "", s3_op_name((enum s3_op)op),
		    m->requests, m->errors, m->retries);
		json_latency(&b, &m->latency);
		put(&b, "}");
	}
	put(&b, "\n    }\n  },\n");

	const struct cache_stats *c = &s->cache;
	put(&b, "  \"cache\": {\"hits\": %" PRIu64 ", \"misses\": %" PRIu64 ", \"blocks\": %" PRIu64
	    ", \"bytes\": %" PRIu64 ", \"block_size\": %" PRIu64 ", \"meta_entries\": %" PRIu64
	    "},\n", c->hits, c->misses, c->blocks, c->bytes, c->block_size, c->meta_entries);
	put(&b, "  \"dirty\": {\"entries\": %" PRIu64 ", \"bytes\": %" PRIu64
	    ", \"uploads_queued\": %" PRIu64 ", \"uploads_running\": %" PRIu64
	    ", \"streamed_parts\": %" PRIu64 "},\n",
	    c->dirty_entries, c->dirty_bytes, s->uploads_queued, s->uploads_running,
	    s->streamed_parts);
	const struct bfs_ra_stats *ra = &s->readahead;
	put(&b, "  \"readahead\": {\"window_bytes\": %" PRIu64 ", \"window_max_bytes\": %" PRIu64
	    ", \"queued_blocks\": %" PRIu64 ", \"prefetched_blocks\": %" PRIu64 "},\n",
	    ra->window_last, ra->window_max, ra->queued, ra->prefetched);

	put(&b, "  \"fuse\": {");
	bool first = true;
	for (int op = 0; op < BFS_FUSE_OP_COUNT; op++) {
		if (!s->fuse[op].count)
			continue; /* the document stays small: only ops that were called */
		put(&b, "%s\n    \"%s\": {\"calls\": %" PRIu64 ", ", first ? "" : ",",
		    bfs_fuse_op_name((enum bfs_fuse_op)op), s->fuse[op].count);
		json_latency(&b, &s->fuse[op]);
		put(&b, "}");
		first = false;
	}
	put(&b, "%s}\n}\n", first ? "" : "\n  ");
	return finish(&b);
}

/* ---- Prometheus text exposition format ---- */

/* A label value: backslash, double quote and newline escaped, as the format wants. */
static void prom_label(struct buf *b, const char *s)
{
	for (const char *p = s ? s : ""; *p; p++) {
		if (*p == '\\' || *p == '"')
			put(b, "\\%c", *p);
		else if (*p == '\n')
			put(b, "\\n");
		else
			put(b, "%c", *p);
	}
}

static void prom_head(struct buf *b, const char *name, const char *type, const char *help)
{
	put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_u64(struct buf *b, const char *name, const char *type, const char *help,
		     uint64_t v)
{
	prom_head(b, name, type, help);
	put(b, "%s %" PRIu64 "\n", name, v);
}

/* A summary of latencies per operation: quantiles 0.5, 0.9, 0.99 (NaN while empty), _sum
 * and _count. names[i] is the label of ops[i]; skip_empty leaves out ops never called. */
static void prom_summary(struct buf *b, const char *name, const char *help,
			 const struct bfs_hist_summary *const *ops, const char *const *names,
			 int n, bool skip_empty)
{
	static const char *const qs[3] = { "0.5", "0.9", "0.99" };

	prom_head(b, name, "summary", help);
	for (int i = 0; i < n; i++) {
		const struct bfs_hist_summary *h = ops[i];
		if (skip_empty && !h->count)
			continue;
		const uint64_t q[3] = { h->p50_ns, h->p90_ns, h->p99_ns };
		for (int k = 0; k < 3; k++) {
			if (h->count)
				put(b, "%s{operation=\"%s\",quantile=\"%s\"} " SEC_FMT "\n", name,
				    names[i], qs[k], SEC_ARGS(q[k]));
			else
				put(b, "%s{operation=\"%s\",quantile=\"%s\"} NaN\n", name, names[i],
				    qs[k]);
		}
		put(b, "%s_sum{operation=\"%s\"} " SEC_FMT "\n", name, names[i], SEC_ARGS(h->sum_ns));
		put(b, "%s_count{operation=\"%s\"} %" PRIu64 "\n", name, names[i], h->count);
	}
}

char *bfs_stats_prom(const struct bfs_stats_snapshot *s)
{
	struct buf b = { 0 };
	const char *s3names[S3_OP_COUNT];
	const struct bfs_hist_summary *s3lat[S3_OP_COUNT];
	const char *fnames[BFS_FUSE_OP_COUNT];
	const struct bfs_hist_summary *flat[BFS_FUSE_OP_COUNT];

	for (int op = 0; op < S3_OP_COUNT; op++) {
		s3names[op] = s3_op_name((enum s3_op)op);
		s3lat[op] = &s->s3.op[op].latency;
	}
	for (int op = 0; op < BFS_FUSE_OP_COUNT; op++) {
		fnames[op] = bfs_fuse_op_name((enum bfs_fuse_op)op);
		flat[op] = &s->fuse[op];
	}

	prom_head(&b, "bucketfs_info", "gauge", "The mount: bucket, prefix and mountpoint (always 1).");
	put(&b, "bucketfs_info{bucket=\"");
	prom_label(&b, s->bucket);
	put(&b, "\",prefix=\"");
	prom_label(&b, s->prefix);
	put(&b, "\",mountpoint=\"");
	prom_label(&b, s->mountpoint);
	put(&b, "\",pid=\"%ld\"} 1\n", s->pid);
	prom_head(&b, "bucketfs_uptime_seconds", "gauge", "Seconds since the daemon started.");
	put(&b, "bucketfs_uptime_seconds " SEC_FMT "\n", SEC_ARGS(s->uptime_ns > 0 ? s->uptime_ns : 0));

	static const struct {
		const char *name, *help;
		size_t at; /* offsetof in struct s3_op_metrics */
	} counters[] = {
		{ "bucketfs_s3_requests_total",
		  "S3 requests sent, every attempt (retries included), by operation.",
		  offsetof(struct s3_op_metrics, requests) },
		{ "bucketfs_s3_errors_total",
		  "S3 requests that failed after their retries (404/304/412/416 answers not "
		  "counted), by operation.", offsetof(struct s3_op_metrics, errors) },
		{ "bucketfs_s3_retries_total", "S3 attempts that were retried, by operation.",
		  offsetof(struct s3_op_metrics, retries) },
	};
	for (size_t k = 0; k < sizeof(counters) / sizeof(counters[0]); k++) {
		prom_head(&b, counters[k].name, "counter", counters[k].help);
		for (int op = 0; op < S3_OP_COUNT; op++)
			put(&b, "%s{operation=\"%s\"} %" PRIu64 "\n", counters[k].name, s3names[op],
			    *(const uint64_t *)((const char *)&s->s3.op[op] + counters[k].at));
	}
	prom_summary(&b, "bucketfs_s3_request_duration_seconds",
		     "Time of one S3 attempt's transfer, by operation.", s3lat, s3names,
		     S3_OP_COUNT, false);
	prom_u64(&b, "bucketfs_s3_sent_bytes_total", "counter",
		 "Bytes of S3 request bodies sent.", s->s3.bytes_up);
	prom_u64(&b, "bucketfs_s3_received_bytes_total", "counter",
		 "Bytes of S3 response bodies received (error bodies not counted).",
		 s->s3.bytes_down);

	const struct cache_stats *c = &s->cache;
	prom_u64(&b, "bucketfs_cache_hits_total", "counter",
		 "Cache blocks served from the local cache.", c->hits);
	prom_u64(&b, "bucketfs_cache_misses_total", "counter",
		 "Cache blocks that had to be fetched from S3.", c->misses);
	prom_u64(&b, "bucketfs_cache_blocks", "gauge", "Clean blocks in the cache.", c->blocks);
	prom_u64(&b, "bucketfs_cache_bytes", "gauge", "Bytes of clean blocks in the cache.",
		 c->bytes);
	prom_u64(&b, "bucketfs_dirty_entries", "gauge",
		 "Files in the write-back journal, not yet uploaded.", c->dirty_entries);
	prom_u64(&b, "bucketfs_dirty_bytes", "gauge",
		 "Bytes in the write-back journal, not yet uploaded.", c->dirty_bytes);
	prom_u64(&b, "bucketfs_uploads_queued", "gauge", "Files waiting for their upload.",
		 s->uploads_queued);
	prom_u64(&b, "bucketfs_uploads_running", "gauge", "Uploads in progress.",
		 s->uploads_running);
	prom_u64(&b, "bucketfs_streamed_parts_total", "counter",
		 "Multipart parts sent while their file was being written.", s->streamed_parts);

	const struct bfs_ra_stats *ra = &s->readahead;
	prom_u64(&b, "bucketfs_readahead_window_bytes", "gauge",
		 "Readahead window of the latest sequential read.", ra->window_last);
	prom_u64(&b, "bucketfs_readahead_window_max_bytes", "gauge",
		 "Largest readahead window (-o readahead=; 0: off).", ra->window_max);
	prom_u64(&b, "bucketfs_readahead_queued_blocks", "gauge",
		 "Blocks waiting to be prefetched.", ra->queued);
	prom_u64(&b, "bucketfs_readahead_prefetched_blocks_total", "counter",
		 "Blocks fetched ahead of a reader.", ra->prefetched);

	prom_head(&b, "bucketfs_fuse_operations_total", "counter",
		  "FUSE operations handled, by operation (only those called so far).");
	for (int op = 0; op < BFS_FUSE_OP_COUNT; op++)
		if (s->fuse[op].count)
			put(&b, "bucketfs_fuse_operations_total{operation=\"%s\"} %" PRIu64 "\n",
			    fnames[op], s->fuse[op].count);
	prom_summary(&b, "bucketfs_fuse_operation_duration_seconds",
		     "Time bucketfs took to handle one FUSE operation, by operation.", flat, fnames,
		     BFS_FUSE_OP_COUNT, true);
	return finish(&b);
}

/* ---- the extended attributes ---- */

/* A size query answers this much more than the document's length now: the numbers may grow
 * before the read that follows, which then still fits (and returns the real length). */
#define BFS_STATS_SLACK 4096

bool bfs_stats_is_xattr(fuse_ino_t nodeid, const char *name)
{
	return nodeid == FUSE_ROOT_ID &&
	       (strcmp(name, BFS_STATS_XATTR) == 0 || strcmp(name, BFS_STATS_XATTR_PROM) == 0);
}

bool bfs_stats_getxattr(fuse_req_t req, struct bfs_fs *fs, fuse_ino_t nodeid, const char *name,
			size_t size)
{
	if (!bfs_stats_is_xattr(nodeid, name))
		return false;
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	if (ctx->uid != 0 && ctx->uid != geteuid()) {
		fuse_reply_err(req, EACCES);
		return true;
	}
	struct bfs_stats_snapshot *snap = malloc(sizeof(*snap));
	char *doc = NULL;
	if (snap) {
		bfs_stats_take(fs, snap);
		doc = strcmp(name, BFS_STATS_XATTR) == 0 ? bfs_stats_json(snap) : bfs_stats_prom(snap);
		free(snap);
	}
	size_t len = doc ? strlen(doc) : 0;
	if (!doc)
		fuse_reply_err(req, ENOMEM);
	else if (size == 0)
		fuse_reply_xattr(req, len + BFS_STATS_SLACK);
	else if (len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, doc, len);
	free(doc);
	return true;
}
