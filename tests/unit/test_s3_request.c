/* tests/unit/test_s3_request.c — the request layer (s3/request.c, object.c) against a scripted
 * HTTP server on 127.0.0.1 in a thread: retries, ETag checks, 200-with-<Error>, connection
 * reuse, and the exact shape of signed requests for awkward keys. */
#include <arpa/inet.h>
#include <errno.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "s3/internal.h"
#include "util/util.h"

#define MAX_SCRIPT 16

/* One scripted answer: status, extra header lines ("Name: value\r\n"...), body. */
struct answer {
	int status;
	const char *headers;
	const char *body;
};

/* The server: answers requests in script order (the last one repeats), records requests. */
struct server {
	int lfd, port;
	pthread_t tid;
	pthread_mutex_t lock; /* protects everything below */
	struct answer script[MAX_SCRIPT];
	int nscript, next;
	int connections, requests;
	char last_request[8192]; /* head of the last request */
	char last_body[4096];
	int stop;
};

static struct server srv;

static ssize_t read_request(int fd, char *head, size_t headlen, char *body, size_t bodylen)
{
	size_t n = 0;
	char *end;

	while (!(end = memmem(head, n, "\r\n\r\n", 4))) {
		ssize_t r = recv(fd, head + n, headlen - n - 1, 0);
		if (r <= 0)
			return -1;
		n += (size_t)r;
		head[n] = '\0';
	}
	size_t hlen = (size_t)(end - head) + 4;
	size_t clen = 0;
	char *cl = strcasestr(head, "\r\nContent-Length:");
	if (cl && cl < end)
		clen = strtoul(cl + 17, NULL, 10);
	size_t have = n - hlen;
	if (have > bodylen - 1)
		have = bodylen - 1;
	memcpy(body, head + hlen, have);
	while (have < clen) {
		char tmp[4096];
		ssize_t r = recv(fd, tmp, sizeof(tmp), 0);
		if (r <= 0)
			return -1;
		size_t take = (size_t)r;
		if (have + take > bodylen - 1)
			take = have < bodylen - 1 ? bodylen - 1 - have : 0;
		memcpy(body + have, tmp, take);
		have += (size_t)r;
	}
	body[have < bodylen ? have : bodylen - 1] = '\0';
	head[hlen] = '\0';
	return (ssize_t)hlen;
}

static void *server_main(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(srv.lfd, NULL, NULL);
		if (fd < 0)
			return NULL;
		pthread_mutex_lock(&srv.lock);
		if (srv.stop) {
			pthread_mutex_unlock(&srv.lock);
			close(fd);
			return NULL;
		}
		srv.connections++;
		pthread_mutex_unlock(&srv.lock);
		char head[8192], body[4096], resp[8192];
		while (read_request(fd, head, sizeof(head), body, sizeof(body)) > 0) {
			pthread_mutex_lock(&srv.lock);
			struct answer a = srv.script[srv.next < srv.nscript ? srv.next : srv.nscript - 1];
			srv.next++;
			srv.requests++;
			snprintf(srv.last_request, sizeof(srv.last_request), "%s", head);
			snprintf(srv.last_body, sizeof(srv.last_body), "%s", body);
			pthread_mutex_unlock(&srv.lock);
			bool head_req = strncmp(head, "HEAD ", 5) == 0;
			size_t blen = a.body ? strlen(a.body) : 0;
			int n = snprintf(resp, sizeof(resp),
					 "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n%s", a.status,
					 blen, a.headers ? a.headers : "",
					 head_req || !a.body ? "" : a.body);
			if (send(fd, resp, (size_t)n, MSG_NOSIGNAL) != n)
				break;
		}
		close(fd);
	}
}

static void script(int n, const struct answer *answers)
{
	pthread_mutex_lock(&srv.lock);
	memcpy(srv.script, answers, (size_t)n * sizeof(*answers));
	srv.nscript = n;
	srv.next = 0;
	srv.requests = 0;
	pthread_mutex_unlock(&srv.lock);
}

static int setup(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);

	memset(&srv, 0, sizeof(srv));
	pthread_mutex_init(&srv.lock, NULL);
	srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(srv.lfd >= 0);
	assert_int_equal(bind(srv.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(srv.lfd, 16), 0);
	getsockname(srv.lfd, (struct sockaddr *)&a, &len);
	srv.port = ntohs(a.sin_port);
	pthread_create(&srv.tid, NULL, server_main, NULL);
	bfs_log_setup(0, BFS_LOG_ERR); /* keep retry warnings out of the test output */
	*state = NULL;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	pthread_mutex_lock(&srv.lock);
	srv.stop = 1;
	pthread_mutex_unlock(&srv.lock);
	shutdown(srv.lfd, SHUT_RDWR);
	close(srv.lfd);
	pthread_join(srv.tid, NULL);
	return 0;
}

