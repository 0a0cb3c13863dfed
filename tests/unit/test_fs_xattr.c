/* tests/unit/test_fs_xattr.c — fs/xattr.c: x-amz-meta-xattr in s3fs's encoding. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/xattr.h>

#include <cmocka.h>

#include "fs/fs.h"

/* Written by s3fs 1.90 (-o use_xattr) for setfattr user.test=hello, user.bin=0x00ff0a,
 * user.pl=0xfbff, then setfattr -x user.bin and user.test=hello2 (docs/layout.md). */
static const char s3fs_value[] =
	"%7B%22user.pl%22%3A%22%2B/8%3D%22%2C%22user.test%22%3A%22aGVsbG8y%22%7D";
static const char s3fs_value_dir[] = "%7B%22user.d%22%3A%22ZGlydmFs%22%7D";

static void test_reads_s3fs_value(void **state)
{
	struct s3_meta m;
	unsigned char buf[64];
	char list[64];
	(void)state;

	s3_meta_init(&m);
	assert_int_equal(s3_meta_set(&m, "xattr", s3fs_value), 0);
	assert_int_equal(bfs_xattr_get(&m, "user.pl", NULL, 0), 2);
	assert_int_equal(bfs_xattr_get(&m, "user.pl", buf, sizeof(buf)), 2);
	assert_memory_equal(buf, "\xfb\xff", 2);
	assert_int_equal(bfs_xattr_get(&m, "user.test", buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "hello2", 6);
	assert_int_equal(bfs_xattr_get(&m, "user.bin", buf, sizeof(buf)), -ENODATA);
	assert_int_equal(bfs_xattr_list(&m, list, sizeof(list)), 18);
	assert_memory_equal(list, "user.pl\0user.test\0", 18);

	assert_int_equal(s3_meta_set(&m, "xattr", s3fs_value_dir), 0);
	assert_int_equal(bfs_xattr_get(&m, "user.d", buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "dirval", 6);
	s3_meta_free(&m);
}

/* Building the same set as s3fs produces the same header (hex digits' case aside). */
static void test_writes_s3fs_value(void **state)
{
	struct s3_meta m;
	(void)state;

	s3_meta_init(&m);
	assert_int_equal(bfs_xattr_set(&m, "user.test", "hello", 5, 0), 0);
	assert_int_equal(bfs_xattr_set(&m, "user.bin", "\x00\xff\x0a", 3, 0), 0);
	assert_int_equal(bfs_xattr_set(&m, "user.pl", "\xfb\xff", 2, 0), 0);
	assert_int_equal(bfs_xattr_remove(&m, "user.bin"), 0);
	assert_int_equal(bfs_xattr_set(&m, "user.test", "hello2", 6, 0), 0);
	assert_non_null(s3_meta_get(&m, "xattr"));
	if (strcasecmp(s3_meta_get(&m, "xattr"), s3fs_value) != 0)
		fail_msg("wrote %s", s3_meta_get(&m, "xattr"));
	s3_meta_free(&m);
}

static void test_roundtrip_binary(void **state)
{
	struct s3_meta m;
	unsigned char all[256], buf[256];
	(void)state;

	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)(255 - i);
	s3_meta_init(&m);
	assert_int_equal(s3_meta_set(&m, "mode", "33188"), 0);
	for (size_t len = 0; len <= 7; len++) {
		char name[32];
		snprintf(name, sizeof(name), "user.len%zu", len);
		assert_int_equal(bfs_xattr_set(&m, name, all + 100, len, 0), 0);
	}
	assert_int_equal(bfs_xattr_set(&m, "user.all", all, sizeof(all), 0), 0);
	assert_int_equal(bfs_xattr_set(&m, "user.ünïcode {x} é", "v", 1, 0), 0);
	assert_int_equal(bfs_xattr_set(&m, "security.selinux", "system_u\0", 9, 0), 0);

	/* The header is plain ASCII without blanks: safe as an HTTP header value. */
	for (const char *p = s3_meta_get(&m, "xattr"); *p; p++)
		assert_true(*p > ' ' && *p < 127);

	for (size_t len = 0; len <= 7; len++) {
		char name[32];
		snprintf(name, sizeof(name), "user.len%zu", len);
		memset(buf, 0xaa, sizeof(buf));
		assert_int_equal(bfs_xattr_get(&m, name, buf, sizeof(buf)), (ssize_t)len);
		assert_memory_equal(buf, all + 100, len);
	}
	assert_int_equal(bfs_xattr_get(&m, "user.all", buf, sizeof(buf)), 256);
	assert_memory_equal(buf, all, 256);
	assert_int_equal(bfs_xattr_get(&m, "user.ünïcode {x} é", buf, sizeof(buf)), 1);
	assert_int_equal(bfs_xattr_get(&m, "security.selinux", buf, sizeof(buf)), 9);
	assert_memory_equal(buf, "system_u\0", 9);
	assert_string_equal(s3_meta_get(&m, "mode"), "33188"); /* other headers untouched */
	s3_meta_free(&m);
}

static void test_flags_and_errors(void **state)
{
	struct s3_meta m;
	char buf[8];
	(void)state;

	s3_meta_init(&m);
	assert_int_equal(bfs_xattr_get(&m, "user.a", buf, sizeof(buf)), -ENODATA);
	assert_int_equal(bfs_xattr_list(&m, buf, sizeof(buf)), 0);
	assert_int_equal(bfs_xattr_remove(&m, "user.a"), -ENODATA);
	assert_int_equal(bfs_xattr_set(&m, "user.a", "1", 1, XATTR_REPLACE), -ENODATA);
	assert_null(s3_meta_get(&m, "xattr"));

	assert_int_equal(bfs_xattr_set(&m, "user.a", "1", 1, XATTR_CREATE), 0);
	/* s3fs 1.90 refuses XATTR_CREATE whenever any attribute exists; we check the name. */
	assert_int_equal(bfs_xattr_set(&m, "user.b", "22", 2, XATTR_CREATE), 0);
	assert_int_equal(bfs_xattr_set(&m, "user.a", "3", 1, XATTR_CREATE), -EEXIST);
	assert_int_equal(bfs_xattr_set(&m, "user.a", "444", 3, XATTR_REPLACE), 0);
	assert_int_equal(bfs_xattr_get(&m, "user.a", buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "444", 3);
	assert_int_equal(bfs_xattr_get(&m, "user.a", buf, 2), -ERANGE);
	assert_int_equal(bfs_xattr_get(&m, "user.a", NULL, 0), 3);

	/* list: size 0 asks for the length; too small a buffer is -ERANGE. */
	assert_int_equal(bfs_xattr_list(&m, NULL, 0), 14);
	assert_int_equal(bfs_xattr_list(&m, buf, 8), -ERANGE);

	/* Empty values are kept (s3fs 1.90 silently drops them, but reads them back). */
	assert_int_equal(bfs_xattr_set(&m, "user.empty", NULL, 0, 0), 0);
	assert_int_equal(bfs_xattr_get(&m, "user.empty", buf, sizeof(buf)), 0);
	assert_int_equal(bfs_xattr_get(&m, "user.empty", NULL, 0), 0);

	/* Names s3fs's format cannot carry, and bad flags. */
	assert_int_equal(bfs_xattr_set(&m, "user.a,b", "1", 1, 0), -EINVAL);
	assert_int_equal(bfs_xattr_set(&m, "user.a:b", "1", 1, 0), -EINVAL);
	assert_int_equal(bfs_xattr_set(&m, "user.\"q\"", "1", 1, 0), -EINVAL);
	assert_int_equal(bfs_xattr_set(&m, "", "1", 1, 0), -EINVAL);
	assert_int_equal(bfs_xattr_set(&m, "user.c", "1", 1, XATTR_CREATE | XATTR_REPLACE),
			 -EINVAL);

	/* Removing the last attribute removes the header. */
	assert_int_equal(bfs_xattr_remove(&m, "user.a"), 0);
	assert_int_equal(bfs_xattr_remove(&m, "user.a"), -ENODATA);
	assert_int_equal(bfs_xattr_remove(&m, "user.b"), 0);
	assert_non_null(s3_meta_get(&m, "xattr"));
	assert_int_equal(bfs_xattr_remove(&m, "user.empty"), 0);
	assert_null(s3_meta_get(&m, "xattr"));
	s3_meta_free(&m);
}

static void test_metadata_limit(void **state)
{
	struct s3_meta m;
	static char big[2048];
	(void)state;

	memset(big, 'x', sizeof(big));
	s3_meta_init(&m);
	assert_int_equal(bfs_xattr_set(&m, "user.small", "1", 1, 0), 0);
	const char *before = s3_meta_get(&m, "xattr");
	char *saved = strdup(before);
	assert_int_equal(bfs_xattr_set(&m, "user.big", big, sizeof(big), 0), -ENOSPC);
	assert_string_equal(s3_meta_get(&m, "xattr"), saved); /* unchanged on failure */
	assert_int_equal(bfs_xattr_set(&m, "user.big", big, 1000, 0), 0);
	free(saved);
	s3_meta_free(&m);
}

/* Headers other tools (or a damaged s3fs header) left: what parses is kept. */
static void test_lenient_parsing(void **state)
{
	struct s3_meta m;
	char buf[32];
	(void)state;

	s3_meta_init(&m);
	/* Unencoded JSON, lowercase escapes, blanks. */
	assert_int_equal(s3_meta_set(&m, "xattr", "{\"user.a\":\"MQ==\", \"user.b\" : \"Mg%3d%3d\"}"),
			 0);
	assert_int_equal(bfs_xattr_get(&m, "user.a", buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], '1');
	assert_int_equal(bfs_xattr_get(&m, "user.b", buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], '2');

	/* Bad base64 and unquoted entries are skipped; the rest survives a set. */
	assert_int_equal(s3_meta_set(&m, "xattr", "%7B%22user.bad%22%3A%22%21%21%22%2Cjunk%2C%22user.ok%22%3A%22MQ%3D%3D%22%7D"), 0);
	assert_int_equal(bfs_xattr_get(&m, "user.bad", buf, sizeof(buf)), -ENODATA);
	assert_int_equal(bfs_xattr_list(&m, NULL, 0), 8);
	assert_int_equal(bfs_xattr_set(&m, "user.new", "n", 1, 0), 0);
	assert_int_equal(bfs_xattr_list(&m, buf, sizeof(buf)), 17);
	assert_memory_equal(buf, "user.new\0user.ok\0", 17);

	/* Not JSON at all: no attributes. */
	assert_int_equal(s3_meta_set(&m, "xattr", "garbage"), 0);
	assert_int_equal(bfs_xattr_list(&m, NULL, 0), 0);
	s3_meta_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_s3fs_value),
		cmocka_unit_test(test_writes_s3fs_value),
		cmocka_unit_test(test_roundtrip_binary),
		cmocka_unit_test(test_flags_and_errors),
		cmocka_unit_test(test_metadata_limit),
		cmocka_unit_test(test_lenient_parsing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
