/* tests/unit/test_fs_aws_config.c — fs/aws_config.c: profiles of ~/.aws/config and
 * ~/.aws/credentials, and region/endpoint precedence in fs/options.c. */
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs/fs_int.h"

static char home[PATH_MAX];
static char err[1024];

static void put(const char *name, const char *text, mode_t mode)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/.aws", home);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/.aws/%s", home, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
}

static void rm_all(void)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/.aws/config", home);
	unlink(path);
	snprintf(path, sizeof(path), "%s/.aws/credentials", home);
	unlink(path);
	snprintf(path, sizeof(path), "%s/mnt", home);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/.aws", home);
	rmdir(path);
}

static int setup(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/bfs-awscfg-XXXXXX";
	if (!mkdtemp(tmpl))
		return -1;
	snprintf(home, sizeof(home), "%s", tmpl);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rm_all();
	rmdir(home);
	return 0;
}

static int clean(void **state)
{
	(void)state;
	static const char *const vars[] = {
		"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE", "AWS_REGION",
		"AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
		"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
	};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	setenv("HOME", home, 1);
	rm_all();
	return 0;
}

static const char config[] =
	"# a comment\n"
	"[default]\n"
	"region = eu-west-1\n"
	"endpoint_url = https://global.example.com\n"
	"\n"
	"[profile dev]\n"
	"Region=us-west-2\n"
	"s3 =\n"
	"  endpoint_url = http://127.0.0.1:9000/\n"
	"  addressing_style = path\n"
	"endpoint_url = https://other.example.com\n"
	"cli_pager =\n"
	"\n"
	"[profile  svc ]\n"
	"services = local\n"
	"endpoint_url = https://global.example.com\n"
	"s3 =\n"
	"    endpoint_url = http://profile-s3.example.com\n"
	"[services local]\n"
	"s3 =\n"
	"  endpoint_url = http://services-s3.example.com\n"
	"dynamodb =\n"
	"  endpoint_url = http://dynamo.example.com\n"
	"[notaprofile]\n"
	"region = ap-south-1\n"
	"[profile ignore]\n"
	"endpoint_url = https://global.example.com\n"
	"ignore_configured_endpoint_urls = true\n"
	"[profile keys]\n"
	"aws_access_key_id = CK\n"
	"credential_process = /usr/bin/get-creds --flag\n";

static void test_profiles(void **state)
{
	(void)state;
	struct bfs_aws_profile p;
	put("config", config, 0600);

	assert_int_equal(bfs_aws_profile_load("default", true, &p, err, sizeof(err)), 0);
	assert_true(p.in_config);
	assert_false(p.in_credentials);
	assert_string_equal(p.region, "eu-west-1");
	assert_string_equal(p.endpoint_url, "https://global.example.com");
	assert_null(p.s3_endpoint_url);
	assert_false(p.path_style);
	bfs_aws_profile_free(&p);

	/* nested s3 block; keys case-insensitive; a top-level key after the block ends it */
	assert_int_equal(bfs_aws_profile_load("dev", true, &p, err, sizeof(err)), 0);
	assert_string_equal(p.region, "us-west-2");
	assert_string_equal(p.s3_endpoint_url, "http://127.0.0.1:9000/");
	assert_string_equal(p.endpoint_url, "https://other.example.com");
	assert_true(p.path_style);
	bfs_aws_profile_free(&p);

	/* [services NAME] wins over the profile's own s3 block */
	assert_int_equal(bfs_aws_profile_load("svc", true, &p, err, sizeof(err)), 0);
	assert_true(p.in_config);
	assert_string_equal(p.s3_endpoint_url, "http://services-s3.example.com");
	bfs_aws_profile_free(&p);

	/* [notaprofile] is not a profile in the config file */
	assert_int_equal(bfs_aws_profile_load("notaprofile", true, &p, err, sizeof(err)), 0);
	assert_false(p.in_config);
	assert_null(p.region);
	bfs_aws_profile_free(&p);

	assert_int_equal(bfs_aws_profile_load("ignore", true, &p, err, sizeof(err)), 0);
	assert_true(p.ignore_endpoints);
	bfs_aws_profile_free(&p);

	assert_int_equal(bfs_aws_profile_load("keys", true, &p, err, sizeof(err)), 0);
	assert_string_equal(p.config_keys.access_key, "CK");
	assert_null(p.config_keys.secret_key);
	assert_string_equal(p.config_process, "/usr/bin/get-creds --flag");
	bfs_aws_profile_free(&p);

	/* [profile default] is the default profile too */
	put("config", "[profile default]\nregion = sa-east-1\n", 0644);
	assert_int_equal(bfs_aws_profile_load("default", true, &p, err, sizeof(err)), 0);
	assert_string_equal(p.region, "sa-east-1");
	bfs_aws_profile_free(&p);
}

