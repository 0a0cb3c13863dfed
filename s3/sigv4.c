/* s3/sigv4.c — AWS Signature Version 4 for S3 (Authorization header, signed payload).
 * Never logs: the secret and the signature stay in memory. */
#include "s3/sigv4.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util/util.h"

void s3_sigv4_amz_date(time_t t, char out[17])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

void s3_sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	bfs_hex(md, 32, out);
}

/* A growable string; on ENOMEM s is freed and set to NULL and later appends do nothing. */
struct sbuf {
	char *s;
	size_t len, cap;
};

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
	if (!b->s)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *p = realloc(b->s, cap);
		if (!p) {
			free(b->s);
			b->s = NULL;
			return;
		}
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

static int sb_init(struct sbuf *b)
{
	b->cap = 256;
	b->len = 0;
	b->s = malloc(b->cap);
	if (b->s)
		b->s[0] = '\0';
	return b->s ? 0 : -1;
}

struct enc_pair {
	char *name, *value;
};

static int cmp_enc_pair(const void *a, const void *b)
{
	const struct enc_pair *x = a, *y = b;
	int r = strcmp(x->name, y->name);

	return r ? r : strcmp(x->value, y->value);
}

char *s3_sigv4_canonical_query(const struct s3_pair *params, size_t n)
{
	struct enc_pair *enc = calloc(n ? n : 1, sizeof(*enc));
	struct sbuf b = { 0 };
	size_t i;

	if (!enc)
		return NULL;
	for (i = 0; i < n; i++) {
		enc[i].name = bfs_uri_encode(params[i].name, 0);
		enc[i].value = bfs_uri_encode(params[i].value ? params[i].value : "", 0);
		if (!enc[i].name || !enc[i].value)
			goto out;
	}
	qsort(enc, n, sizeof(*enc), cmp_enc_pair);
	if (sb_init(&b))
		goto out;
	for (i = 0; i < n; i++) {
		if (i)
			sb_puts(&b, "&");
		sb_puts(&b, enc[i].name);
		sb_puts(&b, "=");
		sb_puts(&b, enc[i].value);
	}
out:
	for (i = 0; i < n; i++) {
		free(enc[i].name);
		free(enc[i].value);
	}
	free(enc);
	return b.s;
}

/* Header name lowercased, value trimmed with inner runs of spaces collapsed. */
struct canon_header {
	char *name, *value;
};

static int cmp_canon_header(const void *a, const void *b)
{
	return strcmp(((const struct canon_header *)a)->name,
		      ((const struct canon_header *)b)->name);
}

static char *trim_collapse(const char *v)
{
	char *out = malloc(strlen(v) + 1);
	char *p = out;
	int space = 0;

	if (!out)
		return NULL;
	while (*v == ' ' || *v == '\t')
		v++;
	for (; *v; v++) {
		if (*v == ' ' || *v == '\t') {
			space = 1;
			continue;
		}
		if (space && p != out)
			*p++ = ' ';
		space = 0;
		*p++ = *v;
	}
	*p = '\0';
	return out;
}

static void hmac_sha256(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
	unsigned int len = 32;

	HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &len);
}

char *s3_sigv4_authorization(const char *method, const char *canonical_uri,
			     const char *canonical_query, const struct s3_pair *headers,
			     size_t nheaders, const char *payload_sha256, const char *access_key,
			     const char *secret_key, const char *region, const char *amz_date,
			     char *signature_out)
{
	struct canon_header *hs = calloc(nheaders ? nheaders : 1, sizeof(*hs));
	struct sbuf creq = { 0 }, signed_names = { 0 }, sts = { 0 }, auth = { 0 };
	char date[9], creq_hash[65], sig_hex[65], *secret = NULL;
	unsigned char k[32];
	size_t i;

	if (!hs)
		return NULL;
	for (i = 0; i < nheaders; i++) {
		hs[i].name = strdup(headers[i].name);
		hs[i].value = trim_collapse(headers[i].value ? headers[i].value : "");
		if (!hs[i].name || !hs[i].value)
			goto out;
		for (char *p = hs[i].name; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	qsort(hs, nheaders, sizeof(*hs), cmp_canon_header);

	/* Task 1: canonical request. */
	if (sb_init(&creq) || sb_init(&signed_names))
		goto out;
	sb_puts(&creq, method);
	sb_puts(&creq, "\n");
	sb_puts(&creq, canonical_uri);
	sb_puts(&creq, "\n");
	sb_puts(&creq, canonical_query ? canonical_query : "");
	sb_puts(&creq, "\n");
	for (i = 0; i < nheaders; i++) {
		sb_puts(&creq, hs[i].name);
		sb_puts(&creq, ":");
		sb_puts(&creq, hs[i].value);
		sb_puts(&creq, "\n");
		if (i)
			sb_puts(&signed_names, ";");
		sb_puts(&signed_names, hs[i].name);
	}
	sb_puts(&creq, "\n");
	if (!signed_names.s)
		goto out;
	sb_puts(&creq, signed_names.s);
	sb_puts(&creq, "\n");
	sb_puts(&creq, payload_sha256);
	if (!creq.s)
		goto out;
	s3_sigv4_sha256_hex(creq.s, creq.len, creq_hash);

	/* Task 2: string to sign. */
	memcpy(date, amz_date, 8);
	date[8] = '\0';
	if (sb_init(&sts))
		goto out;
	sb_puts(&sts, "AWS4-HMAC-SHA256\n");
	sb_puts(&sts, amz_date);
	sb_puts(&sts, "\n");
	sb_puts(&sts, date);
	sb_puts(&sts, "/");
	sb_puts(&sts, region);
	sb_puts(&sts, "/s3/aws4_request\n");
	sb_puts(&sts, creq_hash);
	if (!sts.s)
		goto out;

	/* Task 3: signing key and signature. */
	if (asprintf(&secret, "AWS4%s", secret_key) < 0) {
		secret = NULL;
		goto out;
	}
	hmac_sha256(secret, strlen(secret), date, k);
	hmac_sha256(k, 32, region, k);
	hmac_sha256(k, 32, "s3", k);
	hmac_sha256(k, 32, "aws4_request", k);
	hmac_sha256(k, 32, sts.s, k);
	bfs_hex(k, 32, sig_hex);

	if (sb_init(&auth))
		goto out;
	sb_puts(&auth, "AWS4-HMAC-SHA256 Credential=");
	sb_puts(&auth, access_key);
	sb_puts(&auth, "/");
	sb_puts(&auth, date);
	sb_puts(&auth, "/");
	sb_puts(&auth, region);
	sb_puts(&auth, "/s3/aws4_request,SignedHeaders=");
	sb_puts(&auth, signed_names.s);
	sb_puts(&auth, ",Signature=");
	sb_puts(&auth, sig_hex);
	if (signature_out)
		memcpy(signature_out, sig_hex, 65);
out:
	if (secret) {
		explicit_bzero(secret, strlen(secret));
		free(secret);
	}
	explicit_bzero(k, sizeof(k));
	for (i = 0; i < nheaders; i++) {
		free(hs[i].name);
		free(hs[i].value);
	}
	free(hs);
	free(creq.s);
	free(signed_names.s);
	free(sts.s);
	return auth.s;
}
