/* tests/unit/test_fs_imds.c — fs/imds.c against an instance metadata stub on 127.0.0.1 (a
 * thread): the IMDSv2 token dance, its failures, the fast failure without a service, and the
 * instance role as the last credentials source (fs/creds.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs/fs_int.h"
#include "util/util.h"

static struct {
	int lfd, port;
	pthread_t tid;
	pthread_mutex_t lock;  /* protects the fields below */
	int requests, puts;
	bool no_role, bad_json;
	char token[64];        /* what PUT hands out and GETs must send */
	char ttl[32];          /* the TTL header of the last PUT */
} imds;

static char endpoint[64], err[1024];

static void answer(int fd, int status, const char *body)
{
	char resp[2048];
	int n = snprintf(resp, sizeof(resp), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n%s", status, strlen(body), body);
	(void)!send(fd, resp, (size_t)n, MSG_NOSIGNAL);
}

static bool starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void *serve(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(imds.lfd, NULL, NULL);
		if (fd < 0)
			return NULL;
		char req[4096];
		size_t n = 0;
		while (n < sizeof(req) - 1 && !memmem(req, n, "\r\n\r\n", 4)) {
			ssize_t r = recv(fd, req + n, sizeof(req) - 1 - n, 0);
			if (r <= 0)
				break;
			n += (size_t)r;
		}
		req[n] = '\0';
		pthread_mutex_lock(&imds.lock);
		imds.requests++;
		char want[128], *ttl = strcasestr(req, "\r\nX-aws-ec2-metadata-token-ttl-seconds: ");
		snprintf(want, sizeof(want), "\r\nX-aws-ec2-metadata-token: %s\r\n", imds.token);
		bool authed = strstr(req, want) != NULL;
		if (starts(req, "PUT /latest/api/token ")) {
			imds.puts++;
			snprintf(imds.ttl, sizeof(imds.ttl), "%.*s", ttl ? (int)strcspn(ttl + 40, "\r")
				 : 0, ttl ? ttl + 40 : "");
			answer(fd, ttl ? 200 : 400, ttl ? imds.token : "");
		} else if (!authed) {
			answer(fd, 401, "");
		} else if (starts(req, "GET /latest/meta-data/iam/security-credentials/ ")) {
			answer(fd, imds.no_role ? 404 : 200, imds.no_role ? "" : "role-a\n");
		} else if (starts(req, "GET /latest/meta-data/iam/security-credentials/role-a ")) {
			answer(fd, 200, imds.bad_json ? "{\"Code\": \"Success\"" :
			       "{\"Code\": \"Success\", \"Type\": \"AWS-HMAC\", \"AccessKeyId\": \"IK\","
			       " \"SecretAccessKey\": \"IS\", \"Token\": \"IT\", \"Expiration\":"
			       " \"2030-01-01T00:00:00Z\"}");
		} else {
			answer(fd, 404, "");
		}
		pthread_mutex_unlock(&imds.lock);
		close(fd);
	}
}