static struct s3_client *client(int retries, const char *token)
{
	char ep[64];
	struct s3_client *c;

	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", srv.port);
	struct s3_config cfg = { .endpoint = ep, .bucket = "test", .path_style = true,
				 .access_key = "AKID", .secret_key = "SECRETKEY",
				 .session_token = token, .retries = retries, .max_connections = 4 };
	assert_int_equal(s3_client_new(&cfg, &c), 0);
	return c;
}

static void test_retry_then_success(void **state)
{
	(void)state;
	struct answer a[] = {
		{ 503, "x-amz-request-id: R1\r\n",
		  "<Error><Code>SlowDown</Code><Message>Reduce</Message></Error>" },
		{ 500, NULL, NULL },
		{ 206, "Content-Range: bytes 0-4/10\r\nETag: \"abc\"\r\n", "hello" },
	};
	struct s3_client *c = client(0, NULL);
	struct s3_stats st;
	struct s3_object info;
	char buf[8];
	size_t got;

	script(3, a);
	assert_int_equal(s3_get_range(c, "k", 0, 5, buf, &got, NULL, &info), 0);
	assert_int_equal(got, 5);
	assert_memory_equal(buf, "hello", 5);
	assert_string_equal(info.etag, "abc");
	assert_int_equal(info.size, 10);
	s3_stats_get(c, &st);
	assert_int_equal(st.retries, 2);
	assert_int_equal(st.get, 1);
	s3_object_free(&info);
	s3_client_free(c);
}

static void test_retries_exhausted(void **state)
{
	(void)state;
	struct answer a[] = { { 503, "x-amz-request-id: REQ42\r\n",
				"<Error><Code>SlowDown</Code><Message>Please reduce</Message></Error>" } };
	struct s3_client *c = client(2, NULL);
	struct s3_stats st;
	char buf[8];
	size_t got;

	script(1, a);
	assert_int_equal(s3_get_range(c, "some key", 0, 5, buf, &got, NULL, NULL), -EIO);
	s3_stats_get(c, &st);
	assert_int_equal(st.retries, 2);
	assert_int_equal(st.errors, 1);
	assert_int_equal(srv.requests, 3);
	assert_non_null(strstr(s3_last_error(), "503"));
	assert_non_null(strstr(s3_last_error(), "SlowDown"));
	assert_non_null(strstr(s3_last_error(), "some key"));
	assert_non_null(strstr(s3_last_error(), "REQ42"));
	assert_null(strstr(s3_last_error(), "SECRETKEY"));
	s3_client_free(c);
}

static void test_not_retried(void **state)
{
	(void)state;
	struct answer a[] = { { 404, NULL, "<Error><Code>NoSuchKey</Code></Error>" } };
	struct s3_client *c = client(0, NULL);
	struct s3_stats st;
	struct s3_object o;

	script(1, a);
	assert_int_equal(s3_head(c, "k", &o), -ENOENT);
	s3_stats_get(c, &st);
	assert_int_equal(st.retries, 0);
	assert_int_equal(srv.requests, 1);
	s3_client_free(c);
}

static void test_put_etag_checked(void **state)
{
	(void)state;
	/* MD5("hello") = 5d41402abc4b2a76b9719d911017c592 */
	struct answer bad = { 200, "ETag: \"00000000000000000000000000000000\"\r\n", NULL };
	struct answer good = { 200, "ETag: \"5d41402abc4b2a76b9719d911017c592\"\r\n", NULL };
	struct answer a[] = { bad, good };
	struct s3_client *c = client(0, NULL);
	struct s3_object o;
	struct s3_stats st;

	script(2, a);
	assert_int_equal(s3_put_buf(c, "k", "hello", 5, NULL, NULL, &o), 0);
	assert_string_equal(o.etag, "5d41402abc4b2a76b9719d911017c592");
	s3_stats_get(c, &st);
	assert_int_equal(st.retries, 1);
	/* Content-MD5 of "hello" and the SHA-256 of the payload were sent. */
	assert_non_null(strstr(srv.last_request, "Content-MD5: XUFAKrxLKna5cZ2REBfFkg==\r\n"));
	assert_non_null(strstr(srv.last_request,
			       "x-amz-content-sha256: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7"
			       "425e73043362938b9824\r\n"));
	assert_string_equal(srv.last_body, "hello");
	s3_object_free(&o);
	s3_client_free(c);

	c = client(1, NULL);
	script(1, &bad);
	assert_int_equal(s3_put_buf(c, "k", "hello", 5, NULL, NULL, NULL), -EBADMSG);
	assert_non_null(strstr(s3_last_error(), "ETag"));
	s3_client_free(c);
}

