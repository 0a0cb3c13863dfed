/* tests/unit/test_fs_options.c — fs/options.c: the command line. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs/fs.h"
#include "util/util.h"

static char tmpdir[PATH_MAX]; /* a real directory to mount on */
static char tmpfile_path[PATH_MAX + 16];
static char err[256];

static int setup(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/bfs-opt-XXXXXX";
	if (!mkdtemp(tmpl))
		return -1;
	snprintf(tmpdir, sizeof(tmpdir), "%s", tmpl);
	snprintf(tmpfile_path, sizeof(tmpfile_path), "%s/file", tmpdir);
	FILE *f = fopen(tmpfile_path, "w");
	if (!f)
		return -1;
	fclose(f);
	static const char *const vars[] = {
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
	};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	setenv("HOME", tmpdir, 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(tmpfile_path);
	rmdir(tmpdir);
	return 0;
}

/* Runs bfs_options_parse on a NULL-terminated list of arguments after "bucketfs". */
static int run(struct bfs_options *o, ...)
{
	char *argv[64];
	int argc = 0;
	va_list ap;

	argv[argc++] = "bucketfs";
	va_start(ap, o);
	for (char *a; (a = va_arg(ap, char *)); )
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	memset(err, 'X', sizeof(err));
	return bfs_options_parse(argc, argv, o, err, sizeof(err));
}

/* The fuse_argv entries after argv[0], joined with spaces. */
static const char *fuse_args(const struct bfs_options *o)
{
	static char buf[1024];
	buf[0] = '\0';
	assert_non_null(o->fuse_argv);
	assert_null(o->fuse_argv[o->fuse_argc]);
	for (int i = 1; i < o->fuse_argc; i++) {
		if (i > 1)
			strcat(buf, " ");
		strcat(buf, o->fuse_argv[i]);
	}
	return buf;
}

static void test_defaults(void **state)
{
	struct bfs_options o;
	char path[PATH_MAX * 2];
	(void)state;

	assert_int_equal(run(&o, "mybucket", tmpdir, NULL), 0);
	assert_string_equal(err, "");
	assert_string_equal(o.bucket, "mybucket");
	assert_string_equal(o.prefix, "");
	assert_string_equal(o.mountpoint, tmpdir);
	assert_null(o.endpoint);
	assert_string_equal(o.region, "us-east-1");
	assert_string_equal(o.profile, "default");
	assert_false(o.path_style);
	assert_false(o.insecure);
	assert_null(o.ca_file);
	assert_null(o.passwd_file);
	if (geteuid() == 0)
		snprintf(path, sizeof(path),
			 "/var/cache/bucketfs/s3.us-east-1.amazonaws.com/mybucket");
	else
		snprintf(path, sizeof(path),
			 "%s/.cache/bucketfs/s3.us-east-1.amazonaws.com/mybucket", tmpdir);
	assert_string_equal(o.cache_dir, path);
	assert_true(o.stat_ttl == 5);
	assert_false(o.uid_set);
	assert_false(o.gid_set);
	assert_int_equal(o.uid, geteuid());
	assert_int_equal(o.gid, getegid());
	assert_int_equal(o.umask, 022);
	assert_true(o.upload_delay == 0.5);
	assert_int_equal(o.consistency, BFS_CLOSE_TO_OPEN);
	assert_true(o.neg_ttl == 1);
	assert_int_equal(o.block_size, 1 << 20);
	assert_int_equal(o.cache_size, 0);
	assert_int_equal(o.cache_ttl, 0);
	assert_int_equal(o.part_size, 8 << 20);
	assert_int_equal(o.copy_limit, 5ull << 30);
	assert_int_equal(o.readahead, 64 << 20);
	assert_int_equal(o.max_connections, 16);
	assert_false(o.foreground);
	assert_false(o.debug);
	assert_false(o.allow_other);
	assert_false(o.read_only);
	assert_string_equal(o.fuse_argv[0], "bucketfs");
	assert_string_equal(fuse_args(&o), "-o fsname=mybucket -o subtype=bucketfs");
	bfs_options_free(&o);
	assert_null(o.bucket);
	bfs_options_free(&o); /* twice is harmless */
}

static void test_all_options(void **state)
{
	struct bfs_options o;
	char path[PATH_MAX * 2], cwd[PATH_MAX];
	(void)state;

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(run(&o, "-f", "b-1.x:/a/b/", tmpdir, "-o",
			     "endpoint=http://127.0.0.1:4568/,path_style,region=eu-west-1",
			     "-o", "stat_ttl=0.25,uid=1234,gid=0,umask=027,upload_delay=0",
			     "-osync_close,block_size=4M,cache_size=10G,cache_ttl=60,part_size=16M",
			     "-o", "copy_limit=64M",
			     "-o", "parallel=4,no_verify_ssl,ca_file=rel/ca.pem,profile=p",
			     "-o", "passwd_file=/x/y,cache_dir=./c", NULL), 0);
	assert_string_equal(o.bucket, "b-1.x");
	assert_string_equal(o.prefix, "a/b/");
	assert_string_equal(o.endpoint, "http://127.0.0.1:4568");
	assert_true(o.path_style);
	assert_string_equal(o.region, "eu-west-1");
	assert_true(o.stat_ttl == 0.25);
	assert_true(o.uid_set);
	assert_int_equal(o.uid, 1234);
	assert_true(o.gid_set);
	assert_int_equal(o.gid, 0);
	assert_int_equal(o.umask, 027);
	assert_true(o.upload_delay == 0);
	assert_int_equal(o.consistency, BFS_CLOSE_TO_OPEN);
	assert_int_equal(o.block_size, 4 << 20);
	assert_int_equal(o.cache_size, 10ULL << 30);
	assert_int_equal(o.cache_ttl, 60);
	assert_int_equal(o.part_size, 16 << 20);
	assert_int_equal(o.copy_limit, 64 << 20);
	assert_int_equal(o.max_connections, 4);
	assert_true(o.insecure);
	snprintf(path, sizeof(path), "%s/rel/ca.pem", cwd);
	assert_string_equal(o.ca_file, path);
	assert_string_equal(o.profile, "p");
	assert_string_equal(o.passwd_file, "/x/y");
	snprintf(path, sizeof(path), "%s/c", cwd);
	assert_string_equal(o.cache_dir, path); /* absolute: the daemon runs in / */
	assert_true(o.foreground);
	assert_false(o.debug);
	assert_string_equal(fuse_args(&o), "-o fsname=b-1.x:a/b -o subtype=bucketfs");
	bfs_options_free(&o);

	/* The default cache_dir names the endpoint's host and port. */
	assert_int_equal(run(&o, "bkt", tmpdir, "-o", "endpoint=https://S3.Example.com:9000", NULL),
			 0);
	if (geteuid() == 0)
		snprintf(path, sizeof(path), "/var/cache/bucketfs/s3.example.com_9000/bkt");
	else
		snprintf(path, sizeof(path), "%s/.cache/bucketfs/s3.example.com_9000/bkt", tmpdir);
	assert_string_equal(o.cache_dir, path);
	bfs_options_free(&o);

	/* writeback: a missing name is trusted as long as the listing that lacks it */
	assert_int_equal(run(&o, "bkt", tmpdir, "-o", "consistency=writeback,stat_ttl=3", NULL), 0);
	assert_int_equal(o.consistency, BFS_WRITEBACK);
	assert_true(o.neg_ttl == 3);
	bfs_options_free(&o);
	assert_int_equal(run(&o, "bkt", tmpdir, "-o", "consistency=writeback,neg_ttl=0.5", NULL), 0);
	assert_true(o.neg_ttl == 0.5);
	bfs_options_free(&o);
	assert_int_equal(run(&o, "bkt", tmpdir, "-o", "consistency=writeback,sync_close", NULL), 0);
	assert_int_equal(o.consistency, BFS_CLOSE_TO_OPEN);
	bfs_options_free(&o);

	/* "~/" is the home directory; later options win. */
	assert_int_equal(run(&o, "bkt", tmpdir, "-o", "cache_dir=/a,cache_dir=~/cc,stat_ttl=1",
			     "-d", "-o", "stat_ttl=7", NULL), 0);
	snprintf(path, sizeof(path), "%s/cc", tmpdir);
	assert_string_equal(o.cache_dir, path);
	assert_true(o.stat_ttl == 7);
	assert_true(o.debug);
	assert_true(o.foreground);
	bfs_options_free(&o);
}

static void test_fuse_passthrough(void **state)
{
	struct bfs_options o;
	(void)state;

	assert_int_equal(run(&o, "bkt", tmpdir, "-o",
			     "allow_other,default_permissions,ro,nosuid,nodev,fsname=foo,max_read=131072",
			     "-oauto_unmount", NULL), 0);
	assert_true(o.allow_other);
	assert_true(o.read_only);
	assert_string_equal(fuse_args(&o),
			    "-o allow_other -o default_permissions -o ro -o nosuid -o nodev "
			    "-o fsname=foo -o max_read=131072 -o auto_unmount -o subtype=bucketfs");
	bfs_options_free(&o);

	/* mount(8) / fstab style: the noise is ignored, kernel flags go to FUSE. */
	assert_int_equal(run(&o, "bkt", tmpdir, "-o",
			     "rw,nosuid,nodev,_netdev,nofail,noauto,user,x-systemd.automount,"
			     "relatime,defaults,comment=foo,subtype=s3", NULL), 0);
	assert_false(o.read_only);
	assert_string_equal(fuse_args(&o),
			    "-o rw -o nosuid -o nodev -o subtype=s3 -o fsname=bkt");
	bfs_options_free(&o);

	/* A comma in the prefix is escaped for libfuse's parser. */
	assert_int_equal(run(&o, "bkt:a,b", tmpdir, NULL), 0);
	assert_string_equal(o.prefix, "a,b/");
	assert_string_equal(fuse_args(&o), "-o fsname=bkt:a\\,b -o subtype=bucketfs");
	bfs_options_free(&o);
}

static void test_environment(void **state)
{
	struct bfs_options o;
	(void)state;

	setenv("AWS_ENDPOINT_URL", "http://env:1", 1);
	setenv("AWS_DEFAULT_REGION", "ap-south-1", 1);
	setenv("AWS_PROFILE", "envprof", 1);
	assert_int_equal(run(&o, "bkt", tmpdir, NULL), 0);
	assert_string_equal(o.endpoint, "http://env:1");
	assert_string_equal(o.region, "ap-south-1");
	assert_string_equal(o.profile, "envprof");
	bfs_options_free(&o);

	setenv("AWS_ENDPOINT_URL_S3", "http://s3env:2", 1);
	setenv("AWS_REGION", "eu-north-1", 1);
	assert_int_equal(run(&o, "bkt", tmpdir, NULL), 0);
	assert_string_equal(o.endpoint, "http://s3env:2");
	assert_string_equal(o.region, "eu-north-1");
	bfs_options_free(&o);

	/* The command line wins. */
	assert_int_equal(run(&o, "bkt", tmpdir, "-o", "endpoint=http://cli:3,region=r,profile=c",
			     NULL), 0);
	assert_string_equal(o.endpoint, "http://cli:3");
	assert_string_equal(o.region, "r");
	assert_string_equal(o.profile, "c");
	bfs_options_free(&o);

	setenv("AWS_ENDPOINT_URL", "ftp://nope", 1);
	unsetenv("AWS_ENDPOINT_URL_S3");
	assert_int_equal(run(&o, "bkt", tmpdir, NULL), -EINVAL);
	assert_non_null(strstr(err, "AWS_ENDPOINT_URL"));
	unsetenv("AWS_ENDPOINT_URL");
	unsetenv("AWS_REGION");
	unsetenv("AWS_DEFAULT_REGION");
	unsetenv("AWS_PROFILE");
}

/* Each bad command line gives -EINVAL and exactly this one line. */
static void bad(const char *want, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	struct bfs_options o;

	argv[argc++] = "bucketfs";
	va_start(ap, want);
	for (char *a; (a = va_arg(ap, char *)); )
		argv[argc++] = strcmp(a, "MNT") == 0 ? tmpdir : strcmp(a, "FILE") == 0 ? tmpfile_path : a;
	va_end(ap);
	argv[argc] = NULL;
	memset(err, 'X', sizeof(err));
	int rc = bfs_options_parse(argc, argv, &o, err, sizeof(err));
	if (rc != -EINVAL)
		fail_msg("rc %d for '%s'", rc, want);
	assert_null(strchr(err, '\n'));
	assert_string_equal(err, want);
	assert_null(o.bucket); /* freed on error */
	assert_null(o.fuse_argv);
}

static void test_bad_values(void **state)
{
	(void)state;
	bad("bucketfs: bad value for stat_ttl: '-1' (want a number of seconds >= 0)",
	    "bkt", "MNT", "-o", "stat_ttl=-1", NULL);
	bad("bucketfs: bad value for stat_ttl: 'nan' (want a number of seconds >= 0)",
	    "bkt", "MNT", "-o", "stat_ttl=nan", NULL);
	bad("bucketfs: bad value for consistency: 'strict' (want close-to-open or writeback)",
	    "bkt", "MNT", "-o", "consistency=strict", NULL);
	bad("bucketfs: bad value for readahead: '2G' (want a size up to 1G (0: off))",
	    "bkt", "MNT", "-o", "readahead=2G", NULL);
	bad("bucketfs: bad value for neg_ttl: '-2' (want a number of seconds >= 0)",
	    "bkt", "MNT", "-o", "neg_ttl=-2", NULL);
	bad("bucketfs: bad value for upload_delay: '1s' (want a number of seconds >= 0)",
	    "bkt", "MNT", "-o", "upload_delay=1s", NULL);
	bad("bucketfs: bad value for uid: 'abc' (want a numeric user id)",
	    "bkt", "MNT", "-o", "uid=abc", NULL);
	bad("bucketfs: bad value for gid: '-5' (want a numeric group id)",
	    "bkt", "MNT", "-o", "gid=-5", NULL);
	bad("bucketfs: bad value for umask: '999' (want an octal mask from 000 to 777, like 022)",
	    "bkt", "MNT", "-o", "umask=999", NULL);
	bad("bucketfs: bad value for umask: '1777' (want an octal mask from 000 to 777, like 022)",
	    "bkt", "MNT", "-o", "umask=1777", NULL);
	bad("bucketfs: bad value for block_size: '3000' (want a power of two from 4K to 64M)",
	    "bkt", "MNT", "-o", "block_size=3000", NULL);
	bad("bucketfs: bad value for part_size: '1M' (want a size from 5M to 5G (S3's part limits))",
	    "bkt", "MNT", "-o", "part_size=1M", NULL);
	bad("bucketfs: bad value for copy_limit: '6G' (want a size from 5M to 5G)",
	    "bkt", "MNT", "-o", "copy_limit=6G", NULL);
	bad("bucketfs: bad value for cache_size: 'lots' (want a size like 4096, 512K, 8M or 1G)",
	    "bkt", "MNT", "-o", "cache_size=lots", NULL);
	bad("bucketfs: bad value for parallel: '0' (want a number of connections from 1 to 1000)",
	    "bkt", "MNT", "-o", "parallel=0", NULL);
	bad("bucketfs: bad value for cache_ttl: '1.5' (want a whole number of seconds, 0 = never)",
	    "bkt", "MNT", "-o", "cache_ttl=1.5", NULL);
	bad("bucketfs: bad value for endpoint: 'ftp://x' (want a URL like https://s3.example.com "
	    "or http://127.0.0.1:4568)", "bkt", "MNT", "-o", "endpoint=ftp://x", NULL);
	bad("bucketfs: bad value for max_read: 'big' (want a number of bytes)",
	    "bkt", "MNT", "-o", "max_read=big", NULL);
	bad("bucketfs: unknown option 'foo' (see bucketfs --help)",
	    "bkt", "MNT", "-o", "rw,foo", NULL);
	bad("bucketfs: unknown option 'use_cache' (see bucketfs --help)",
	    "bkt", "MNT", "-o", "use_cache=/tmp", NULL);
	bad("bucketfs: option path_style takes no value (got '1')",
	    "bkt", "MNT", "-o", "path_style=1", NULL);
	bad("bucketfs: option nosuid takes no value (got 'yes')",
	    "bkt", "MNT", "-o", "nosuid=yes", NULL);
	bad("bucketfs: option stat_ttl needs a value (stat_ttl=...)",
	    "bkt", "MNT", "-o", "stat_ttl", NULL);
	bad("bucketfs: option region needs a value (region=...)",
	    "bkt", "MNT", "-o", "region=", NULL);
	bad("bucketfs: -o needs an argument", "bkt", "MNT", "-o", NULL);
	bad("bucketfs: unknown argument '-x' (see bucketfs --help)", "bkt", "MNT", "-x", NULL);
}

static void test_bad_arguments(void **state)
{
	char want[PATH_MAX + 128];
	(void)state;
	bad("bucketfs: missing BUCKET (usage: bucketfs BUCKET[:PREFIX] MOUNTPOINT [-o options])",
	    "-f", NULL);
	bad("bucketfs: missing MOUNTPOINT (usage: bucketfs BUCKET[:PREFIX] MOUNTPOINT "
	    "[-o options])", "bkt", "-o", "ro", NULL);
	bad("bucketfs: unexpected argument 'extra' (usage: bucketfs BUCKET[:PREFIX] MOUNTPOINT "
	    "[-o options])", "bkt", "MNT", "extra", NULL);
	bad("bucketfs: mountpoint /nonexistent/bfs: No such file or directory",
	    "bkt", "/nonexistent/bfs", NULL);
	snprintf(want, sizeof(want), "bucketfs: mountpoint %s is not a directory", tmpfile_path);
	bad(want, "bkt", "FILE", NULL);

	static const char *const buckets[] = {
		"My_Bucket", "ab", ".abc", "abc-", "a..b", "192.168.1.1", "UPPER",
		"a234567890123456789012345678901234567890123456789012345678901234",
	};
	for (size_t i = 0; i < sizeof(buckets) / sizeof(buckets[0]); i++) {
		snprintf(want, sizeof(want), "bucketfs: bad bucket name '%s' (want 3-63 lowercase "
			 "letters, digits, '.' and '-', starting and ending with a letter or "
			 "digit)", buckets[i]);
		bad(want, buckets[i], "MNT", NULL);
	}
	bad("bucketfs: bad prefix 'a//b' (empty, '.' or '..' path component)",
	    "bkt:a//b", "MNT", NULL);
	bad("bucketfs: bad prefix 'a/../b' (empty, '.' or '..' path component)",
	    "bkt:a/../b", "MNT", NULL);
}

static void test_help_version(void **state)
{
	struct bfs_options o;
	(void)state;
	/* Usage and version go to stdout; keep the test log readable. */
	fflush(stdout);
	int saved = dup(1), devnull = open("/dev/null", O_WRONLY);
	assert_true(saved >= 0 && devnull >= 0);
	dup2(devnull, 1);
	int rc_help = run(&o, "--help", NULL);
	int rc_version = run(&o, "bkt", "-V", NULL);
	int rc_h = run(&o, "-h", "bkt", tmpdir, NULL);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	close(devnull);
	assert_int_equal(rc_help, 1);
	assert_int_equal(rc_version, 1);
	assert_int_equal(rc_h, 1);
	assert_null(o.fuse_argv);
}

/* Edge cases that are fine. */
static void test_accepted_edges(void **state)
{
	struct bfs_options o;
	(void)state;

	assert_int_equal(run(&o, "a.b-c1", tmpdir, "-o", "umask=0,uid=4294967294,stat_ttl=.5",
			     "--", NULL), 0);
	assert_int_equal(o.umask, 0);
	assert_int_equal(o.uid, 4294967294u);
	assert_true(o.stat_ttl == 0.5);
	bfs_options_free(&o);

	assert_int_equal(run(&o, "bkt:", tmpdir, "-o", ",,debug,", NULL), 0);
	assert_string_equal(o.prefix, "");
	assert_true(o.debug);
	bfs_options_free(&o);

	assert_int_equal(run(&o, "bkt:///deep/x///", tmpdir, "-o", "rw,ro", NULL), 0);
	assert_string_equal(o.prefix, "deep/x/");
	assert_true(o.read_only);
	bfs_options_free(&o);
}

/* log_level=: default info, debug with -d, an explicit level wins over -d; slow_ms=. */
static void test_log_level(void **state)
{
	struct bfs_options o;
	(void)state;

	assert_int_equal(run(&o, "bkt", tmpdir, NULL), 0);
	assert_int_equal(o.log_level, BFS_LOG_INFO);
	bfs_options_free(&o);
	assert_int_equal(run(&o, "bkt", tmpdir, "-d", NULL), 0);
	assert_int_equal(o.log_level, BFS_LOG_DEBUG);
	bfs_options_free(&o);
	assert_int_equal(run(&o, "bkt", tmpdir, "-d", "-o", "log_level=warn", NULL), 0);
	assert_int_equal(o.log_level, BFS_LOG_WARN);
	bfs_options_free(&o);
	static const struct { const char *opt; int level; } ok[] = {
		{ "log_level=error", BFS_LOG_ERR }, { "log_level=warn", BFS_LOG_WARN },
		{ "log_level=info", BFS_LOG_INFO }, { "log_level=debug", BFS_LOG_DEBUG },
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(run(&o, "bkt", tmpdir, "-o", ok[i].opt, NULL), 0);
		assert_int_equal(o.log_level, ok[i].level);
		bfs_options_free(&o);
	}
	assert_int_equal(run(&o, "bkt", tmpdir, "-o", "log_level=loud", NULL), -EINVAL);
	assert_non_null(strstr(err, "log_level"));
	assert_int_equal(run(&o, "bkt", tmpdir, "-o", "log_level", NULL), -EINVAL);

	/* slow_ms=: off by default, 0 = every call */
	assert_int_equal(run(&o, "bkt", tmpdir, NULL), 0);
	assert_int_equal(o.slow_ms, -1);
	bfs_options_free(&o);
	assert_int_equal(run(&o, "bkt", tmpdir, "-o", "slow_ms=0", NULL), 0);
	assert_int_equal(o.slow_ms, 0);
	bfs_options_free(&o);
	assert_int_equal(run(&o, "bkt", tmpdir, "-o", "slow_ms=250", NULL), 0);
	assert_int_equal(o.slow_ms, 250);
	bfs_options_free(&o);
	assert_int_equal(run(&o, "bkt", tmpdir, "-o", "slow_ms=-1", NULL), -EINVAL);
	assert_int_equal(run(&o, "bkt", tmpdir, "-o", "slow_ms=1.5", NULL), -EINVAL);
	assert_non_null(strstr(err, "slow_ms"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_all_options),
		cmocka_unit_test(test_fuse_passthrough),
		cmocka_unit_test(test_environment),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_help_version),
		cmocka_unit_test(test_accepted_edges),
		cmocka_unit_test(test_log_level),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
