/* tests/unit/test_fs_meta.c — fs/meta.c: s3fs-compatible attribute headers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sys/sysmacros.h>

#include "fs/fs.h"

static const struct bfs_defaults defaults = {.uid = 1000, .gid = 100, .umask = 022};
static const struct timespec last_modified = {.tv_sec = 1700000000, .tv_nsec = 0};

/* An object as HEAD returns it: size, Last-Modified, content type and name/value pairs. */
static void object(struct s3_object *o, uint64_t size, const char *ctype, ...)
{
	va_list ap;
	const char *name;

	s3_object_init(o);
	o->size = size;
	o->last_modified = last_modified;
	snprintf(o->content_type, sizeof(o->content_type), "%s", ctype);
	va_start(ap, ctype);
	while ((name = va_arg(ap, const char *))) {
		const char *value = va_arg(ap, const char *);
		assert_int_equal(s3_meta_set(&o->meta, name, value), 0);
	}
	va_end(ap);
}

static void assert_ts(struct timespec ts, long long sec, long nsec)
{
	assert_int_equal((long long)ts.tv_sec, sec);
	assert_int_equal(ts.tv_nsec, nsec);
}

static void check_time(const char *s, long long sec, long nsec)
{
	struct timespec ts = {-7, -7};
	assert_int_equal(bfs_meta_parse_time(s, &ts), 0);
	assert_ts(ts, sec, nsec);
}

static void test_parse_time(void **state)
{
	(void)state;
	/* As s3fs 1.90 writes them. */
	check_time("1609459200", 1609459200, 0);
	check_time("1609459200.123456789", 1609459200, 123456789);
	check_time("1609459200.000000005", 1609459200, 5);
	check_time("1609459200.500000000", 1609459200, 500000000);
	check_time("0", 0, 0);
	/* rclone's float seconds: a decimal fraction (s3fs 1.90 would read ".5" as 5 ns). */
	check_time("1609459200.5", 1609459200, 500000000);
	check_time("1609459200.123", 1609459200, 123000000);
	check_time("1609459200.1234567", 1609459200, 123456700);
	/* Digits past nanoseconds are dropped; blanks around the value are allowed. */
	check_time("1609459200.123456789123", 1609459200, 123456789);
	check_time(" 1609459200 ", 1609459200, 0);
	/* Before 1970: -S.F means -(S + F). */
	check_time("-5", -5, 0);
	check_time("-1.5", -2, 500000000);
	check_time("-0.000000001", -1, 999999999);
}

static void test_parse_time_rejects(void **state)
{
	static const char *const bad[] = {
		"", " ", "abc", "1.", ".5", "1e9", "12x", "--1", "+1", "1.5.6", "0x10",
		"1609459200,5", "99999999999999999999999", "1 2",
	};
	struct timespec ts;
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = bfs_meta_parse_time(bad[i], &ts);
		if (rc != -EINVAL)
			fail_msg("'%s' parsed (rc %d)", bad[i], rc);
	}
	assert_int_equal(bfs_meta_parse_time(NULL, &ts), -EINVAL);
}

/* What bfs_meta_from_stat writes for st, compared with what s3fs 1.90 wrote for the same
 * file (values captured from the real binary, see docs/layout.md). */
