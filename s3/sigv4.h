/* s3/sigv4.h — internal to s3/: AWS Signature Version 4 (header auth, signed payload).
 * Exposed only so tests/unit/test_s3_sigv4.c can sign with a fixed time. Thread-safe. */
#ifndef BFS_S3_SIGV4_H
#define BFS_S3_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* One request header or query parameter; strings owned by whoever built the array. */
struct s3_pair {
	const char *name;
	const char *value; /* NULL for a query parameter without value ("?uploads") */
};

/* "20130524T000000Z" of t (UTC) into out[17]. */
void s3_sigv4_amz_date(time_t t, char out[17]);

/* Canonical query string: names and values percent-encoded (RFC 3986), sorted by name then
 * value, joined with '&'; a parameter without value becomes "name=". Also a valid URL query.
 * Returns malloc'd string owned by the caller ("" when n == 0), NULL on ENOMEM. */
char *s3_sigv4_canonical_query(const struct s3_pair *params, size_t n);

/* Hex SHA-256 of a buffer into out[65]. */
void s3_sigv4_sha256_hex(const void *data, size_t len, char out[65]);

/* Computes the Authorization header value for a request.
 * canonical_uri: the already percent-encoded path exactly as sent ("/test%24file.text").
 * canonical_query: from s3_sigv4_canonical_query. headers: every header to sign (Host,
 * x-amz-date, x-amz-content-sha256, ...), any case and order; values are trimmed.
 * payload_sha256: hex SHA-256 of the body. amz_date: the x-amz-date value.
 * Returns malloc'd "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." owned
 * by the caller, or NULL on ENOMEM. signature_out (nullable, 65 bytes) gets the hex signature. */
char *s3_sigv4_authorization(const char *method, const char *canonical_uri,
			     const char *canonical_query, const struct s3_pair *headers,
			     size_t nheaders, const char *payload_sha256, const char *access_key,
			     const char *secret_key, const char *region, const char *amz_date,
			     char *signature_out);

#endif