static int setup(void **state)
{
	(void)state;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	pthread_mutex_init(&imds.lock, NULL);
	imds.lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (imds.lfd < 0 || bind(imds.lfd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(imds.lfd, 16))
		return -1;
	getsockname(imds.lfd, (struct sockaddr *)&a, &len);
	imds.port = ntohs(a.sin_port);
	snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", imds.port);
	snprintf(imds.token, sizeof(imds.token), "TOKEN-1");
	return pthread_create(&imds.tid, NULL, serve, NULL);
}

static int teardown(void **state)
{
	(void)state;
	shutdown(imds.lfd, SHUT_RDWR);
	close(imds.lfd);
	pthread_join(imds.tid, NULL);
	return 0;
}

static void reset(bool no_role, bool bad_json)
{
	pthread_mutex_lock(&imds.lock);
	imds.requests = imds.puts = 0;
	imds.no_role = no_role;
	imds.bad_json = bad_json;
	pthread_mutex_unlock(&imds.lock);
}

static void test_fetch(void **state)
{
	(void)state;
	struct s3_creds c;
	reset(false, false);
	if (bfs_imds_fetch(endpoint, &c, err, sizeof(err)))
		fail_msg("%s", err);
	assert_string_equal(c.access_key, "IK");
	assert_string_equal(c.secret_key, "IS");
	assert_string_equal(c.session_token, "IT");
	assert_int_equal(c.expiration, 1893456000);
	s3_creds_free(&c);
	assert_int_equal(imds.requests, 3);
	assert_int_equal(imds.puts, 1);
	assert_string_equal(imds.ttl, "21600");

	/* every fetch gets a new session token: one that changed is no problem */
	snprintf(imds.token, sizeof(imds.token), "TOKEN-2");
	assert_int_equal(bfs_imds_fetch(endpoint, &c, err, sizeof(err)), 0);
	s3_creds_free(&c);
	assert_int_equal(imds.puts, 2);

	reset(true, false);
	assert_int_equal(bfs_imds_fetch(endpoint, &c, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no IAM role attached to the instance"));
	reset(false, true);
	assert_int_equal(bfs_imds_fetch(endpoint, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "bad answer for IAM role role-a at "));
	assert_non_null(strstr(err, "not a JSON object"));
	assert_null(strstr(err, "TOKEN"));
	assert_null(c.access_key);
}

/* Nothing listens there: a quick, clear failure. */
static void test_unreachable(void **state)
{
	(void)state;
	struct s3_creds c;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	bind(s, (struct sockaddr *)&a, sizeof(a));
	getsockname(s, (struct sockaddr *)&a, &len);
	close(s);
	char closed[64];
	snprintf(closed, sizeof(closed), "http://127.0.0.1:%d", ntohs(a.sin_port));
	int64_t t0 = bfs_mono_ns();
	assert_int_equal(bfs_imds_fetch(closed, &c, err, sizeof(err)), -EHOSTUNREACH);
	assert_true(bfs_mono_ns() - t0 < 2000000000LL);
	assert_non_null(strstr(err, "no session token from "));
	assert_non_null(strstr(err, "/latest/api/token"));
}

/* The instance role is the last source: used when nothing else has keys, renewed through the
 * S3 client's provider; AWS_EC2_METADATA_DISABLED=true turns it off. */
static void test_last_source(void **state)
{
	(void)state;
	char home[] = "/tmp/bfs-imds-XXXXXX";
	assert_non_null(mkdtemp(home));
	setenv("HOME", home, 1);
	static const char *const vars[] = { "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE",
		"AWS_EC2_METADATA_DISABLED" };
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	if (access("/etc/passwd-s3fs", F_OK) == 0) {
		rmdir(home);
		print_message("skipped: /etc/passwd-s3fs exists on this machine\n");
		skip();
	}
	struct bfs_options o = { .bucket = "b", .profile = "default", .imds_endpoint = endpoint };
	struct bfs_creds cr;
	reset(false, false);
	if (bfs_creds_load(&o, &cr, err, sizeof(err)))
		fail_msg("%s", err);
	assert_string_equal(cr.access_key, "IK");
	assert_string_equal(cr.session_token, "IT");
	assert_int_equal(cr.expiration, 1893456000);
	struct s3_config cfg;
	bfs_s3_config(&o, &cr, &cfg);
	struct s3_creds again;
	char why[512];
	assert_int_equal(cfg.creds_fn(cfg.creds_arg, &again, why, sizeof(why)), 0);
	assert_string_equal(again.access_key, "IK");
	s3_creds_free(&again);
	reset(true, false);
	assert_int_equal(cfg.creds_fn(cfg.creds_arg, &again, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "EC2 instance metadata: no IAM role attached"));
	bfs_creds_free(&cr);

	/* nothing anywhere: the message lists every place, and why the metadata failed */
	assert_int_equal(bfs_creds_load(&o, &cr, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "bucketfs: no credentials found (looked in: $AWS_ACCESS_KEY_ID"));
	assert_non_null(strstr(err, "/etc/passwd-s3fs, EC2 instance metadata: no IAM role attached"));
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	reset(false, false);
	assert_int_equal(bfs_creds_load(&o, &cr, err, sizeof(err)), -ENOENT);
	assert_int_equal(imds.requests, 0);
	assert_non_null(strstr(err, "EC2 instance metadata: off, AWS_EC2_METADATA_DISABLED is true"));
	unsetenv("AWS_EC2_METADATA_DISABLED");
	rmdir(home);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fetch),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_last_source),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
