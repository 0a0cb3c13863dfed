/* fs/imds.c — keys of the EC2 instance's IAM role from the instance metadata service, IMDSv2:
 *   PUT  /latest/api/token                              X-aws-ec2-metadata-token-ttl-seconds
 *   GET  /latest/meta-data/iam/security-credentials/     X-aws-ec2-metadata-token: the role
 *   GET  /latest/meta-data/iam/security-credentials/ROLE  the keys (fs/cred_json.c)
 * Every fetch starts with a new session token (they are asked for every few hours), so nothing
 * is kept between calls. Short timeouts: a machine that is not on EC2 fails within about a
 * second. Never through a proxy, never following redirects. Tokens and keys are never logged. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "fs/fs_int.h"

#define TOKEN_TTL_S 21600
#define MAX_BODY (64 * 1024)
#define CONNECT_TIMEOUT_MS 1000
#define TOTAL_TIMEOUT_MS 3000

struct body {
	char buf[MAX_BODY + 1];
	size_t len;
	bool over;
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct body *b = arg;
	size_t len = size * n;
	if (b->len + len > MAX_BODY) {
		b->over = true;
		return 0;
	}
	memcpy(b->buf + b->len, data, len);
	b->len += len;
	b->buf[b->len] = '\0';
	return len;
}

/* One request; the body in b (NUL-terminated). 0 for a 200, else -errno with err set. */
static int call(const char *method, const char *url, const char *header, struct body *b,
		char *err, size_t errlen)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = NULL, *l;
	char cerr[CURL_ERROR_SIZE] = "";
	long status = 0;
	int rc = -ENOMEM;

	b->len = 0;
	b->over = false;
	b->buf[0] = '\0';
	if (!h)
		goto out;
	if (!(l = curl_slist_append(hdrs, header)) || !(hdrs = l) ||
	    !(l = curl_slist_append(hdrs, "Expect:")) || !(hdrs = l))
		goto out;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)TOTAL_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	if (strcmp(method, "PUT") == 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
	}
	CURLcode cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		snprintf(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(cc));
		rc = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EHOSTUNREACH;
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (b->over) {
		snprintf(err, errlen, "answer larger than %d bytes", MAX_BODY);
		rc = -EPROTO;
	} else if (status != 200) {
		snprintf(err, errlen, "HTTP %ld", status);
		rc = status == 404 ? -ENOENT : status == 401 || status == 403 ? -EACCES : -EPROTO;
	} else {
		rc = 0;
	}
out:
	curl_slist_free_all(hdrs);
	if (h)
		curl_easy_cleanup(h);
	return rc;
}

int bfs_imds_fetch(const char *endpoint, struct s3_creds *out, char *err, size_t errlen)
{
	struct body *b = malloc(sizeof(*b));
	char url[1024], hdr[1024], why[256] = "", *role = NULL;
	int rc = -ENOMEM;

	memset(out, 0, sizeof(*out));
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	/* 1. a session token */
	snprintf(url, sizeof(url), "%s/latest/api/token", endpoint);
	snprintf(hdr, sizeof(hdr), "X-aws-ec2-metadata-token-ttl-seconds: %d", TOKEN_TTL_S);
	if ((rc = call("PUT", url, hdr, b, why, sizeof(why)))) {
		snprintf(err, errlen, "no session token from %s: %s", url, why);
		goto out;
	}
	size_t tn = b->len;
	while (tn && (b->buf[tn - 1] == '\n' || b->buf[tn - 1] == '\r'))
		tn--;
	if (tn == 0 || tn > 512 || memchr(b->buf, '\n', tn) || memchr(b->buf, '\r', tn) ||
	    memchr(b->buf, '\0', tn)) {
		snprintf(err, errlen, "the session token from %s is not one line", url);
		rc = -EPROTO;
		goto out;
	}
	snprintf(hdr, sizeof(hdr), "X-aws-ec2-metadata-token: %.*s", (int)tn, b->buf);
	explicit_bzero(b->buf, b->len);

	/* 2. the role */
	snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", endpoint);
	if ((rc = call("GET", url, hdr, b, why, sizeof(why)))) {
		snprintf(err, errlen, rc == -ENOENT ? "no IAM role attached to the instance (%s: %s)"
			 : "cannot list the instance's IAM role at %s: %s", url, why);
		goto out;
	}
	size_t rn = strcspn(b->buf, "\r\n");
	if (rn == 0 || rn > 128 || strspn(b->buf, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					  "0123456789+=,.@_-") < rn) {
		snprintf(err, errlen, "no usable IAM role name at %s", url);
		rc = -EPROTO;
		goto out;
	}
	if (!(role = strndup(b->buf, rn))) {
		rc = -ENOMEM;
		goto out;
	}

	/* 3. its keys */
	snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/%s", endpoint,
		 role);
	if ((rc = call("GET", url, hdr, b, why, sizeof(why)))) {
		snprintf(err, errlen, "cannot get the keys of IAM role %s at %s: %s", role, url, why);
		goto out;
	}
	rc = bfs_cred_json_parse(b->buf, b->len, BFS_CRED_JSON_IMDS, out, why, sizeof(why));
	if (rc)
		snprintf(err, errlen, "bad answer for IAM role %s at %s: %s", role, url, why);
out:
	explicit_bzero(hdr, sizeof(hdr));
	explicit_bzero(b, sizeof(*b));
	free(b);
	free(role);
	return rc;
}
