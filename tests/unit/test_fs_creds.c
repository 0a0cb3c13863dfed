/* tests/unit/test_fs_creds.c — fs/creds.c: where the keys come from. */
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

#include "fs/fs.h"

static char home[PATH_MAX];
static char err[512];

/* Writes text to HOME/name with the given mode; returns the path (static buffer). */
static const char *put(const char *name, const char *text, mode_t mode)
{
	static char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", home, name);
	char *slash = strrchr(path, '/');
	*slash = '\0';
	mkdir(path, 0700);
	*slash = '/';
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static void rm(const char *name)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", home, name);
	unlink(path);
}

static int setup(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/bfs-creds-XXXXXX";
	if (!mkdtemp(tmpl))
		return -1;
	snprintf(home, sizeof(home), "%s", tmpl);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rm(".aws/credentials");
	rm(".aws/config");
	rm("other-creds");
	rm(".passwd-s3fs");
	rm("pw");
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/.aws", home);
	rmdir(path);
	rmdir(home);
	return 0;
}

/* Each test starts with an empty HOME and no AWS variables. */
static int clean(void **state)
{
	(void)state;
	static const char *const vars[] = {
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_PROFILE",
	};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	setenv("HOME", home, 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1); /* never the real 169.254.169.254 */
	return teardown(state) || mkdir(home, 0700);
}

static struct bfs_options opts(const char *bucket, const char *profile, const char *passwd)
{
	struct bfs_options o;
	memset(&o, 0, sizeof(o));
	o.bucket = (char *)bucket;
	o.profile = (char *)profile;
	o.passwd_file = (char *)passwd;
	return o;
}

static int load(const struct bfs_options *o, struct bfs_creds *c)
{
	memset(err, 'X', sizeof(err));
	err[sizeof(err) - 1] = '\0';
	return bfs_creds_load(o, c, err, sizeof(err));
}

static void expect(const struct bfs_options *o, const char *key, const char *secret,
		   const char *token)
{
	struct bfs_creds c;
	int rc = load(o, &c);
	if (rc)
		fail_msg("rc %d: %s", rc, err);
	assert_string_equal(c.access_key, key);
	assert_string_equal(c.secret_key, secret);
	if (token)
		assert_string_equal(c.session_token, token);
	else
		assert_null(c.session_token);
	bfs_creds_free(&c);
	assert_null(c.access_key);
	assert_null(c.secret_key);
}

static void expect_error(const struct bfs_options *o, int want_rc, const char *want_msg)
{
	struct bfs_creds c;
	int rc = load(o, &c);
	if (rc != want_rc)
		fail_msg("rc %d, want %d (%s)", rc, want_rc, err);
	assert_string_equal(err, want_msg);
	assert_null(c.access_key);
}

static const char credentials[] =
	"# comment\n"
	"[other]\n"
	"aws_access_key_id = OTHERKEY\n"
	"aws_secret_access_key = OTHERSECRET\n"
	"\n"
	"; another comment\n"
	"[default]\r\n"
	"  AWS_ACCESS_KEY_ID=DEFKEY  \r\n"
	"aws_secret_access_key =\tdef/Secret+Key=\r\n"
	"region = eu-west-1\n"
	"[ tok ]\n"
	"aws_access_key_id = TOKKEY\n"
	"aws_secret_access_key = TOKSECRET\n"
	"aws_session_token = TOKEN==\n"
	"[nokey]\n"
	"aws_secret_access_key = S\n";

