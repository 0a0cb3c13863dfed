/* s3/request.c — one signed S3 request over a pooled CURL handle, with retries; and the
 * bounded worker pool used for parallel HEADs, part uploads and ranged downloads. */
#include "s3/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util/util.h"

#define ERR_BODY_MAX (64 * 1024) /* error bodies are small; cap what we keep */

void s3_req_init(struct s3_req *r, const char *method, const char *key)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->what = method;
	r->key = key;
	r->body_fd = -1;
	r->fd = -1;
	r->sink = S3_SINK_MEM;
	s3_sigv4_sha256_hex("", 0, r->body_sha256);
	s3_object_init(&r->obj);
}

void s3_req_free(struct s3_req *r)
{
	for (size_t i = 0; i < r->nhdrs; i++) {
		free((char *)r->hdrs[i].name);
		free((char *)r->hdrs[i].value);
	}
	free(r->hdrs);
	free(r->resp);
	s3_object_free(&r->obj);
	r->hdrs = NULL;
	r->resp = NULL;
	r->nhdrs = 0;
}

void s3_req_header(struct s3_req *r, const char *name, const char *fmt, ...)
{
	struct s3_pair *h;
	char *n = strdup(name), *v = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&v, fmt, ap) < 0)
		v = NULL;
	va_end(ap);
	h = realloc(r->hdrs, (r->nhdrs + 1) * sizeof(*h));
	if (!n || !v || !h) {
		free(n);
		free(v);
		if (h)
			r->hdrs = h;
		r->oom = 1;
		return;
	}
	r->hdrs = h;
	r->hdrs[r->nhdrs].name = n;
	r->hdrs[r->nhdrs].value = v;
	r->nhdrs++;
}

static bool header_safe(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

int s3_req_meta(struct s3_req *r, const struct s3_meta *meta, const char *content_type)
{
	const char *ct = meta ? s3_meta_get(meta, S3_HDR_CONTENT_TYPE) : NULL;

	if (!ct)
		ct = content_type ? content_type : "application/octet-stream";
	if (!header_safe(ct))
		return -EINVAL;
	s3_req_header(r, "Content-Type", "%s", ct);
	for (size_t i = 0; meta && i < meta->n; i++) {
		const char *name = meta->kv[i].name, *value = meta->kv[i].value;
		if (s3_meta_is_header(name)) {
			/* a standard header (s3.h); Content-Type went above */
			const char *h = s3_meta_header_name(name);
			if (!h || !header_safe(value))
				return -EINVAL;
			if (strcmp(h, "Content-Type") != 0)
				s3_req_header(r, h, "%s", value);
			continue;
		}
		if (!*name || strpbrk(name, "\r\n: \t") || !header_safe(value))
			return -EINVAL;
		s3_req_header(r, "x-amz-meta-", "%s", value);
		/* Rename the header just added to carry the name (kept lowercase). */
		if (!r->oom) {
			char *full = NULL;
			if (asprintf(&full, "x-amz-meta-%s", name) < 0)
				return -ENOMEM;
			free((char *)r->hdrs[r->nhdrs - 1].name);
			r->hdrs[r->nhdrs - 1].name = full;
		}
	}
	return r->oom ? -ENOMEM : 0;
}

static void set_md5(struct s3_req *r, const unsigned char md5[16])
{
	bfs_base64(md5, 16, r->body_md5_b64);
	bfs_hex(md5, 16, r->body_md5_hex);
}

void s3_req_body_mem(struct s3_req *r, const void *buf, size_t len, bool with_md5)
{
	unsigned char md5[16];
	unsigned int n;

	r->body = buf ? buf : "";
	r->body_len = len;
	r->body_fd = -1;
	s3_sigv4_sha256_hex(r->body, len, r->body_sha256);
	if (with_md5) {
		EVP_Digest(r->body, len, md5, &n, EVP_md5(), NULL);
		set_md5(r, md5);
	}
}

int s3_req_body_fd(struct s3_req *r, int fd, uint64_t off, uint64_t len, bool with_md5)
{
	EVP_MD_CTX *sha = EVP_MD_CTX_new(), *md5 = EVP_MD_CTX_new();
	size_t bufsize = 256 * 1024;
	unsigned char *buf = malloc(bufsize), digest[32];
	uint64_t pos = 0;
	int rc = -ENOMEM;

	if (!sha || !md5 || !buf)
		goto out;
	EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
	EVP_DigestInit_ex(md5, EVP_md5(), NULL);
	while (pos < len) {
		size_t want = len - pos < bufsize ? (size_t)(len - pos) : bufsize;
		ssize_t n = pread(fd, buf, want, (off_t)(off + pos));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0) {
			rc = -EIO; /* file shorter than the size we were told to upload */
			s3_set_error("upload source: file ends at %llu, expected %llu bytes",
				     (unsigned long long)(off + pos),
				     (unsigned long long)(off + len));
			goto out;
		}
		EVP_DigestUpdate(sha, buf, (size_t)n);
		EVP_DigestUpdate(md5, buf, (size_t)n);
		if (r->tap)
			r->tap(r->tap_arg, buf, (size_t)n);
		pos += (uint64_t)n;
	}
	EVP_DigestFinal_ex(sha, digest, NULL);
	bfs_hex(digest, 32, r->body_sha256);
	EVP_DigestFinal_ex(md5, digest, NULL);
	if (with_md5)
		set_md5(r, digest);
	r->body = NULL;
	r->body_fd = fd;
	r->body_off = off;
	r->body_len = len;
	rc = 0;
out:
	EVP_MD_CTX_free(sha);
	EVP_MD_CTX_free(md5);
	free(buf);
	return rc;
}

