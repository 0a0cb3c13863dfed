/* tests/unit/test_fs_cred_process.c — fs/cred_process.c: splitting the command like the AWS
 * CLI, running it without a shell, its failures; and credential_process in a profile
 * (fs/creds.c). */
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

static char dir[PATH_MAX];
static char err[1024];

static void expect_split(const char *cmd, int n, ...)
{
	char **argv;
	va_list ap;
	int rc = bfs_cmd_split(cmd, &argv);
	if (rc)
		fail_msg("split '%s': %d", cmd, rc);
	va_start(ap, n);
	for (int i = 0; i < n; i++) {
		const char *want = va_arg(ap, const char *);
		if (!argv[i] || strcmp(argv[i], want))
			fail_msg("'%s' word %d: '%s', want '%s'", cmd, i, argv[i] ? argv[i] : "(none)",
				 want);
	}
	va_end(ap);
	assert_null(argv[n]);
	bfs_cmd_free(argv);
}

static void test_split(void **state)
{
	(void)state;
	expect_split("/bin/echo", 1, "/bin/echo");
	expect_split("  aws  sso\tget  ", 3, "aws", "sso", "get");
	expect_split("cmd 'a b' \"c d\" e\\ f", 4, "cmd", "a b", "c d", "e f");
	expect_split("cmd \"say \\\"hi\\\" \\\\ \\n\" 'no \\ escape'", 3, "cmd",
		     "say \"hi\" \\ \\n", "no \\ escape");
	expect_split("cmd '' \"\" x''y", 4, "cmd", "", "", "xy");
	expect_split("cmd $HOME ~/x `id` a;b|c #d", 6, "cmd", "$HOME", "~/x", "`id`", "a;b|c",
		     "#d");
	char **argv;
	static const char *const bad[] = { "", "   ", "cmd 'open", "cmd \"open", "cmd \\" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (bfs_cmd_split(bad[i], &argv) != -EINVAL)
			fail_msg("split '%s' accepted", bad[i]);
}

/* Writes an executable shell script dir/name; returns its path (static). */
static const char *script(const char *name, const char *body)
{
	static char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\n%s", body);
	fclose(f);
	assert_int_equal(chmod(path, 0700), 0);
	return path;
}

static int run(const char *cmd, struct s3_creds *c)
{
	err[0] = '\0';
	return bfs_cred_process_run(cmd, c, err, sizeof(err));
}

static void test_run(void **state)
{
	(void)state;
	struct s3_creds c;
	char cmd[PATH_MAX * 2];

	/* arguments arrive as words, no shell; stdin is empty; only fds 0-2 are open */
	int leak = open("/dev/null", O_RDONLY); /* not close-on-exec: must not reach the child */
	assert_true(leak >= 3);
	const char *ok = script("ok.sh",
		"[ \"$1\" = 'two words' ] || { echo \"bad arg: $1\" >&2; exit 3; }\n"
		"[ -z \"$(cat)\" ] || exit 4\n"
		"[ ! -e /proc/$$/fd/$2 ] || { echo \"fd $2 is open\" >&2; exit 5; }\n"
		"echo 'noise on stderr' >&2\n"
		"printf '{\"Version\": 1, \"AccessKeyId\": \"PK\", \"SecretAccessKey\": \"PS\", "
		"\"SessionToken\": \"PT\", \"Expiration\": \"2030-01-01T00:00:00Z\"}'\n");
	snprintf(cmd, sizeof(cmd), "%s 'two words' %d", ok, leak);
	if (run(cmd, &c))
		fail_msg("%s", err);
	close(leak);
	assert_string_equal(c.access_key, "PK");
	assert_string_equal(c.secret_key, "PS");
	assert_string_equal(c.session_token, "PT");
	assert_int_equal(c.expiration, 1893456000);
	s3_creds_free(&c);

	snprintf(cmd, sizeof(cmd), "%s 'other' 99", ok);
	assert_int_equal(run(cmd, &c), -EIO);
	assert_string_equal(err, "exited with status 3: bad arg: other");

	const char *bad = script("bad.sh", "echo '{\"Version\": 1}'\n");
	assert_int_equal(run(bad, &c), -EINVAL);
	assert_string_equal(err, "bad output: no AccessKeyId");
	assert_null(c.access_key);

	const char *killed = script("killed.sh", "echo dying >&2\nkill -9 $$\n");
	assert_int_equal(run(killed, &c), -EIO);
	assert_string_equal(err, "killed by signal 9: dying");

	snprintf(cmd, sizeof(cmd), "%s/no-such-command --flag", dir);
	if (getenv("BFS_VALGRIND")) {
		/* valgrind runs posix_spawn's vfork as a fork, so the exec failure comes back
		 * as the child's exit status 127 instead of the error (make test-valgrind) */
		assert_int_equal(run(cmd, &c), -EIO);
		assert_non_null(strstr(err, "status 127"));
	} else {
		assert_int_equal(run(cmd, &c), -ENOENT);
		assert_non_null(strstr(err, "cannot run "));
		assert_non_null(strstr(err, "No such file or directory"));
	}

	assert_int_equal(run("cmd 'unterminated", &c), -EINVAL);
	assert_non_null(strstr(err, "cannot split the command"));

	/* a lot of output: refused, not truncated into something else */
	const char *big = script("big.sh", "head -c 100000 /dev/zero | tr '\\0' ' '\n");
	assert_int_equal(run(big, &c), -EIO);
	assert_string_equal(err, "printed more than 65536 bytes");
}

/* credential_process in a profile: after the credentials file's keys, before the config
 * file's; its failure is the mount's error; its keys come with their source. */
static void test_profile(void **state)
{
	(void)state;
	char path[PATH_MAX + 64], text[PATH_MAX * 2];
	const char *ok = script("p.sh", "printf '{\"Version\":1,\"AccessKeyId\":\"PK\","
				"\"SecretAccessKey\":\"PS\",\"Expiration\":\"2030-01-01T00:00:00Z\"}'\n");
	snprintf(path, sizeof(path), "%s/config", dir);
	snprintf(text, sizeof(text), "[profile p]\ncredential_process = %s\n"
		 "aws_access_key_id = CK\naws_secret_access_key = CS\n", ok);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	chmod(path, 0600);
	setenv("AWS_CONFIG_FILE", path, 1);
	snprintf(path, sizeof(path), "%s/credentials", dir);
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");

	struct bfs_options o = { .bucket = "b", .profile = "p" };
	struct bfs_creds cr;
	if (bfs_creds_load(&o, &cr, err, sizeof(err)))
		fail_msg("%s", err);
	assert_string_equal(cr.access_key, "PK");
	assert_int_equal(cr.expiration, 1893456000);
	assert_non_null(cr.source);
	struct s3_config cfg;
	bfs_s3_config(&o, &cr, &cfg);
	assert_non_null(cfg.creds_fn);
	assert_int_equal(cfg.creds_expiration, 1893456000);
	struct s3_creds again;
	char why[256];
	assert_int_equal(cfg.creds_fn(cfg.creds_arg, &again, why, sizeof(why)), 0);
	assert_string_equal(again.access_key, "PK");
	s3_creds_free(&again);
	bfs_creds_free(&cr);
	assert_null(cr.source);

	/* the credentials file's keys for the same profile win */
	f = fopen(path, "w");
	fputs("[p]\naws_access_key_id = FK\naws_secret_access_key = FS\n", f);
	fclose(f);
	chmod(path, 0600);
	assert_int_equal(bfs_creds_load(&o, &cr, err, sizeof(err)), 0);
	assert_string_equal(cr.access_key, "FK");
	assert_null(cr.source);
	bfs_creds_free(&cr);
	unlink(path);

	/* a failing command is the error, with the profile named */
	const char *fails = script("f.sh", "echo 'token expired, run aws sso login' >&2\nexit 1\n");
	snprintf(path, sizeof(path), "%s/config", dir);
	snprintf(text, sizeof(text), "[profile p]\ncredential_process = %s\n", fails);
	f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	assert_int_equal(bfs_creds_load(&o, &cr, err, sizeof(err)), -EIO);
	assert_string_equal(err, "bucketfs: credential_process of profile [p]: exited with "
			    "status 1: token expired, run aws sso login");
	assert_null(cr.source);
	unsetenv("AWS_CONFIG_FILE");
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
}

static int setup(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/bfs-credproc-XXXXXX";
	if (!mkdtemp(tmpl))
		return -1;
	snprintf(dir, sizeof(dir), "%s", tmpl);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	static const char *const names[] = { "ok.sh", "bad.sh", "killed.sh", "big.sh", "p.sh",
					     "f.sh", "config", "credentials" };
	char path[PATH_MAX + 64];
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_run),
		cmocka_unit_test(test_profile),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
