/* tests/unit/test_fs_stats.c — fs/stats.c: the JSON and Prometheus documents of a snapshot
 * (docs/stats.md), taken from a hand-made snapshot so every number is known. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fs/fs_int.h"
#include "util/util.h"

static struct bfs_stats_snapshot *sample(void)
{
	struct bfs_stats_snapshot *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	s->bucket = "bkt";
	s->prefix = "some/prefix/";
	s->mountpoint = "/mnt/a \"b\"\\c\nd";
	s->pid = 4242;
	s->uptime_ns = 61500000000LL;
	struct s3_op_metrics *put = &s->s3.op[S3_OP_PUT_OBJECT];
	put->requests = 7;
	put->errors = 1;
	put->retries = 2;
	put->latency = (struct bfs_hist_summary){ .count = 7, .sum_ns = 70000000,
						  .max_ns = 20000000, .p50_ns = 9000000,
						  .p90_ns = 15000000, .p99_ns = 20000000 };
	s->s3.op[S3_OP_GET_OBJECT].requests = 3;
	s->s3.op[S3_OP_GET_OBJECT].latency = (struct bfs_hist_summary){
		.count = 3, .sum_ns = 3000000000ULL, .max_ns = 1500000000, .p50_ns = 1000000000,
		.p90_ns = 1500000000, .p99_ns = 1500000000 };
	s->s3.requests = 10;
	s->s3.errors = 1;
	s->s3.retries = 2;
	s->s3.bytes_up = 12345;
	s->s3.bytes_down = 67890;
	s->cache = (struct cache_stats){ .blocks = 5, .bytes = 5 << 20, .dirty_entries = 2,
					 .dirty_bytes = 300, .hits = 11, .misses = 4,
					 .meta_entries = 9, .block_size = 1 << 20 };
	s->uploads_queued = 1;
	s->uploads_running = 1;
	s->streamed_parts = 3;
	s->readahead = (struct bfs_ra_stats){ .window_max = 64 << 20, .window_last = 4 << 20,
					      .queued = 3, .prefetched = 17 };
	s->fuse[BFS_FUSE_LOOKUP] = (struct bfs_hist_summary){ .count = 2, .sum_ns = 3000,
							     .max_ns = 2000, .p50_ns = 1000,
							     .p90_ns = 2000, .p99_ns = 2000 };
	return s;
}

static void assert_contains(const char *doc, const char *want)
{
	if (!strstr(doc, want))
		fail_msg("missing: %s\nin:\n%s", want, doc);
}

static void test_json(void **state)
{
	(void)state;
	struct bfs_stats_snapshot *s = sample();
	char *j = bfs_stats_json(s);
	assert_non_null(j);
	assert_contains(j, "\"version\": 1,");
	assert_contains(j, "\"bucket\": \"bkt\",");
	assert_contains(j, "\"prefix\": \"some/prefix/\",");
	assert_contains(j, "\"mountpoint\": \"/mnt/a \\\"b\\\"\\\\c\\nd\",");
	assert_contains(j, "\"pid\": 4242,");
	assert_contains(j, "\"uptime_seconds\": 61.500000000,");
	assert_contains(j, "\"requests\": 10, \"errors\": 1, \"retries\": 2, \"bytes_up\": 12345, "
			"\"bytes_down\": 67890,");
	assert_contains(j, "\"PutObject\": {\"requests\": 7, \"errors\": 1, \"retries\": 2, "
			"\"sum_seconds\": 0.070000000, \"max_seconds\": 0.020000000, "
			"\"p50_seconds\": 0.009000000, \"p90_seconds\": 0.015000000, "
			"\"p99_seconds\": 0.020000000}");
	assert_contains(j, "\"GetObject\": {\"requests\": 3, \"errors\": 0, \"retries\": 0, "
			"\"sum_seconds\": 3.000000000, \"max_seconds\": 1.500000000, "
			"\"p50_seconds\": 1.000000000,");
	/* an operation never sent: zeros, and no percentiles */
	assert_contains(j, "\"UploadPart\": {\"requests\": 0, \"errors\": 0, \"retries\": 0, "
			"\"sum_seconds\": 0.000000000, \"max_seconds\": 0.000000000, "
			"\"p50_seconds\": null, \"p90_seconds\": null, \"p99_seconds\": null}");
	for (int op = 0; op < S3_OP_COUNT; op++) {
		char name[64];
		snprintf(name, sizeof(name), "\"%s\": {", s3_op_name((enum s3_op)op));
		assert_contains(j, name);
	}
	assert_contains(j, "\"cache\": {\"hits\": 11, \"misses\": 4, \"blocks\": 5, \"bytes\": "
			"5242880, \"block_size\": 1048576, \"meta_entries\": 9},");
	assert_contains(j, "\"dirty\": {\"entries\": 2, \"bytes\": 300, \"uploads_queued\": 1, "
			"\"uploads_running\": 1, \"streamed_parts\": 3},");
	assert_contains(j, "\"readahead\": {\"window_bytes\": 4194304, \"window_max_bytes\": "
			"67108864, \"queued_blocks\": 3, \"prefetched_blocks\": 17},");
	/* only FUSE ops that were called */
	assert_contains(j, "\"fuse\": {\n    \"LOOKUP\": {\"calls\": 2, \"sum_seconds\": "
			"0.000003000, \"max_seconds\": 0.000002000, \"p50_seconds\": 0.000001000,");
	assert_null(strstr(j, "GETATTR"));
	/* balanced, one document */
	int depth = 0;
	bool in_str = false;
	for (const char *p = j; *p; p++) {
		if (in_str) {
			if (*p == '\\')
				p++;
			else if (*p == '"')
				in_str = false;
			continue;
		}
		if (*p == '"')
			in_str = true;
		depth += *p == '{' ? 1 : *p == '}' ? -1 : 0;
		assert_true(depth >= 0);
		assert_true(*p != '\n' || depth > 0 || p[1] == '\0');
	}
	assert_int_equal(depth, 0);
	assert_string_equal(j + strlen(j) - 2, "}\n");
	free(j);

	/* nothing called at all: an empty "fuse" object */
	memset(s->fuse, 0, sizeof(s->fuse));
	j = bfs_stats_json(s);
	assert_non_null(j);
	assert_contains(j, "\"fuse\": {}\n}\n");
	free(j);
	free(s);
}