static void test_from_stat_matches_s3fs(void **state)
{
	struct s3_meta m;
	struct stat st;
	(void)state;

	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFREG | 0640;
	st.st_uid = 1234;
	st.st_gid = 5678;
	st.st_mtim = (struct timespec){1609459200, 123456789};
	st.st_ctim = (struct timespec){1609459200, 5};
	st.st_atim = (struct timespec){1622505600, 0};
	s3_meta_init(&m);
	assert_int_equal(bfs_meta_from_stat(&st, &m), 0);
	assert_string_equal(s3_meta_get(&m, "mode"), "33184");
	assert_string_equal(s3_meta_get(&m, "uid"), "1234");
	assert_string_equal(s3_meta_get(&m, "gid"), "5678");
	assert_string_equal(s3_meta_get(&m, "mtime"), "1609459200.123456789");
	assert_string_equal(s3_meta_get(&m, "ctime"), "1609459200.000000005");
	assert_string_equal(s3_meta_get(&m, "atime"), "1622505600");
	assert_int_equal(m.n, 6);

	/* Other types, as s3fs stored them. */
	static const struct { mode_t mode; const char *s; } types[] = {
		{S_IFDIR | 0755, "16877"},  {S_IFDIR | 01777, "17407"}, {S_IFLNK | 0777, "41471"},
		{S_IFREG | 0644, "33188"},  {S_IFREG | 04755, "35309"}, {S_IFIFO | 0644, "4516"},
		{S_IFCHR | 0644, "8612"},
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		st.st_mode = types[i].mode;
		assert_int_equal(bfs_meta_from_stat(&st, &m), 0);
		assert_string_equal(s3_meta_get(&m, "mode"), types[i].s);
	}
	assert_int_equal(m.n, 7); /* replaced, not added; + rdev of the device */
	assert_string_equal(s3_meta_get(&m, "rdev"), "0");
	s3_meta_free(&m);

	/* A device's number, as s3fs stores it, and back. */
	st.st_mode = S_IFBLK | 0660;
	st.st_rdev = makedev(8, 17);
	s3_meta_init(&m);
	assert_int_equal(bfs_meta_from_stat(&st, &m), 0);
	assert_string_equal(s3_meta_get(&m, "rdev"), "2065");
	struct s3_object o;
	s3_object_init(&o);
	o.meta = m;
	struct stat back;
	bfs_meta_to_stat(&o, false, &defaults, &back);
	assert_true(S_ISBLK(back.st_mode));
	assert_int_equal(back.st_rdev, makedev(8, 17));
	s3_meta_free(&m);
}

/* The headers s3fs 1.90 put on "f1" after chmod 640, chown 1234:5678 and
 * touch -d '2021-01-01 00:00:00.123456789 UTC'. */
static void test_to_stat_s3fs_object(void **state)
{
	struct s3_object o;
	struct stat st;
	(void)state;

	object(&o, 6, "application/octet-stream", "atime", "1609459200.123456789", "ctime",
	       "1609459200.123456789", "gid", "5678", "mode", "33184", "mtime",
	       "1609459200.123456789", "uid", "1234", NULL);
	bfs_meta_to_stat(&o, false, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFREG | 0640);
	assert_int_equal(st.st_uid, 1234);
	assert_int_equal(st.st_gid, 5678);
	assert_int_equal(st.st_size, 6);
	assert_int_equal(st.st_nlink, 1);
	assert_ts(st.st_mtim, 1609459200, 123456789);
	assert_ts(st.st_ctim, 1609459200, 123456789);
	assert_ts(st.st_atim, 1609459200, 123456789);
	s3_object_free(&o);

	/* s3fs's symlink "l2" -> /some/abs/target: the body is the target. */
	object(&o, 16, "application/octet-stream", "mode", "41471", "uid", "0", "gid", "0",
	       "mtime", "1795635498", "ctime", "1795635498", "atime", "1795635498", NULL);
	bfs_meta_to_stat(&o, false, &defaults, &st);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0777);
	assert_int_equal(st.st_size, 16);
	assert_int_equal(st.st_uid, 0);
	assert_ts(st.st_mtim, 1795635498, 0);
	s3_object_free(&o);

	/* s3fs's "d1/" marker after chmod 1777. */
	object(&o, 0, "application/x-directory", "mode", "17407", "uid", "0", "gid", "0",
	       "mtime", "1795635563.288952977", NULL);
	bfs_meta_to_stat(&o, true, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFDIR | 01777);
	assert_int_equal(st.st_size, 0);
	assert_ts(st.st_mtim, 1795635563, 288952977);
	s3_object_free(&o);
}

static void roundtrip(mode_t mode, struct timespec mt, struct timespec ct, struct timespec at)
{
	struct stat in, out;
	struct s3_object o;

	memset(&in, 0, sizeof(in));
	in.st_mode = mode;
	in.st_uid = 4000000000u;
	in.st_gid = 0;
	in.st_mtim = mt;
	in.st_ctim = ct;
	in.st_atim = at;
	object(&o, 10, "application/octet-stream", NULL);
	assert_int_equal(bfs_meta_from_stat(&in, &o.meta), 0);
	bfs_meta_to_stat(&o, S_ISDIR(mode), &defaults, &out);
	assert_int_equal(out.st_mode, mode);
	assert_int_equal(out.st_uid, in.st_uid);
	assert_int_equal(out.st_gid, in.st_gid);
	assert_ts(out.st_mtim, mt.tv_sec, mt.tv_nsec);
	assert_ts(out.st_ctim, ct.tv_sec, ct.tv_nsec);
	assert_ts(out.st_atim, at.tv_sec, at.tv_nsec);
	s3_object_free(&o);
}