/* ---- handle pool ---- */

/* Takes an idle handle, or makes one while under max_connections, else waits. */
static CURL *pool_get(struct s3_client *c)
{
	CURL *h = NULL;

	pthread_mutex_lock(&c->pool_lock);
	while (c->nidle == 0 && c->nhandles >= c->max_connections)
		pthread_cond_wait(&c->pool_cond, &c->pool_lock);
	if (c->nidle > 0) {
		h = c->idle[--c->nidle];
	} else {
		c->nhandles++;
		pthread_mutex_unlock(&c->pool_lock);
		h = curl_easy_init(); /* outside the lock */
		if (h)
			return h;
		pthread_mutex_lock(&c->pool_lock);
		c->nhandles--;
		pthread_cond_signal(&c->pool_cond);
	}
	pthread_mutex_unlock(&c->pool_lock);
	return h;
}

/* Returns a handle: options are reset, its connection cache (keep-alive) is kept. */
static void pool_put(struct s3_client *c, CURL *h)
{
	curl_easy_reset(h);
	pthread_mutex_lock(&c->pool_lock);
	c->idle[c->nidle++] = h;
	pthread_cond_signal(&c->pool_cond);
	pthread_mutex_unlock(&c->pool_lock);
}

/* ---- callbacks ---- */

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
	s3_parse_header_line(arg, line, size * n);
	return size * n;
}

static int mem_append(struct s3_req *r, const char *data, size_t len, size_t limit)
{
	if (r->resp_len + len > limit)
		len = limit > r->resp_len ? limit - r->resp_len : 0;
	if (r->resp_len + len + 1 > r->resp_cap) {
		size_t cap = (r->resp_len + len + 1) * 2;
		char *p = realloc(r->resp, cap);
		if (!p)
			return -ENOMEM;
		r->resp = p;
		r->resp_cap = cap;
	}
	memcpy(r->resp + r->resp_len, data, len);
	r->resp_len += len;
	r->resp[r->resp_len] = '\0';
	return 0;
}

static size_t on_write(char *data, size_t size, size_t n, void *arg)
{
	struct s3_req *r = arg;
	size_t len = size * n, done = 0;

	if (r->status < 200 || r->status >= 300 || r->sink == S3_SINK_MEM) {
		size_t limit = r->status >= 200 && r->status < 300 ? SIZE_MAX / 2 : ERR_BODY_MAX;
		if (mem_append(r, data, len, limit)) {
			r->io_error = -ENOMEM;
			return 0;
		}
		return len;
	}
	if (r->ranged && r->status == 200) {
		/* The server ignored our Range and sends the whole object. */
		r->skip = r->range_off;
		r->ranged = false;
	}
	if (r->skip) { /* server ignored our Range: drop bytes before the offset */
		size_t s = r->skip < len ? (size_t)r->skip : len;
		r->skip -= s;
		done = s;
	}
	if (r->sink == S3_SINK_BUF) {
		size_t room = r->cap - (size_t)r->got;
		size_t take = len - done < room ? len - done : room;
		memcpy((char *)r->buf + r->got, data + done, take);
		r->got += take;
		return len; /* bytes beyond cap are dropped */
	}
	while (done < len) {
		ssize_t w = pwrite(r->fd, data + done, len - done, (off_t)(r->fd_off + r->got));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			r->io_error = w < 0 ? -errno : -EIO;
			return 0;
		}
		done += (size_t)w;
		r->got += (uint64_t)w;
	}
	return len;
}