static void test_copy_200_with_error(void **state)
{
	(void)state;
	struct answer internal = { 200, NULL,
				   "\n  <Error><Code>InternalError</Code><Message>oops</Message>"
				   "<RequestId>RID7</RequestId></Error>" };
	struct answer denied = { 200, NULL, "<Error><Code>AccessDenied</Code></Error>" };
	struct answer ok = { 200, NULL,
			     "<CopyObjectResult><ETag>\"newetag\"</ETag></CopyObjectResult>" };
	struct s3_client *c = client(0, NULL);
	struct s3_object o;
	struct s3_meta m;

	/* no HEAD first: a copy is one request unless the source is refused as too large */
	struct answer a1[] = { internal, ok };
	script(2, a1);
	s3_meta_init(&m);
	s3_meta_set(&m, "Mode", "0644");
	assert_int_equal(s3_copy(c, "src key+1", "dst", &m, "text/plain", "e1", &o), 0);
	assert_string_equal(o.etag, "newetag");
	assert_non_null(strstr(srv.last_request, "x-amz-copy-source: test/src%20key%2B1\r\n"));
	assert_non_null(strstr(srv.last_request, "x-amz-metadata-directive: REPLACE\r\n"));
	assert_non_null(strstr(srv.last_request, "x-amz-copy-source-if-match: \"e1\"\r\n"));
	assert_non_null(strstr(srv.last_request, "x-amz-meta-mode: 0644\r\n"));
	assert_non_null(strstr(srv.last_request, "Content-Type: text/plain\r\n"));
	s3_object_free(&o);

	struct answer a2[] = { denied };
	script(1, a2);
	assert_int_equal(s3_copy(c, "src", "dst", NULL, NULL, NULL, &o), -EACCES);
	assert_non_null(strstr(srv.last_request, "x-amz-metadata-directive: COPY\r\n"));
	assert_int_equal(srv.requests, 1);
	s3_meta_free(&m);
	s3_client_free(c);
}

static void test_connection_reuse(void **state)
{
	(void)state;
	struct answer a[] = { { 200, "ETag: \"x\"\r\n", NULL } };
	struct s3_client *c = client(0, NULL);
	struct s3_object o;
	int before;

	script(1, a);
	pthread_mutex_lock(&srv.lock);
	before = srv.connections;
	pthread_mutex_unlock(&srv.lock);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(s3_head(c, "k", &o), 0);
		s3_object_free(&o);
	}
	pthread_mutex_lock(&srv.lock);
	assert_int_equal(srv.connections - before, 1);
	pthread_mutex_unlock(&srv.lock);
	s3_client_free(c);
}

static void test_request_shape(void **state)
{
	(void)state;
	struct answer a[] = { { 200, "ETag: \"5d41402abc4b2a76b9719d911017c592\"\r\n", NULL } };
	struct s3_client *c = client(0, "TOKEN/xyz=");
	struct s3_meta m;

	script(1, a);
	s3_meta_init(&m);
	s3_meta_set(&m, "uid", "1000");
	assert_int_equal(s3_put_buf(c, "dir/a b/\xc3\xbc%+#?&=~", "hello", 5, "text/x", &m, NULL),
			 0);
	/* Each segment encoded once, '/' kept, nothing double-encoded, no query. */
	assert_true(strncmp(srv.last_request,
			    "PUT /test/dir/a%20b/%C3%BC%25%2B%23%3F%26%3D~ HTTP/1.1\r\n", 55) == 0);
	assert_non_null(strstr(srv.last_request, "x-amz-security-token: TOKEN/xyz=\r\n"));
	assert_non_null(strstr(srv.last_request, "x-amz-meta-uid: 1000\r\n"));
	assert_non_null(strstr(srv.last_request,
			       "SignedHeaders=content-md5;content-type;host;x-amz-content-sha256;"
			       "x-amz-date;x-amz-meta-uid;x-amz-security-token,"));
	assert_non_null(strstr(srv.last_request, "Credential=AKID/"));
	assert_null(strstr(srv.last_request, "SECRETKEY"));
	assert_null(strstr(srv.last_request, "UNSIGNED-PAYLOAD"));
	assert_null(strstr(srv.last_request, "Expect:"));

	/* The standard headers metadata keeps (s3.h) go as themselves; its type wins. */
	script(1, a);
	s3_meta_set(&m, S3_HDR_CONTENT_TYPE, "text/css");
	s3_meta_set(&m, S3_HDR_CACHE_CONTROL, "max-age=9");
	s3_meta_set(&m, S3_HDR_CONTENT_ENCODING, "gzip");
	s3_meta_set(&m, S3_HDR_CONTENT_DISPOSITION, "inline");
	assert_int_equal(s3_put_buf(c, "k", "hello", 5, "text/x", &m, NULL), 0);
	assert_non_null(strstr(srv.last_request, "Content-Type: text/css\r\n"));
	assert_null(strstr(srv.last_request, "text/x"));
	assert_non_null(strstr(srv.last_request, "Cache-Control: max-age=9\r\n"));
	assert_non_null(strstr(srv.last_request, "Content-Encoding: gzip\r\n"));
	assert_non_null(strstr(srv.last_request, "Content-Disposition: inline\r\n"));
	assert_null(strstr(srv.last_request, "x-amz-meta-:"));
	assert_null(strstr(srv.last_request, "x-amz-meta-cache"));
	s3_meta_set(&m, ":x-evil", "1");
	assert_int_equal(s3_put_buf(c, "k", "x", 1, NULL, &m, NULL), -EINVAL);
	s3_meta_del(&m, ":x-evil");

	/* A header injection through metadata is refused before anything is sent. */
	s3_meta_set(&m, "evil", "a\r\nx-amz-acl: public-read");
	assert_int_equal(s3_put_buf(c, "k", "x", 1, NULL, &m, NULL), -EINVAL);
	s3_meta_free(&m);
	s3_client_free(c);
}