static void test_environment_first(void **state)
{
	(void)state;
	put(".aws/credentials", credentials, 0600);
	const char *pw = put("pw", "PWKEY:PWSECRET\n", 0600);
	struct bfs_options o = opts("bkt", "default", (char *)pw);

	setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
	expect(&o, "ENVKEY", "ENVSECRET", NULL);
	setenv("AWS_SESSION_TOKEN", "ENVTOKEN", 1);
	expect(&o, "ENVKEY", "ENVSECRET", "ENVTOKEN");
	setenv("AWS_SESSION_TOKEN", "", 1);
	expect(&o, "ENVKEY", "ENVSECRET", NULL);

	unsetenv("AWS_SECRET_ACCESS_KEY");
	expect_error(&o, -ENOENT,
		     "bucketfs: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
	unsetenv("AWS_ACCESS_KEY_ID");

	/* Without the environment an explicit passwd_file wins over the credentials file. */
	expect(&o, "PWKEY", "PWSECRET", NULL);
	o.passwd_file = NULL;
	expect(&o, "DEFKEY", "def/Secret+Key=", NULL);
}

static void test_credentials_profiles(void **state)
{
	(void)state;
	put(".aws/credentials", credentials, 0600);
	struct bfs_options o = opts("bkt", "default", NULL);
	expect(&o, "DEFKEY", "def/Secret+Key=", NULL);
	o.profile = NULL; /* same as "default" */
	expect(&o, "DEFKEY", "def/Secret+Key=", NULL);
	o.profile = "other";
	expect(&o, "OTHERKEY", "OTHERSECRET", NULL);
	o.profile = "tok";
	expect(&o, "TOKKEY", "TOKSECRET", "TOKEN==");

	char want[3 * PATH_MAX];
	snprintf(want, sizeof(want), "bucketfs: profile [missing] not found in %s/.aws/config or "
		 "%s/.aws/credentials", home, home);
	o.profile = "missing";
	expect_error(&o, -ENOENT, want);
	snprintf(want, sizeof(want), "bucketfs: profile [nokey] in %s/.aws/credentials has "
		 "aws_secret_access_key but no aws_access_key_id", home);
	o.profile = "nokey";
	expect_error(&o, -EINVAL, want);

	/* AWS_SHARED_CREDENTIALS_FILE moves the file. */
	const char *other = put("other-creds", "[default]\naws_access_key_id=K2\n"
				"aws_secret_access_key=S2", 0400);
	setenv("AWS_SHARED_CREDENTIALS_FILE", other, 1);
	o.profile = "default";
	expect(&o, "K2", "S2", NULL);
}

static void test_passwd_file(void **state)
{
	(void)state;
	struct bfs_options o = opts("bkt", "default", NULL);

	o.passwd_file = (char *)put("pw", "# s3fs\nPLAINKEY:PLAINSECRET\n", 0600);
	expect(&o, "PLAINKEY", "PLAINSECRET", NULL);

	/* The bucket's own line wins, wherever it is; other buckets' lines are skipped. */
	put("pw", "otherbkt:OKEY:OSECRET\nPLAINKEY:PLAINSECRET\n  bkt:BKEY:BSECRET  \r\n"
	    "bkt:BKEY2:BSECRET2\n", 0600);
	expect(&o, "BKEY", "BSECRET", NULL);
	o.bucket = "third";
	expect(&o, "PLAINKEY", "PLAINSECRET", NULL);

	char want[3 * PATH_MAX];
	put("pw", "otherbkt:OKEY:OSECRET\n", 0600);
	snprintf(want, sizeof(want), "bucketfs: %s/pw has no KEY:SECRET line for bucket third",
		 home);
	expect_error(&o, -ENOENT, want);

	static const char *const broken[] = {"JUSTAKEY\n", "a:b:c:d\n", ":SECRET\n", "KEY:\n",
					     "bkt::SECRET\n"};
	for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
		char text[64];
		snprintf(text, sizeof(text), "# first\n%s", broken[i]);
		put("pw", text, 0600);
		snprintf(want, sizeof(want),
			 "bucketfs: %s/pw:2: want KEY:SECRET or BUCKET:KEY:SECRET", home);
		expect_error(&o, -EINVAL, want);
	}

	/* An explicit file that is not there is an error, not a fall-through. */
	put(".aws/credentials", credentials, 0600);
	o.passwd_file = "/nonexistent/passwd";
	expect_error(&o, -ENOENT, "bucketfs: passwd_file /nonexistent/passwd does not exist");
}