static size_t on_read(char *dst, size_t size, size_t n, void *arg)
{
	struct s3_req *r = arg;
	size_t want = size * n;

	if (r->body_len - r->sent < want)
		want = (size_t)(r->body_len - r->sent);
	if (want == 0)
		return 0;
	if (r->body) {
		memcpy(dst, (const char *)r->body + r->sent, want);
	} else {
		ssize_t got;
		do {
			got = pread(r->body_fd, dst, want, (off_t)(r->body_off + r->sent));
		} while (got < 0 && errno == EINTR);
		if (got <= 0) {
			r->io_error = got < 0 ? -errno : -EIO;
			return CURL_READFUNC_ABORT;
		}
		want = (size_t)got;
	}
	r->sent += want;
	return want;
}

/* Rewinds the upload body (curl asks when it must resend, e.g. after a redirect). */
static int on_seek(void *arg, curl_off_t off, int origin)
{
	struct s3_req *r = arg;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > r->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	r->sent = (uint64_t)off;
	return CURL_SEEKFUNC_OK;
}

/* ---- one attempt ---- */

/* Path as sent and signed: "/bucket/key" (path style) or "/key", each segment encoded once. */
static char *request_path(struct s3_client *c, const char *key)
{
	char *ekey = key ? bfs_uri_encode(key, 1) : NULL, *ebucket = NULL, *path = NULL;
	int n = -1;

	if (key && !ekey)
		return NULL;
	if (c->path_style) {
		ebucket = bfs_uri_encode(c->bucket, 0);
		if (ebucket)
			n = ekey ? asprintf(&path, "/%s/%s", ebucket, ekey)
				 : asprintf(&path, "/%s", ebucket);
	} else {
		n = asprintf(&path, "/%s", ekey ? ekey : "");
	}
	free(ekey);
	free(ebucket);
	return n < 0 ? NULL : path;
}