/* A HEAD keeps the standard headers with the metadata, under their S3_HDR_* names. */
static void test_head_headers(void **state)
{
	(void)state;
	struct answer a[] = { { 200, "ETag: \"e\"\r\nContent-Type: text/html\r\n"
				     "cache-control: no-cache\r\nContent-Encoding: br\r\n"
				     "Content-Disposition: attachment; filename=\"x\"\r\n"
				     "x-amz-meta-mode: 33188\r\n", NULL } };
	struct s3_client *c = client(0, NULL);
	struct s3_object o;

	script(1, a);
	assert_int_equal(s3_head(c, "k", &o), 0);
	assert_string_equal(o.content_type, "text/html");
	assert_string_equal(s3_meta_get(&o.meta, S3_HDR_CONTENT_TYPE), "text/html");
	assert_string_equal(s3_meta_get(&o.meta, S3_HDR_CACHE_CONTROL), "no-cache");
	assert_string_equal(s3_meta_get(&o.meta, S3_HDR_CONTENT_ENCODING), "br");
	assert_string_equal(s3_meta_get(&o.meta, S3_HDR_CONTENT_DISPOSITION),
			    "attachment; filename=\"x\"");
	assert_string_equal(s3_meta_get(&o.meta, "mode"), "33188");
	assert_int_equal(o.meta.n, 5);
	s3_object_free(&o);
	s3_client_free(c);
}

static void test_list_request(void **state)
{
	(void)state;
	struct answer a[] = { { 200, NULL,
				"<ListBucketResult><EncodingType>url</EncodingType>"
				"<IsTruncated>false</IsTruncated><Contents><Key>a%2Bb</Key>"
				"<Size>3</Size></Contents></ListBucketResult>" } };
	struct s3_client *c = client(0, NULL);
	struct s3_list_page p;

	script(1, a);
	assert_int_equal(s3_list(c, "a b/", "/", "tok+/=", 2, &p), 0);
	assert_int_equal(p.nobjects, 1);
	assert_string_equal(p.objects[0].key, "a+b");
	assert_true(strncmp(srv.last_request,
			    "GET /test?continuation-token=tok%2B%2F%3D&delimiter=%2F&"
			    "encoding-type=url&list-type=2&max-keys=2&prefix=a%20b%2F HTTP/1.1",
			    115) == 0);
	s3_list_page_free(&p);
	s3_client_free(c);
}