/* Every sample's family has HELP and TYPE lines before it; counters end in _total. */
static void check_exposition(const char *doc)
{
	char *copy = strdup(doc), *save = NULL;
	char typed[64][96], types[64][16];
	int ntyped = 0;
	assert_non_null(copy);
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[96], kind[16];
		if (sscanf(line, "# TYPE %95s %15s", name, kind) == 2) {
			assert_true(ntyped < 64);
			assert_true(!strcmp(kind, "counter") || !strcmp(kind, "gauge") ||
				    !strcmp(kind, "summary"));
			snprintf(typed[ntyped], sizeof(typed[0]), "%s", name);
			snprintf(types[ntyped++], sizeof(types[0]), "%s", kind);
			continue;
		}
		if (line[0] == '#') {
			assert_int_equal(strncmp(line, "# HELP bucketfs_", 16), 0);
			continue;
		}
		size_t n = strcspn(line, "{ ");
		assert_true(n > 0 && n < sizeof(name));
		memcpy(name, line, n);
		name[n] = '\0';
		assert_non_null(strchr(line, ' '));
		int found = -1;
		for (int i = 0; i < ntyped; i++) {
			size_t l = strlen(typed[i]);
			if (!strcmp(name, typed[i]) ||
			    (!strcmp(types[i], "summary") && !strncmp(name, typed[i], l) &&
			     (!strcmp(name + l, "_sum") || !strcmp(name + l, "_count"))))
				found = i;
		}
		if (found < 0)
			fail_msg("sample without TYPE: %s", line);
		if (!strcmp(types[found], "counter"))
			assert_string_equal(name + strlen(name) - 6, "_total");
		const char *value = strrchr(line, ' ') + 1;
		char *end;
		strtod(value, &end);
		assert_true(*end == '\0' && end != value);
	}
	free(copy);
}