static void backoff_sleep(int attempt)
{
	/* Full jitter over an exponential window: 100 ms, 200 ms, ... capped at 10 s. */
	uint64_t window_ms = 100ULL << (attempt < 7 ? attempt : 7);
	if (window_ms > 10000)
		window_ms = 10000;
	uint64_t ms = window_ms / 2 + arc4random_uniform((uint32_t)(window_ms / 2 + 1));
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

struct attempt {
	CURLcode curl_rc;
	char curl_msg[CURL_ERROR_SIZE];
	int64_t ns; /* how long the transfer took (monotonic), 0 if it never started */
};

/* One attempt, signed with cs. */
static int perform(struct s3_client *c, struct s3_req *r, const char *path, const char *query,
		   struct attempt *a, const struct s3_cred_set *cs)
{
	char amz_date[17], *auth = NULL, *url = NULL, *hostname = NULL, *line = NULL;
	struct s3_pair *sh = NULL;
	struct curl_slist *list = NULL, *l;
	size_t nsh = 0;
	CURL *h = NULL;
	int rc = -ENOMEM;

	/* Reset the response of a previous attempt. */
	r->status = 0;
	r->got = 0;
	r->sent = 0;
	r->resp_len = 0;
	r->io_error = 0;
	r->skip = 0;
	r->ranged = r->range_off > 0;
	r->request_id[0] = '\0';
	s3_object_free(&r->obj);
	r->have_range = false;
	r->range_len = 0;
	a->curl_rc = CURLE_OK;
	a->curl_msg[0] = '\0';
	a->ns = 0;

	if (c->path_style)
		hostname = strdup(c->host);
	else if (asprintf(&hostname, "%s.%s", c->bucket, c->host) < 0)
		hostname = NULL;
	if (!hostname)
		goto out;
	if (asprintf(&url, "%s://%s%s%s%s", c->scheme, hostname, path, *query ? "?" : "",
		     query) < 0) {
		url = NULL;
		goto out;
	}

	/* Headers to sign: ours plus the caller's. */
	s3_sigv4_amz_date(time(NULL), amz_date);
	sh = calloc(r->nhdrs + 6, sizeof(*sh));
	if (!sh)
		goto out;
	sh[nsh++] = (struct s3_pair){ "Host", hostname };
	sh[nsh++] = (struct s3_pair){ "x-amz-date", amz_date };
	sh[nsh++] = (struct s3_pair){ "x-amz-content-sha256", r->body_sha256 };
	if (cs->session_token)
		sh[nsh++] = (struct s3_pair){ "x-amz-security-token", cs->session_token };
	if (r->body_md5_b64[0])
		sh[nsh++] = (struct s3_pair){ "Content-MD5", r->body_md5_b64 };
	for (size_t i = 0; i < r->nhdrs; i++)
		sh[nsh++] = r->hdrs[i];
	auth = s3_sigv4_authorization(r->method, path, query, sh, nsh, r->body_sha256,
				      cs->access_key, cs->secret_key, c->region, amz_date, NULL);
	if (!auth)
		goto out;
	for (size_t i = 0; i < nsh; i++) {
		if (asprintf(&line, "%s: %s", sh[i].name, sh[i].value) < 0)
			goto out;
		l = curl_slist_append(list, line);
		free(line);
		if (!l)
			goto out;
		list = l;
	}
	if (asprintf(&line, "Authorization: %s", auth) < 0)
		goto out;
	l = curl_slist_append(list, line);
	explicit_bzero(line, strlen(line));
	free(line);
	if (!l)
		goto out;
	list = l;
	/* No "Expect: 100-continue" round trip, no unsigned default Accept. */
	if (!(l = curl_slist_append(list, "Expect:")) || !(list = l) ||
	    !(l = curl_slist_append(list, "Accept:")))
		goto out;
	list = l;

	h = pool_get(c);
	if (!h)
		goto out;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	/* a large object arrives in 256 KiB reads, not 16 KiB ones: 16x fewer poll and recv
	 * calls (the buffer lives with the pooled handle) */
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L << 10);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->low_speed_timeout_s);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
	if (c->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, a->curl_msg);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "PUT") == 0 || strcmp(r->method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, r);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	}

	int64_t t0 = bfs_mono_ns();
	a->curl_rc = curl_easy_perform(h);
	a->ns = bfs_mono_ns() - t0;
	if (a->curl_rc == CURLE_OK) {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
		if (r->resp)
			r->resp[r->resp_len] = '\0';
	}
	atomic_fetch_add(&c->stats.bytes_up, r->sent);
	atomic_fetch_add(&c->stats.bytes_down,
			 r->got + (r->status >= 200 && r->status < 300 ? r->resp_len : 0));
	pool_put(c, h);
	rc = 0;
out:
	curl_slist_free_all(list);
	free(sh);
	if (auth) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	free(url);
	free(hostname);
	return rc;
}

/* Answers a file system expects (absent, not modified, changed, past the end): not errors. */
static bool expected_answer(int rc)
{
	return rc == -ENOENT || rc == -EALREADY || rc == -ESTALE || rc == -ERANGE;
}

/* "key=KEY" or, for a bucket-level request, "bucket=NAME": the last field of a log line. */
static void log_where(const struct s3_client *c, const struct s3_req *r, char *out, size_t len)
{
	if (r->key)
		snprintf(out, len, "key=%s", r->key);
	else
		snprintf(out, len, "bucket=%s", c->bucket);
}

/* One line per failed attempt (retried: debug) or failed request (after its retries: error,
 * or debug for an expected answer such as 404 NoSuchKey). why: the server's message, curl's,
 * or "". Never anything signed or secret. */
static void log_failure(const struct s3_client *c, const struct s3_req *r, enum s3_op op,
			int attempts, int rc, const char *why, bool retried)
{
	char where[S3_MAX_KEY + 80];
	enum bfs_log_level level = retried || r->quiet || expected_answer(rc) ? BFS_LOG_DEBUG
									     : BFS_LOG_ERR;

	log_where(c, r, where, sizeof(where));
	bfs_log(level, "s3 %s %s: status=%ld code=%s request_id=%s attempts=%d error=%s%s%s%s %s",
		s3_op_name(op), retried ? "failed, retrying" : "failed", r->status,
		r->err.code[0] ? r->err.code : "-", r->request_id[0] ? r->request_id : "-",
		attempts, strerrorname_np(-rc) ? strerrorname_np(-rc) : "?", why[0] ? " (" : "",
		why, why[0] ? ")" : "", where);
}

/* Whether S3 may have refused the keys cs of a failed request: an error code saying so, or
 * a HEAD's 400/403, which has no body to say why, with keys that expire. */