static void test_bucket_check(void **state)
{
	(void)state;
	struct answer nobucket[] = { { 404, NULL, "<Error><Code>NoSuchBucket</Code></Error>" } };
	struct answer denied[] = { { 403, NULL,
				     "<Error><Code>SignatureDoesNotMatch</Code></Error>" } };
	struct answer ok[] = { { 200, NULL,
				 "<ListBucketResult><IsTruncated>false</IsTruncated>"
				 "</ListBucketResult>" } };
	struct s3_client *c = client(0, NULL);

	script(1, nobucket);
	assert_int_equal(s3_bucket_check(c), -ENXIO);
	script(1, denied);
	assert_int_equal(s3_bucket_check(c), -EACCES);
	script(1, ok);
	assert_int_equal(s3_bucket_check(c), 0);
	assert_non_null(strstr(srv.last_request, "max-keys=0"));
	s3_client_free(c);

	struct s3_config cfg = { .endpoint = "http://127.0.0.1:1", .bucket = "test",
				 .path_style = true, .access_key = "a", .secret_key = "b" };
	assert_int_equal(s3_client_new(&cfg, &c), 0);
	assert_int_equal(s3_bucket_check(c), -EHOSTUNREACH);
	s3_client_free(c);
}

/* A provider for the refusal test: KEYNEW<n> with a token. */
static int calls;
static int provide_new(void *arg, struct s3_creds *out, char *err, size_t errlen)
{
	(void)arg, (void)err, (void)errlen;
	char key[32];
	snprintf(key, sizeof(key), "KEYNEW%d", ++calls);
	out->access_key = strdup(key);
	out->secret_key = strdup("NEWSECRET");
	out->session_token = strdup("NEWTOKEN");
	out->expiration = time(NULL) + 3600;
	return 0;
}

/* 400 ExpiredToken / 403 InvalidAccessKeyId: new keys from the provider, one retry with them;
 * without a provider (or when they are refused too) the error stands. */
static void test_refused_keys_refreshed(void **state)
{
	(void)state;
	char ep[64];
	struct s3_client *c;
	struct s3_object o;
	struct s3_list_page page;
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", srv.port);
	struct s3_config cfg = { .endpoint = ep, .bucket = "test", .path_style = true,
				 .access_key = "AKID", .secret_key = "SECRETKEY",
				 .session_token = "OLDTOKEN", .creds_expiration = time(NULL) + 3600,
				 .creds_fn = provide_new, .retries = 3 };
	struct answer a[] = {
		{ 400, NULL, "<Error><Code>ExpiredToken</Code></Error>" },
		{ 200, NULL, "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>" },
		{ 403, NULL, NULL },
		{ 200, "ETag: \"e\"\r\n", NULL },
	};
	assert_int_equal(s3_client_new(&cfg, &c), 0);
	calls = 0;
	script(4, a);
	assert_int_equal(s3_list(c, NULL, NULL, NULL, 0, &page), 0);
	s3_list_page_free(&page);
	assert_int_equal(srv.requests, 2);
	assert_int_equal(calls, 1);
	assert_non_null(strstr(srv.last_request, "Credential=KEYNEW1/"));
	assert_non_null(strstr(srv.last_request, "x-amz-security-token: NEWTOKEN"));
	assert_null(strstr(srv.last_request, "SECRET"));

	/* a HEAD's bare 403 with keys that expire: the provider was just asked, so not again */
	assert_int_equal(s3_head(c, "k", &o), -EACCES);
	s3_object_free(&o);
	assert_int_equal(srv.requests, 3);
	assert_int_equal(calls, 1);
	s3_client_free(c);

	/* a new client: a HEAD's bare 403 gets new keys and one retry */
	assert_int_equal(s3_client_new(&cfg, &c), 0);
	struct answer head[] = { { 403, NULL, NULL }, { 200, "ETag: \"e\"\r\n", NULL } };
	script(2, head);
	assert_int_equal(s3_head(c, "k", &o), 0);
	s3_object_free(&o);
	assert_int_equal(srv.requests, 2);
	assert_int_equal(calls, 2);
	assert_non_null(strstr(srv.last_request, "Credential=KEYNEW2/"));
	s3_client_free(c);
	struct answer denied[] = { { 403, NULL, "<Error><Code>InvalidAccessKeyId</Code></Error>" } };

	/* no provider: not retried */
	cfg.creds_fn = NULL;
	assert_int_equal(s3_client_new(&cfg, &c), 0);
	script(1, denied);
	assert_int_equal(s3_head(c, "k", &o), -EACCES);
	s3_object_free(&o);
	assert_int_equal(srv.requests, 1);
	s3_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_retry_then_success),
		cmocka_unit_test(test_retries_exhausted),
		cmocka_unit_test(test_not_retried),
		cmocka_unit_test(test_put_etag_checked),
		cmocka_unit_test(test_copy_200_with_error),
		cmocka_unit_test(test_connection_reuse),
		cmocka_unit_test(test_request_shape),
		cmocka_unit_test(test_head_headers),
		cmocka_unit_test(test_list_request),
		cmocka_unit_test(test_bucket_check),
		cmocka_unit_test(test_refused_keys_refreshed),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
