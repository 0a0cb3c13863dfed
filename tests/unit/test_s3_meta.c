/* tests/unit/test_s3_meta.c — s3/meta.c: response header lines, which curl passes without a
 * terminating NUL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "s3/internal.h"

/* Parses line from a buffer of exactly its length. */
static void header(struct s3_req *r, const char *line)
{
	size_t n = strlen(line);
	char *copy = malloc(n ? n : 1);

	assert_non_null(copy);
	memcpy(copy, line, n);
	s3_parse_header_line(r, copy, n);
	free(copy);
}

static void test_status_line(void **state)
{
	(void)state;
	struct s3_req r;

	s3_req_init(&r, "HEAD", "k");
	header(&r, "HTTP/1.1 100 Continue\r\n");
	assert_int_equal(r.status, 100);
	header(&r, "x-amz-meta-mode: 33188\r\n");
	header(&r, "HTTP/1.1 200 OK\r\n");
	assert_int_equal(r.status, 200);
	assert_null(s3_meta_get(&r.obj.meta, "mode")); /* a new response forgets the last */
	header(&r, "HTTP/2 404");   /* the digits run to the end of the buffer */
	assert_int_equal(r.status, 404);
	header(&r, "HTTP/1.1 ");
	assert_int_equal(r.status, 0);
	header(&r, "HTTP/1.1");
	assert_int_equal(r.status, 0);
	s3_req_free(&r);
}

static void test_meta_and_etag(void **state)
{
	(void)state;
	struct s3_req r;

	s3_req_init(&r, "HEAD", "k");
	header(&r, "HTTP/1.1 200 OK\r\n");
	header(&r, "ETag: \"fba9dede5f27731c9771645a39863328\"\r\n");
	header(&r, "Content-Length: 434234\r\n");
	header(&r, "X-Amz-Meta-MTime:   1609459200.5 \r\n");
	header(&r, "x-amz-meta-:empty name\r\n");
	assert_string_equal(r.obj.etag, "fba9dede5f27731c9771645a39863328");
	assert_int_equal(r.obj.size, 434234);
	assert_string_equal(s3_meta_get(&r.obj.meta, "mtime"), "1609459200.5");
	assert_int_equal(r.obj.meta.n, 1);
	s3_req_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_line),
		cmocka_unit_test(test_meta_and_etag),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