static void test_s3fs_default_files(void **state)
{
	(void)state;
	struct bfs_options o = opts("bkt", "default", NULL);

	put(".passwd-s3fs", "HOMEKEY:HOMESECRET\n", 0600);
	expect(&o, "HOMEKEY", "HOMESECRET", NULL);

	/* A credentials file without the default profile falls through to it too. */
	put(".aws/credentials", "[other]\naws_access_key_id=A\naws_secret_access_key=B\n", 0600);
	expect(&o, "HOMEKEY", "HOMESECRET", NULL);
	put(".aws/credentials", credentials, 0600);
	expect(&o, "DEFKEY", "def/Secret+Key=", NULL);
}

static void test_refuses_open_files(void **state)
{
	(void)state;
	char want[3 * PATH_MAX];
	struct bfs_options o = opts("bkt", "default", NULL);

	const char *path = put(".aws/credentials", credentials, 0644);
	snprintf(want, sizeof(want), "bucketfs: refusing %s: it is accessible by group or others "
		 "(mode 644); run chmod 600 %s", path, path);
	expect_error(&o, -EACCES, want);

	put(".aws/credentials", credentials, 0640);
	snprintf(want, sizeof(want), "bucketfs: refusing %s: it is accessible by group or others "
		 "(mode 640); run chmod 600 %s", path, path);
	expect_error(&o, -EACCES, want);
	rm(".aws/credentials");

	path = put("pw", "K:S\n", 0604);
	o.passwd_file = (char *)path;
	snprintf(want, sizeof(want), "bucketfs: refusing %s: it is accessible by group or others "
		 "(mode 604); run chmod 600 %s", path, path);
	expect_error(&o, -EACCES, want);
	assert_int_equal(chmod(path, 0600), 0);
	expect(&o, "K", "S", NULL);

	o.passwd_file = NULL;
	path = put(".passwd-s3fs", "K:S\n", 0660);
	snprintf(want, sizeof(want), "bucketfs: refusing %s: it is accessible by group or others "
		 "(mode 660); run chmod 600 %s", path, path);
	expect_error(&o, -EACCES, want);
}

static void test_nothing_found(void **state)
{
	(void)state;
	if (access("/etc/passwd-s3fs", F_OK) == 0) {
		print_message("skipped: /etc/passwd-s3fs exists on this machine\n");
		skip();
	}
	struct bfs_options o = opts("bkt", "default", NULL);
	char want[3 * PATH_MAX];
	snprintf(want, sizeof(want), "bucketfs: no credentials found (looked in: "
		 "$AWS_ACCESS_KEY_ID, %s/.aws/credentials [default], %s/.aws/config [default], "
		 "~/.passwd-s3fs, /etc/passwd-s3fs, EC2 instance metadata: off, "
		 "AWS_EC2_METADATA_DISABLED is true); set AWS_ACCESS_KEY_ID and "
		 "AWS_SECRET_ACCESS_KEY, or use -o profile= or -o passwd_file=", home, home);
	expect_error(&o, -ENOENT, want);
}

/* Keys in ~/.aws/config; for the same profile the credentials file wins. */
static void test_config_file_keys(void **state)
{
	(void)state;
	struct bfs_options o = opts("bkt", "default", NULL);
	put(".aws/config", "[default]\nregion = eu-west-1\naws_access_key_id = CFGKEY\n"
	    "aws_secret_access_key = CFGSECRET\n[profile work]\naws_access_key_id = WKEY\n"
	    "aws_secret_access_key = WSECRET\naws_session_token = WTOKEN\n[profile bare]\n"
	    "region = us-west-2\n", 0600);
	expect(&o, "CFGKEY", "CFGSECRET", NULL);
	o.profile = "work";
	expect(&o, "WKEY", "WSECRET", "WTOKEN");

	/* the same profile in the credentials file wins; other profiles are not mixed in */
	put(".aws/credentials", "[work]\naws_access_key_id = FKEY\naws_secret_access_key = FS\n",
	    0600);
	expect(&o, "FKEY", "FS", NULL);
	o.profile = "default";
	expect(&o, "CFGKEY", "CFGSECRET", NULL);

	/* a profile with no keys anywhere: said, not a fall-through to other sources */
	char want[3 * PATH_MAX];
	o.profile = "bare";
	snprintf(want, sizeof(want), "bucketfs: profile [bare] has no credentials "
		 "(aws_access_key_id and aws_secret_access_key, or credential_process) in "
		 "%s/.aws/credentials or "
		 "%s/.aws/config", home, home);
	expect_error(&o, -ENOENT, want);

	/* AWS_CONFIG_FILE moves it */
	const char *other = put("other-creds", "[profile bare]\naws_access_key_id=K3\n"
				"aws_secret_access_key=S3\n", 0600);
	setenv("AWS_CONFIG_FILE", other, 1);
	expect(&o, "K3", "S3", NULL);
}