static bool keys_refused(const struct s3_req *r, const struct s3_cred_set *cs)
{
	const char *code = r->err.code;
	if (!code[0])
		return strcmp(r->method, "HEAD") == 0 && (r->status == 400 || r->status == 403) &&
		       cs->expiration != 0;
	return !strcmp(code, "ExpiredToken") || !strcmp(code, "InvalidToken") ||
	       !strcmp(code, "InvalidAccessKeyId") || !strcmp(code, "TokenRefreshRequired");
}

int s3_request(struct s3_client *c, struct s3_req *r)
{
	char *path = NULL, *query = NULL;
	const char *key = r->key ? r->key : c->bucket; /* for messages */
	enum s3_op op = s3_op_of(r);
	struct attempt a = { .curl_rc = CURLE_OK };
	const char *detail = ""; /* what the log line adds to status and code */
	struct s3_cred_set *cs = NULL; /* the keys of the current attempt (a reference) */
	bool creds_retried = false;
	int rc = -ENOMEM, attempt = 0;

	if (r->oom)
		goto fail;
	path = request_path(c, r->key);
	query = s3_sigv4_canonical_query(r->params, r->nparams);
	if (!path || !query)
		goto fail;

	int64_t wait_until = 0; /* unreachable server: retrying until then (monotonic ns) */
	for (attempt = 0;; attempt++) {
		bool retry = false, unreachable = false;
		const char *why = "";

		detail = "";
		s3_creds_put(cs);
		cs = s3_creds_get(c, time(NULL));
		rc = perform(c, r, path, query, &a, cs);
		if (rc)
			goto fail;
		s3_stats_attempt(c, r, op, a.ns);
		memset(&r->err, 0, sizeof(r->err));
		if (r->io_error) {
			rc = r->io_error; /* local read/write failure: not retryable */
			detail = "local I/O error";
			s3_set_error("%s %s: local I/O error: %s", r->what, key, strerror(-rc));
			goto fail;
		}
		if (a.curl_rc != CURLE_OK && r->have_range && r->range_total == 0) {
			/* Some servers answer a Range on an empty object with a broken 206
			 * instead of 416: the range is not satisfiable, say so. */
			rc = -ERANGE;
			detail = "range of an empty object";
			s3_set_error("%s %s: range of an empty object", r->what, key);
			goto fail;
		} else if (a.curl_rc != CURLE_OK) {
			rc = s3_errmap_curl(a.curl_rc);
			unreachable = s3_errmap_unreachable_curl(a.curl_rc);
			retry = s3_errmap_retryable_curl(a.curl_rc) ||
				(unreachable && c->unreachable_wait_s > 0);
			why = a.curl_msg[0] ? a.curl_msg : curl_easy_strerror(a.curl_rc);
			const char *what = s3_errmap_curl_what(a.curl_rc);
			detail = why;
			s3_set_error("%s %s: %s%s%s", r->what, key, what ? what : "",
				     what ? ": " : "", why);
		} else if (r->status == 206 && r->sink != S3_SINK_MEM && r->range_len &&
			   r->got != r->range_len) {
			/* framed as complete, but shorter (or longer) than the range it says it
			 * holds: lost on the way, fetched again */
			rc = -EIO;
			retry = true;
			why = detail = "body shorter than its Content-Range";
			s3_set_error("%s %s: body of %llu bytes for a Content-Range of %llu", r->what,
				     key, (unsigned long long)r->got,
				     (unsigned long long)r->range_len);
		} else if (r->status >= 200 && r->status < 300) {
			rc = r->check ? r->check(r, r->check_arg) : 0;
			if (rc == 0)
				break;
			retry = rc == -EAGAIN || s3_errmap_retryable_http(r->status, r->err.code);
			why = r->err.code[0] ? r->err.code : "bad response";
			detail = "bad response";
			if (rc == -EAGAIN)
				rc = -EBADMSG;
		} else {
			s3_xml_parse_error(r->resp, r->resp_len, &r->err);
			if (!r->request_id[0])
				snprintf(r->request_id, sizeof(r->request_id), "%s",
					 r->err.request_id);
			rc = s3_errmap_http(r->status, r->err.code);
			retry = s3_errmap_retryable_http(r->status, r->err.code);
			why = r->err.code[0] ? r->err.code : "";
			detail = r->err.message;
			s3_set_error("%s %s: HTTP %ld %s%s%s (request id %s)", r->what, key,
				     r->status, why, r->err.message[0] ? ": " : "",
				     r->err.message, r->request_id[0] ? r->request_id : "-");
			/* keys S3 no longer takes: new ones from the provider, one retry */
			if (!creds_retried && keys_refused(r, cs) &&
			    s3_creds_rejected(c, cs, time(NULL))) {
				creds_retried = true;
				bfs_log(BFS_LOG_INFO, "s3: %s %s: HTTP %ld %s; retrying with new "
					"credentials", r->what, key, r->status, why);
				continue;
			}
		}
		if (!retry)
			goto fail;
		if (attempt >= c->retries) {
			/* out of retries; a server that cannot be reached may be back soon (a
			 * restart, a failover): wait for it as long as configured */
			int64_t now = bfs_mono_ns();
			if (!unreachable || c->unreachable_wait_s <= 0)
				goto fail;
			if (!wait_until) {
				wait_until = now + c->unreachable_wait_s * (int64_t)1000000000;
				bfs_log(BFS_LOG_WARN, "s3: %s %s: the server cannot be reached (%s); "
					"waiting up to %ld s for it", r->what, key, why,
					c->unreachable_wait_s);
			}
			if (now >= wait_until)
				goto fail;
		}
		atomic_fetch_add(&c->stats.retries, 1);
		atomic_fetch_add(&c->ops[op].retries, 1);
		log_failure(c, r, op, attempt + 1, rc, detail, true); /* debug */
		backoff_sleep(attempt);
	}
	rc = 0;
	goto out;
fail:
	if (rc == -ENOMEM)
		s3_set_error("%s %s: out of memory", r->what, key);
	if (cs && (rc == -EACCES || rc == -EINVAL) && keys_refused(r, cs) && cs->expiration &&
	    time(NULL) >= cs->expiration)
		s3_set_error("%s %s: HTTP %ld %s: the credentials expired and could not be "
			     "refreshed (request id %s)", r->what, key, r->status,
			     r->err.code[0] ? r->err.code : "refused",
			     r->request_id[0] ? r->request_id : "-");
	log_failure(c, r, op, attempt + (path && query), rc,
		    rc == -ENOMEM ? "out of memory" : detail, false);
	if (!expected_answer(rc)) {
		atomic_fetch_add(&c->stats.errors, 1);
		atomic_fetch_add(&c->ops[op].errors, 1);
	}
out:
	s3_creds_put(cs);
	free(path);
	free(query);
	return rc;
}