static void test_prom(void **state)
{
	(void)state;
	struct bfs_stats_snapshot *s = sample();
	char *p = bfs_stats_prom(s);
	assert_non_null(p);
	check_exposition(p);
	assert_contains(p, "# HELP bucketfs_s3_requests_total ");
	assert_contains(p, "\n# TYPE bucketfs_s3_requests_total counter\n"
			"bucketfs_s3_requests_total{operation=\"GetObject\"} 3\n");
	assert_contains(p, "\nbucketfs_s3_requests_total{operation=\"PutObject\"} 7\n");
	assert_contains(p, "\nbucketfs_s3_requests_total{operation=\"Other\"} 0\n");
	assert_contains(p, "\nbucketfs_s3_errors_total{operation=\"PutObject\"} 1\n");
	assert_contains(p, "\nbucketfs_s3_retries_total{operation=\"PutObject\"} 2\n");
	assert_contains(p, "\n# TYPE bucketfs_s3_request_duration_seconds summary\n");
	assert_contains(p, "\nbucketfs_s3_request_duration_seconds{operation=\"PutObject\","
			"quantile=\"0.5\"} 0.009000000\n"
			"bucketfs_s3_request_duration_seconds{operation=\"PutObject\","
			"quantile=\"0.9\"} 0.015000000\n"
			"bucketfs_s3_request_duration_seconds{operation=\"PutObject\","
			"quantile=\"0.99\"} 0.020000000\n"
			"bucketfs_s3_request_duration_seconds_sum{operation=\"PutObject\"} "
			"0.070000000\n"
			"bucketfs_s3_request_duration_seconds_count{operation=\"PutObject\"} 7\n");
	assert_contains(p, "\nbucketfs_s3_request_duration_seconds{operation=\"UploadPart\","
			"quantile=\"0.5\"} NaN\n");
	assert_contains(p, "\nbucketfs_s3_request_duration_seconds_count{operation=\"UploadPart\"}"
			" 0\n");
	assert_contains(p, "\nbucketfs_s3_sent_bytes_total 12345\n");
	assert_contains(p, "\nbucketfs_s3_received_bytes_total 67890\n");
	assert_contains(p, "\n# TYPE bucketfs_cache_hits_total counter\nbucketfs_cache_hits_total 11\n");
	assert_contains(p, "\nbucketfs_cache_misses_total 4\n");
	assert_contains(p, "\n# TYPE bucketfs_cache_blocks gauge\nbucketfs_cache_blocks 5\n");
	assert_contains(p, "\nbucketfs_dirty_entries 2\n");
	assert_contains(p, "\nbucketfs_dirty_bytes 300\n");
	assert_contains(p, "\nbucketfs_uploads_queued 1\n");
	assert_contains(p, "\nbucketfs_streamed_parts_total 3\n");
	assert_contains(p, "\nbucketfs_readahead_window_bytes 4194304\n");
	assert_contains(p, "\nbucketfs_readahead_window_max_bytes 67108864\n");
	assert_contains(p, "\nbucketfs_readahead_prefetched_blocks_total 17\n");
	assert_contains(p, "\nbucketfs_uptime_seconds 61.500000000\n");
	/* label values escaped as the format wants: backslash, quote, newline */
	assert_contains(p, "\nbucketfs_info{bucket=\"bkt\",prefix=\"some/prefix/\","
			"mountpoint=\"/mnt/a \\\"b\\\"\\\\c\\nd\",pid=\"4242\"} 1\n");
	/* FUSE: only ops that were called */
	assert_contains(p, "\nbucketfs_fuse_operations_total{operation=\"LOOKUP\"} 2\n");
	assert_contains(p, "\nbucketfs_fuse_operation_duration_seconds{operation=\"LOOKUP\","
			"quantile=\"0.99\"} 0.000002000\n");
	assert_null(strstr(p, "operation=\"GETATTR\""));
	assert_string_equal(p + strlen(p) - 1, "\n");
	free(p);
	free(s);
}

/* What the daemon serves stays within what getxattr(2) can pass (64 KiB), even with every
 * FUSE operation called. */
static void test_size(void **state)
{
	(void)state;
	struct bfs_stats_snapshot *s = sample();
	for (int op = 0; op < BFS_FUSE_OP_COUNT; op++)
		s->fuse[op] = (struct bfs_hist_summary){ .count = UINT64_MAX / 2,
							 .sum_ns = UINT64_MAX / 2,
							 .max_ns = UINT64_MAX / 2,
							 .p50_ns = UINT64_MAX / 2,
							 .p90_ns = UINT64_MAX / 2,
							 .p99_ns = UINT64_MAX / 2 };
	for (int op = 0; op < S3_OP_COUNT; op++)
		s->s3.op[op] = s->s3.op[S3_OP_PUT_OBJECT];
	char *j = bfs_stats_json(s), *p = bfs_stats_prom(s);
	assert_non_null(j);
	assert_non_null(p);
	assert_true(strlen(j) < 65536 / 2);
	assert_true(strlen(p) < 65536 / 2);
	check_exposition(p);
	free(j);
	free(p);
	free(s);
}

/* The FUSE op names are the kernel's, each set; the S3 names S3's. */
static void test_names(void **state)
{
	(void)state;
	for (int op = 0; op < BFS_FUSE_OP_COUNT; op++)
		assert_true(strlen(bfs_fuse_op_name((enum bfs_fuse_op)op)) > 1);
	assert_string_equal(bfs_fuse_op_name(BFS_FUSE_FORGET_MULTI), "BATCH_FORGET");
	assert_string_equal(bfs_fuse_op_name(BFS_FUSE_CREATE), "CREATE");
	for (int op = 0; op < S3_OP_COUNT; op++)
		assert_non_null(s3_op_name((enum s3_op)op));
	assert_string_equal(s3_op_name(S3_OP_COMPLETE_MULTIPART_UPLOAD), "CompleteMultipartUpload");
	assert_true(bfs_stats_is_xattr(FUSE_ROOT_ID, BFS_STATS_XATTR));
	assert_true(bfs_stats_is_xattr(FUSE_ROOT_ID, BFS_STATS_XATTR_PROM));
	assert_false(bfs_stats_is_xattr(2, BFS_STATS_XATTR));
	assert_false(bfs_stats_is_xattr(FUSE_ROOT_ID, "user.other"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_prom),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