static void test_credentials_file(void **state)
{
	(void)state;
	struct bfs_aws_profile p;
	put("credentials", "[dev]\naws_access_key_id = FK\naws_secret_access_key = FS\n"
	    "[empty]\n", 0600);
	assert_int_equal(bfs_aws_profile_load("dev", true, &p, err, sizeof(err)), 0);
	assert_false(p.in_config);
	assert_true(p.in_credentials);
	assert_string_equal(p.file_keys.access_key, "FK");
	assert_string_equal(p.file_keys.secret_key, "FS");
	bfs_aws_profile_free(&p);
	/* a section without entries still exists */
	assert_int_equal(bfs_aws_profile_load("empty", true, &p, err, sizeof(err)), 0);
	assert_true(p.in_credentials);
	bfs_aws_profile_free(&p);
	/* without with_credentials the file is not read at all */
	put("credentials", "[dev]\n", 0644);
	assert_int_equal(bfs_aws_profile_load("dev", false, &p, err, sizeof(err)), 0);
	assert_false(p.in_credentials);
	bfs_aws_profile_free(&p);
	assert_int_equal(bfs_aws_profile_load("dev", true, &p, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, "accessible by group or others (mode 644)"));
}

/* Runs bfs_options_parse for BUCKET HOME/mnt plus one -o string (nullable). */
static int parse(struct bfs_options *o, const char *opts)
{
	char mnt[PATH_MAX + 8];
	snprintf(mnt, sizeof(mnt), "%s/mnt", home);
	mkdir(mnt, 0700);
	char *argv[] = { "bucketfs", "bkt", mnt, "-o", (char *)opts, NULL };
	return bfs_options_parse(opts ? 5 : 3, argv, o, err, sizeof(err));
}

static void expect_opts(const char *opts, const char *endpoint, const char *region,
			bool path_style)
{
	struct bfs_options o;
	int rc = parse(&o, opts);
	if (rc)
		fail_msg("parse %s: %d %s", opts ? opts : "-", rc, err);
	if (endpoint)
		assert_string_equal(o.endpoint, endpoint);
	else
		assert_null(o.endpoint);
	assert_string_equal(o.region, region);
	assert_int_equal(o.path_style, path_style);
	bfs_options_free(&o);
}

/* -o > environment > the config file's profile > the built-in default. */
static void test_precedence(void **state)
{
	(void)state;
	expect_opts(NULL, NULL, "us-east-1", false);
	put("config", config, 0644);
	expect_opts(NULL, "https://global.example.com", "eu-west-1", false);
	setenv("AWS_DEFAULT_REGION", "ca-central-1", 1);
	expect_opts(NULL, "https://global.example.com", "ca-central-1", false);
	setenv("AWS_REGION", "eu-north-1", 1);
	setenv("AWS_ENDPOINT_URL", "http://env.example.com", 1);
	expect_opts(NULL, "http://env.example.com", "eu-north-1", false);
	setenv("AWS_ENDPOINT_URL_S3", "http://env-s3.example.com", 1);
	expect_opts(NULL, "http://env-s3.example.com", "eu-north-1", false);
	expect_opts("endpoint=http://opt.example.com,region=me-south-1", "http://opt.example.com",
		    "me-south-1", false);

	/* the profile from $AWS_PROFILE or -o profile=; its s3 endpoint wins over its global one */
	static const char *const vars[] = { "AWS_REGION", "AWS_DEFAULT_REGION",
					    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3" };
	for (size_t i = 0; i < 4; i++)
		unsetenv(vars[i]);
	setenv("AWS_PROFILE", "dev", 1);
	expect_opts(NULL, "http://127.0.0.1:9000", "us-west-2", true);
	expect_opts("profile=svc", "http://services-s3.example.com", "us-east-1", false);
	expect_opts("profile=ignore", NULL, "us-east-1", false);
	setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true", 1);
	setenv("AWS_ENDPOINT_URL", "http://env.example.com", 1);
	expect_opts(NULL, NULL, "us-west-2", true);
	expect_opts("endpoint=http://opt.example.com", "http://opt.example.com", "us-west-2", true);

	/* a bad URL in the file is named with the file */
	unsetenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
	unsetenv("AWS_ENDPOINT_URL");
	put("config", "[default]\nendpoint_url = ftp://x\n", 0600);
	unsetenv("AWS_PROFILE");
	struct bfs_options o;
	assert_int_equal(parse(&o, NULL), -EINVAL);
	char want[3 * PATH_MAX];
	snprintf(want, sizeof(want), "bucketfs: bad value for endpoint_url in %s/.aws/config: "
		 "'ftp://x' (want a URL like https://s3.example.com or http://127.0.0.1:4568)", home);
	assert_string_equal(err, want);

	/* a config file with secrets readable by others stops the parse */
	put("config", "[default]\naws_session_token = T\n", 0640);
	assert_int_equal(parse(&o, NULL), -EACCES);
	assert_non_null(strstr(err, "it holds aws_session_token (line 2)"));

	/* imds_endpoint: -o, else $AWS_EC2_METADATA_SERVICE_ENDPOINT */
	put("config", "", 0600);
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1/", 1);
	assert_int_equal(parse(&o, NULL), 0);
	assert_string_equal(o.imds_endpoint, "http://127.0.0.1:1");
	bfs_options_free(&o);
	assert_int_equal(parse(&o, "imds_endpoint=http://127.0.0.2:2"), 0);
	assert_string_equal(o.imds_endpoint, "http://127.0.0.2:2");
	bfs_options_free(&o);
	assert_int_equal(parse(&o, "imds_endpoint=169.254.169.254"), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_profiles, clean),
		cmocka_unit_test_setup(test_credentials_file, clean),
		cmocka_unit_test_setup(test_precedence, clean),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