static void test_roundtrip(void **state)
{
	static const mode_t modes[] = {
		S_IFREG | 0644, S_IFREG | 0, S_IFREG | 07777, S_IFDIR | 0700, S_IFDIR | 01777,
		S_IFLNK | 0777, S_IFIFO | 0600, S_IFSOCK | 0755, S_IFCHR | 0620, S_IFBLK | 0660,
	};
	static const struct timespec times[] = {
		{0, 0}, {1, 1}, {1609459200, 123456789}, {1609459200, 999999999},
		{1609459200, 100000000}, {4102444800, 5}, {-1, 999999999}, {-86400, 0},
		{-86400, 500000000},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		roundtrip(modes[i], times[2], times[1], times[0]);
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++)
		roundtrip(S_IFREG | 0600, times[i], times[(i + 1) % 9], times[(i + 2) % 9]);
}

static void test_no_metadata_defaults(void **state)
{
	struct s3_object o;
	struct stat st;
	(void)state;

	/* An object another tool uploaded: regular file, 0666 & ~umask, the mount's owner. */
	object(&o, 3, "binary/octet-stream", NULL);
	bfs_meta_to_stat(&o, false, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFREG | 0644);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_gid, 100);
	assert_int_equal(st.st_size, 3);
	assert_ts(st.st_mtim, last_modified.tv_sec, 0);
	assert_ts(st.st_ctim, last_modified.tv_sec, 0);
	assert_ts(st.st_atim, last_modified.tv_sec, 0);

	struct bfs_defaults d2 = {.uid = 7, .gid = 8, .umask = 027};
	bfs_meta_to_stat(&o, false, &d2, &st);
	assert_int_equal(st.st_mode, S_IFREG | 0640);
	assert_int_equal(st.st_uid, 7);
	assert_int_equal(st.st_gid, 8);

	struct bfs_defaults d0 = {.uid = 0, .gid = 0, .umask = 0};
	bfs_meta_to_stat(&o, false, &d0, &st);
	assert_int_equal(st.st_mode, S_IFREG | 0666);
	bfs_meta_to_stat(&o, true, &d0, &st);
	assert_int_equal(st.st_mode, S_IFDIR | 0777);

	/* A "dir/" marker without metadata. */
	bfs_meta_to_stat(&o, true, &d2, &st);
	assert_int_equal(st.st_mode, S_IFDIR | 0750);
	assert_int_equal(st.st_size, 0);
	s3_object_free(&o);

	/* A prefix with no marker object at all. */
	bfs_meta_to_stat(NULL, true, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFDIR | 0755);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_gid, 100);
	assert_int_equal(st.st_nlink, 1);
	assert_ts(st.st_mtim, 0, 0);
}

static void test_partial_and_odd_metadata(void **state)
{
	struct s3_object o;
	struct stat st;
	(void)state;

	/* Permission bits only: a regular file (s3fs does the same). */
	object(&o, 1, "application/octet-stream", "mode", "420", NULL);
	bfs_meta_to_stat(&o, false, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFREG | 0644);
	s3_object_free(&o);

	/* Only uid: gid from the defaults. */
	object(&o, 1, "application/octet-stream", "uid", "77", NULL);
	bfs_meta_to_stat(&o, false, &defaults, &st);
	assert_int_equal(st.st_uid, 77);
	assert_int_equal(st.st_gid, 100);
	s3_object_free(&o);

	/* Unparsable values fall back. */
	object(&o, 1, "application/octet-stream", "mode", "rw-r--r--", "uid", "-1", "gid",
	       "x", "mtime", "abc", NULL);
	bfs_meta_to_stat(&o, false, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFREG | 0644);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_gid, 100);
	assert_ts(st.st_mtim, last_modified.tv_sec, 0);
	s3_object_free(&o);

	/* s3fs's "unknown" time (a marker made by chmod of an implicit directory). */
	object(&o, 0, "application/x-directory", "mode", "16832", "mtime", "-1", "atime", "-1",
	       "ctime", "1795636129", NULL);
	bfs_meta_to_stat(&o, true, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFDIR | 0700);
	assert_ts(st.st_mtim, last_modified.tv_sec, 0);
	assert_ts(st.st_atim, last_modified.tv_sec, 0);
	assert_ts(st.st_ctim, 1795636129, 0);
	s3_object_free(&o);

	/* A directory content type without a mode is a directory. */
	object(&o, 0, "application/x-directory; charset=UTF-8", NULL);
	bfs_meta_to_stat(&o, false, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFDIR | 0755);
	s3_object_free(&o);

	/* A "dir/" marker whose mode says regular file is still a directory. */
	object(&o, 0, "application/octet-stream", "mode", "33188", NULL);
	bfs_meta_to_stat(&o, true, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFDIR | 0644);
	s3_object_free(&o);

	/* Header names are case-insensitive (S3 may return X-Amz-Meta-Mode). */
	object(&o, 0, "application/octet-stream", "Mode", "33261", NULL);
	bfs_meta_to_stat(&o, false, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFREG | 0755);
	s3_object_free(&o);
}

