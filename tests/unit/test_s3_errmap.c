/* tests/unit/test_s3_errmap.c — the S3 error -> errno table (s3/errmap.c), as documented at
 * the top of s3/s3.h, and which failures are retried. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "s3/internal.h"

static void test_documented_mapping(void **state)
{
	(void)state;
	assert_int_equal(s3_errmap_http(404, "NoSuchKey"), -ENOENT);
	assert_int_equal(s3_errmap_http(404, "NoSuchBucket"), -ENXIO);
	assert_int_equal(s3_errmap_http(403, "AccessDenied"), -EACCES);
	assert_int_equal(s3_errmap_http(403, "SignatureDoesNotMatch"), -EACCES);
	assert_int_equal(s3_errmap_http(403, "InvalidAccessKeyId"), -EACCES);
	assert_int_equal(s3_errmap_http(400, "KeyTooLongError"), -ENAMETOOLONG);
	assert_int_equal(s3_errmap_http(400, "InvalidObjectName"), -EINVAL); /* Ceph RGW */
	assert_int_equal(s3_errmap_http(412, "PreconditionFailed"), -ESTALE);
	assert_int_equal(s3_errmap_http(304, NULL), -EALREADY);
	assert_int_equal(s3_errmap_http(400, "BadDigest"), -EBADMSG);
	assert_int_equal(s3_errmap_http(503, "SlowDown"), -EIO);
	assert_int_equal(s3_errmap_http(500, "InternalError"), -EIO);
	assert_int_equal(s3_errmap_http(400, "RequestTimeout"), -ETIMEDOUT);
	assert_int_equal(s3_errmap_http(416, "InvalidRange"), -ERANGE);
	assert_int_equal(s3_errmap_http(400, "EntityTooLarge"), -EFBIG);
}

static void test_status_fallback(void **state)
{
	(void)state;
	/* HEAD answers have no body, so no code: the status decides. */
	assert_int_equal(s3_errmap_http(404, NULL), -ENOENT);
	assert_int_equal(s3_errmap_http(404, ""), -ENOENT);
	assert_int_equal(s3_errmap_http(403, NULL), -EACCES);
	assert_int_equal(s3_errmap_http(412, NULL), -ESTALE);
	assert_int_equal(s3_errmap_http(502, NULL), -EIO);
	assert_int_equal(s3_errmap_http(418, "SomethingNew"), -EIO);
	assert_int_equal(s3_errmap_http(409, "SomethingNew"), -EBUSY);
	assert_int_equal(s3_errmap_http(200, NULL), 0);
	/* The code wins over the status: a CopyObject 200 with an <Error> body. */
	assert_int_equal(s3_errmap_http(200, "AccessDenied"), -EACCES);
}

static void test_retryable(void **state)
{
	(void)state;
	assert_true(s3_errmap_retryable_http(500, NULL));
	assert_true(s3_errmap_retryable_http(502, NULL));
	assert_true(s3_errmap_retryable_http(503, NULL));
	assert_true(s3_errmap_retryable_http(504, NULL));
	assert_true(s3_errmap_retryable_http(503, "SlowDown"));
	assert_true(s3_errmap_retryable_http(400, "RequestTimeout"));
	assert_true(s3_errmap_retryable_http(200, "InternalError"));
	assert_false(s3_errmap_retryable_http(404, "NoSuchKey"));
	assert_false(s3_errmap_retryable_http(403, "AccessDenied"));
	assert_false(s3_errmap_retryable_http(412, NULL));
	assert_false(s3_errmap_retryable_http(400, NULL));
	assert_false(s3_errmap_retryable_http(304, NULL));
}

static void test_curl(void **state)
{
	(void)state;
	assert_int_equal(s3_errmap_curl(CURLE_OK), 0);
	assert_int_equal(s3_errmap_curl(CURLE_COULDNT_CONNECT), -EHOSTUNREACH);
	assert_int_equal(s3_errmap_curl(CURLE_COULDNT_RESOLVE_HOST), -EHOSTUNREACH);
	assert_int_equal(s3_errmap_curl(CURLE_OPERATION_TIMEDOUT), -ETIMEDOUT);
	assert_int_equal(s3_errmap_curl(CURLE_RECV_ERROR), -ECONNRESET);
	assert_int_equal(s3_errmap_curl(CURLE_PEER_FAILED_VERIFICATION), -EPROTO);
	assert_int_equal(s3_errmap_curl(CURLE_SSL_CONNECT_ERROR), -EPROTO);
	assert_string_equal(s3_errmap_curl_what(CURLE_PEER_FAILED_VERIFICATION),
			    "TLS certificate not accepted");
	assert_non_null(s3_errmap_curl_what(CURLE_SSL_CONNECT_ERROR));
	assert_non_null(s3_errmap_curl_what(CURLE_SSL_CACERT_BADFILE));
	assert_null(s3_errmap_curl_what(CURLE_COULDNT_CONNECT));
	assert_null(s3_errmap_curl_what(CURLE_OK));
	assert_true(s3_errmap_retryable_curl(CURLE_OPERATION_TIMEDOUT));
	assert_true(s3_errmap_retryable_curl(CURLE_RECV_ERROR));
	assert_true(s3_errmap_retryable_curl(CURLE_SEND_ERROR));
	assert_true(s3_errmap_retryable_curl(CURLE_GOT_NOTHING));
	assert_false(s3_errmap_retryable_curl(CURLE_PEER_FAILED_VERIFICATION));
	assert_false(s3_errmap_retryable_curl(CURLE_COULDNT_RESOLVE_HOST));
}

static void test_last_error_is_per_thread_line(void **state)
{
	(void)state;
	s3_set_error("GET %s: HTTP %d\nsecond line", "k", 404);
	assert_string_equal(s3_last_error(), "GET k: HTTP 404 second line");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_documented_mapping),
		cmocka_unit_test(test_status_fallback),
		cmocka_unit_test(test_retryable),
		cmocka_unit_test(test_curl),
		cmocka_unit_test(test_last_error_is_per_thread_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