/* ---- bounded worker pool ---- */

struct parallel {
	void (*fn)(void *arg, size_t i);
	void *arg;
	size_t n;
	atomic_size_t next;
};

static void *parallel_worker(void *arg)
{
	struct parallel *p = arg;
	size_t i;

	while ((i = atomic_fetch_add(&p->next, 1)) < p->n)
		p->fn(p->arg, i);
	return NULL;
}

int s3_parallel(struct s3_client *c, size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
	struct parallel p = { .fn = fn, .arg = arg, .n = n };
	size_t nthreads = n < (size_t)c->max_connections ? n : (size_t)c->max_connections;
	pthread_t *tids;
	size_t started = 0;

	atomic_init(&p.next, 0);
	if (nthreads <= 1) {
		parallel_worker(&p);
		return 0;
	}
	tids = calloc(nthreads, sizeof(*tids));
	if (!tids)
		return -ENOMEM;
	/* The calling thread works too; the others are extra workers. */
	for (size_t t = 0; t + 1 < nthreads; t++)
		if (pthread_create(&tids[started], NULL, parallel_worker, &p) == 0)
			started++;
	parallel_worker(&p);
	for (size_t t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	free(tids);
	return 0;
}

void s3_first_err_init(struct s3_first_err *fe)
{
	pthread_mutex_init(&fe->lock, NULL);
	fe->rc = 0;
	fe->msg[0] = '\0';
}

void s3_first_err_record(struct s3_first_err *fe, int rc)
{
	pthread_mutex_lock(&fe->lock);
	if (rc < 0 && fe->rc == 0) {
		fe->rc = rc;
		snprintf(fe->msg, sizeof(fe->msg), "%s", s3_last_error());
	}
	pthread_mutex_unlock(&fe->lock);
}

int s3_first_err_finish(struct s3_first_err *fe)
{
	if (fe->rc)
		s3_set_error("%s", fe->msg);
	pthread_mutex_destroy(&fe->lock);
	return fe->rc;
}