static void test_rclone_and_gcs(void **state)
{
	struct s3_object o;
	struct stat st;
	(void)state;

	/* rclone sets only x-amz-meta-mtime, as float seconds. */
	object(&o, 5, "text/plain", "mtime", "1609459200.5", NULL);
	bfs_meta_to_stat(&o, false, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFREG | 0644);
	assert_ts(st.st_mtim, 1609459200, 500000000);
	assert_ts(st.st_atim, 1609459200, 500000000);
	assert_ts(st.st_ctim, last_modified.tv_sec, 0);
	s3_object_free(&o);

	/* GCS: octal mode, decimal uid/gid, integer mtime. */
	object(&o, 1, "binary/octet-stream", "goog-reserved-posix-mode", "600",
	       "goog-reserved-posix-uid", "42", "goog-reserved-posix-gid", "43",
	       "goog-reserved-file-mtime", "1609459200", NULL);
	bfs_meta_to_stat(&o, false, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFREG | 0600);
	assert_int_equal(st.st_uid, 42);
	assert_int_equal(st.st_gid, 43);
	assert_ts(st.st_mtim, 1609459200, 0);
	s3_object_free(&o);

	/* s3fs headers win over the GCS ones. */
	object(&o, 1, "binary/octet-stream", "goog-reserved-posix-mode", "600", "mode",
	       "33261", "goog-reserved-file-mtime", "1", "mtime", "2", "uid", "5",
	       "goog-reserved-posix-uid", "6", NULL);
	bfs_meta_to_stat(&o, false, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFREG | 0755);
	assert_int_equal(st.st_uid, 5);
	assert_ts(st.st_mtim, 2, 0);
	s3_object_free(&o);

	/* A GCS directory mode is octal too. */
	object(&o, 0, "application/x-directory", "goog-reserved-posix-mode", "755", NULL);
	bfs_meta_to_stat(&o, true, &defaults, &st);
	assert_int_equal(st.st_mode, S_IFDIR | 0755);
	s3_object_free(&o);
}

/* A size no off_t holds (Content-Length: 99999999999999999999 saturates strtoull) is never
 * reported negative. */
static void test_size_beyond_off_t(void **state)
{
	(void)state;
	struct s3_object o;
	struct stat st;

	object(&o, UINT64_MAX, "application/octet-stream", NULL);
	bfs_meta_to_stat(&o, false, &defaults, &st);
	assert_true(st.st_size == INT64_MAX);
	assert_true(st.st_blocks > 0);
	o.size = (uint64_t)INT64_MAX - 100; /* st_blocks: no overflow */
	bfs_meta_to_stat(&o, false, &defaults, &st);
	assert_true(st.st_size == INT64_MAX - 100);
	assert_true(st.st_blocks == (blkcnt_t)(((uint64_t)INT64_MAX - 100 + 511) / 512));
	s3_object_free(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_time),
		cmocka_unit_test(test_parse_time_rejects),
		cmocka_unit_test(test_from_stat_matches_s3fs),
		cmocka_unit_test(test_to_stat_s3fs_object),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_no_metadata_defaults),
		cmocka_unit_test(test_partial_and_odd_metadata),
		cmocka_unit_test(test_rclone_and_gcs),
		cmocka_unit_test(test_size_beyond_off_t),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
