/* tests/unit/test_fs_xattr_s3.c — fs/xattr_s3.c: the virtual user.s3.* attributes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include <cmocka.h>

#include "fs/fs_int.h"

static void test_get_set_list(void **state)
{
	(void)state;
	struct s3_meta m;
	char buf[128];
	s3_meta_init(&m);
	assert_int_equal(s3_meta_set(&m, S3_HDR_CONTENT_TYPE, "text/css"), 0);
	assert_int_equal(s3_meta_set(&m, "xattr", "%7B%7D"), 0);

	assert_true(bfs_s3_xattr_is("user.s3.etag"));
	assert_false(bfs_s3_xattr_is("user.s3"));
	assert_false(bfs_s3_xattr_is("user.other"));
	assert_int_equal(bfs_s3_xattr_get(&m, "abc", "user.s3.content_type", NULL, 0), 8);
	assert_int_equal(bfs_s3_xattr_get(&m, "abc", "user.s3.content_type", buf, 8), 8);
	assert_memory_equal(buf, "text/css", 8);
	assert_int_equal(bfs_s3_xattr_get(&m, "abc", "user.s3.content_type", buf, 7), -ERANGE);
	assert_int_equal(bfs_s3_xattr_get(&m, "abc", "user.s3.cache_control", buf, 128), -ENODATA);
	assert_int_equal(bfs_s3_xattr_get(&m, "abc", "user.s3.etag", buf, 128), 3);
	assert_int_equal(bfs_s3_xattr_get(&m, "", "user.s3.etag", buf, 128), -ENODATA);
	assert_int_equal(bfs_s3_xattr_get(&m, "abc", "user.s3.other", buf, 128), -ENODATA);

	assert_int_equal(bfs_s3_xattr_change(&m, "user.s3.cache_control", "max-age=5", 9,
					     XATTR_CREATE), 0);
	assert_string_equal(s3_meta_get(&m, S3_HDR_CACHE_CONTROL), "max-age=5");
	assert_int_equal(bfs_s3_xattr_change(&m, "user.s3.cache_control", "x", 1, XATTR_CREATE),
			 -EEXIST);
	assert_int_equal(bfs_s3_xattr_change(&m, "user.s3.content_encoding", "gzip", 4,
					     XATTR_REPLACE), -ENODATA);
	assert_int_equal(bfs_s3_xattr_change(&m, "user.s3.content_encoding", "a\r\nb", 4, 0),
			 -EINVAL);
	assert_int_equal(bfs_s3_xattr_change(&m, "user.s3.content_encoding", "", 0, 0), -EINVAL);
	assert_int_equal(bfs_s3_xattr_change(&m, "user.s3.etag", "x", 1, 0), -EPERM);
	assert_int_equal(bfs_s3_xattr_change(&m, "user.s3.etag", NULL, 0, 0), -EPERM);
	assert_int_equal(bfs_s3_xattr_change(&m, "user.s3.foo", "x", 1, 0), -EOPNOTSUPP);
	char big[1100];
	memset(big, 'a', sizeof(big));
	assert_int_equal(bfs_s3_xattr_change(&m, "user.s3.content_disposition", big, sizeof(big),
					     0), -E2BIG);

	assert_int_equal(bfs_s3_xattr_change(&m, "user.s3.content_type", NULL, 0, 0), 0);
	assert_null(s3_meta_get(&m, S3_HDR_CONTENT_TYPE));
	assert_int_equal(bfs_s3_xattr_change(&m, "user.s3.content_type", NULL, 0, 0), -ENODATA);
	/* never in x-amz-meta-xattr */
	assert_string_equal(s3_meta_get(&m, "xattr"), "%7B%7D");
	assert_int_equal(bfs_xattr_list(&m, NULL, 0), 0);
	s3_meta_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_set_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
