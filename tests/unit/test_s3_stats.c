/* tests/unit/test_s3_stats.c — s3/stats.c: which S3 operation a request is, and the
 * per-operation counters and latency an attempt adds. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "s3/internal.h"
#include "util/util.h"

static enum s3_op classify(const char *method, const char *key, const struct s3_pair *params,
			   size_t nparams, bool copy)
{
	struct s3_req r;
	s3_req_init(&r, method, key);
	r.params = params;
	r.nparams = nparams;
	if (copy)
		s3_req_header(&r, "x-amz-copy-source", "%s", "bkt/src");
	enum s3_op op = s3_op_of(&r);
	s3_req_free(&r);
	return op;
}

static void test_classify(void **state)
{
	(void)state;
	const struct s3_pair list[] = { { "list-type", "2" }, { "prefix", "a/" } };
	const struct s3_pair uploads[] = { { "uploads", NULL } };
	const struct s3_pair part[] = { { "partNumber", "3" }, { "uploadId", "u" } };
	const struct s3_pair upload_id[] = { { "uploadId", "u" } };
	const struct s3_pair del[] = { { "delete", NULL } };

	assert_int_equal(classify("GET", "k", NULL, 0, false), S3_OP_GET_OBJECT);
	assert_int_equal(classify("HEAD", "k", NULL, 0, false), S3_OP_HEAD_OBJECT);
	assert_int_equal(classify("PUT", "k", NULL, 0, false), S3_OP_PUT_OBJECT);
	assert_int_equal(classify("PUT", "k", NULL, 0, true), S3_OP_COPY_OBJECT);
	assert_int_equal(classify("DELETE", "k", NULL, 0, false), S3_OP_DELETE_OBJECT);
	assert_int_equal(classify("POST", NULL, del, 1, false), S3_OP_DELETE_OBJECTS);
	assert_int_equal(classify("GET", NULL, list, 2, false), S3_OP_LIST_OBJECTS_V2);
	assert_int_equal(classify("GET", NULL, uploads, 1, false), S3_OP_LIST_MULTIPART_UPLOADS);
	assert_int_equal(classify("POST", "k", uploads, 1, false),
			 S3_OP_CREATE_MULTIPART_UPLOAD);
	assert_int_equal(classify("PUT", "k", part, 2, false), S3_OP_UPLOAD_PART);
	assert_int_equal(classify("PUT", "k", part, 2, true), S3_OP_UPLOAD_PART_COPY);
	assert_int_equal(classify("POST", "k", upload_id, 1, false),
			 S3_OP_COMPLETE_MULTIPART_UPLOAD);
	assert_int_equal(classify("DELETE", "k", upload_id, 1, false),
			 S3_OP_ABORT_MULTIPART_UPLOAD);
	assert_int_equal(classify("PATCH", "k", NULL, 0, false), S3_OP_OTHER);
	assert_int_equal(classify("PUT", NULL, NULL, 0, false), S3_OP_OTHER);

	assert_string_equal(s3_op_name(S3_OP_PUT_OBJECT), "PutObject");
	assert_string_equal(s3_op_name(S3_OP_LIST_OBJECTS_V2), "ListObjectsV2");
	assert_string_equal(s3_op_name(S3_OP_COUNT), "Other");
	for (int i = 0; i < S3_OP_COUNT; i++)
		assert_non_null(s3_op_name((enum s3_op)i));
}

static void test_metrics(void **state)
{
	(void)state;
	struct s3_config cfg = { .endpoint = "http://127.0.0.1:1", .bucket = "bkt",
				 .access_key = "AK", .secret_key = "SK" };
	struct s3_client *c;
	struct s3_metrics m;
	struct s3_req r;

	assert_int_equal(s3_client_new(&cfg, &c), 0);
	s3_metrics_get(c, &m);
	assert_int_equal(m.requests, 0);
	s3_req_init(&r, "GET", "k");
	s3_stats_attempt(c, &r, S3_OP_GET_OBJECT, 2000000);
	s3_stats_attempt(c, &r, S3_OP_GET_OBJECT, 4000000);
	s3_stats_attempt(c, &r, S3_OP_PUT_OBJECT, -5); /* a clock step: counted as 0 */
	s3_req_free(&r);
	s3_metrics_get(c, &m);
	assert_int_equal(m.requests, 3);
	assert_int_equal(m.op[S3_OP_GET_OBJECT].requests, 2);
	assert_int_equal(m.op[S3_OP_GET_OBJECT].latency.count, 2);
	assert_int_equal(m.op[S3_OP_GET_OBJECT].latency.sum_ns, 6000000);
	assert_int_equal(m.op[S3_OP_GET_OBJECT].latency.max_ns, 4000000);
	assert_true(m.op[S3_OP_GET_OBJECT].latency.p50_ns >= 2000000 &&
		    m.op[S3_OP_GET_OBJECT].latency.p50_ns < 2250000);
	assert_int_equal(m.op[S3_OP_PUT_OBJECT].requests, 1);
	assert_int_equal(m.op[S3_OP_PUT_OBJECT].latency.sum_ns, 0);
	assert_int_equal(m.op[S3_OP_HEAD_OBJECT].requests, 0);
	s3_client_free(c);
}

/* A request that cannot connect: one attempt counted, one error, no retries (refused is not
 * retried without server_wait). */
static void test_failed_request_counted(void **state)
{
	(void)state;
	struct s3_config cfg = { .endpoint = "http://127.0.0.1:1", .bucket = "bkt",
				 .path_style = true, .access_key = "AK", .secret_key = "SK" };
	struct s3_client *c;
	struct s3_object o;
	struct s3_metrics m;

	bfs_log_setup(0, BFS_LOG_WARN);
	assert_int_equal(s3_client_new(&cfg, &c), 0);
	assert_int_equal(s3_head(c, "k", &o), -EHOSTUNREACH);
	s3_object_free(&o);
	s3_metrics_get(c, &m);
	assert_int_equal(m.op[S3_OP_HEAD_OBJECT].requests, 1);
	assert_int_equal(m.op[S3_OP_HEAD_OBJECT].errors, 1);
	assert_int_equal(m.op[S3_OP_HEAD_OBJECT].retries, 0);
	assert_int_equal(m.errors, 1);
	s3_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_metrics),
		cmocka_unit_test(test_failed_request_counted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