/* -o profile= wins over the environment (as the CLI's --profile); $AWS_PROFILE does not. */
static void test_profile_option_over_environment(void **state)
{
	(void)state;
	put(".aws/credentials", credentials, 0600);
	setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
	struct bfs_options o = opts("bkt", "other", NULL);
	o.profile_named = true;
	expect(&o, "ENVKEY", "ENVSECRET", NULL);
	o.profile_option = true;
	expect(&o, "OTHERKEY", "OTHERSECRET", NULL);

	/* a named profile must exist even when the environment has the keys */
	o.profile_option = false;
	o.profile = "nosuch";
	char want[3 * PATH_MAX];
	snprintf(want, sizeof(want), "bucketfs: profile [nosuch] not found in %s/.aws/config or "
		 "%s/.aws/credentials", home, home);
	expect_error(&o, -ENOENT, want);
	/* "default" is only required when named */
	o.profile = "default";
	o.profile_named = false;
	put(".aws/credentials", "[x]\n", 0600);
	expect(&o, "ENVKEY", "ENVSECRET", NULL);
	o.profile_named = true;
	snprintf(want, sizeof(want), "bucketfs: profile [default] not found in %s/.aws/config or "
		 "%s/.aws/credentials", home, home);
	expect_error(&o, -ENOENT, want);
}

/* A config file with secrets must be private; one without may be world-readable. */
static void test_config_file_modes(void **state)
{
	(void)state;
	char want[3 * PATH_MAX];
	struct bfs_options o = opts("bkt", "default", NULL);
	setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
	put(".aws/config", "[default]\nregion = eu-west-1\n", 0644);
	expect(&o, "ENVKEY", "ENVSECRET", NULL);
	const char *path = put(".aws/config", "[default]\nregion = eu-west-1\n[profile x]\n"
			       "aws_secret_access_key = S\n", 0644);
	snprintf(want, sizeof(want), "bucketfs: refusing %s: it holds aws_secret_access_key "
		 "(line 4) and is accessible by group or others (mode 644); run chmod 600 %s",
		 path, path);
	expect_error(&o, -EACCES, want);
	put(".aws/config", "[default]\ncredential_process = /bin/true\n", 0664);
	snprintf(want, sizeof(want), "bucketfs: refusing %s: it has a credential_process (line 2) "
		 "and is writable by group or others (mode 664); run chmod go-w %s", path, path);
	expect_error(&o, -EACCES, want);
	assert_int_equal(chmod(path, 0644), 0);
	expect(&o, "ENVKEY", "ENVSECRET", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_environment_first, clean),
		cmocka_unit_test_setup(test_credentials_profiles, clean),
		cmocka_unit_test_setup(test_passwd_file, clean),
		cmocka_unit_test_setup(test_s3fs_default_files, clean),
		cmocka_unit_test_setup(test_refuses_open_files, clean),
		cmocka_unit_test_setup(test_nothing_found, clean),
		cmocka_unit_test_setup(test_config_file_keys, clean),
		cmocka_unit_test_setup(test_profile_option_over_environment, clean),
		cmocka_unit_test_setup(test_config_file_modes, clean),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
