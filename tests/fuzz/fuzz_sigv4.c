/* tests/fuzz/fuzz_sigv4.c — SigV4 signing (s3/sigv4.c): the canonical query string and the
 * canonical request behind s3_sigv4_authorization.
 * Input: lines. 1 method, 2 canonical URI, 3 region, 4 access key, 5 secret key, 6 the time
 * (decimal seconds), then query parameters "name=value" (or "name": no value) up to an empty
 * line, then headers "Name:value" (or "Name": a NULL value). At most MAX_PAIRS of each. */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "s3/sigv4.h"
#include "tests/fuzz/fuzz.h"

#define MAX_PAIRS 64
#define LAST_TIME 253402300799LL /* 9999-12-31T23:59:59Z: x-amz-date has a 4-digit year */

static char *next_line(char **s)
{
	char *line = *s, *nl;

	if (!line)
		return NULL;
	nl = strchr(line, '\n');
	if (nl)
		*nl = '\0';
	*s = nl ? nl + 1 : NULL;
	return line;
}

/* Splits "name<sep>value" in place; no sep: value NULL. */
static struct s3_pair split_pair(char *line, char sep)
{
	char *p = strchr(line, sep);

	if (p)
		*p++ = '\0';
	return (struct s3_pair){ line, p };
}

static void reverse(const struct s3_pair *p, size_t n, struct s3_pair *out)
{
	for (size_t i = 0; i < n; i++)
		out[i] = p[n - 1 - i];
}

static void check_query(const struct s3_pair *params, size_t n)
{
	struct s3_pair rev[MAX_PAIRS];
	char *q = s3_sigv4_canonical_query(params, n), *q2;
	size_t amps = 0;

	if (!q)
		return; /* ENOMEM */
	for (const char *c = q; *c; c++) {
		FUZZ_CHECK(isalnum((unsigned char)*c) || strchr("-._~%=&", *c));
		amps += *c == '&';
	}
	FUZZ_CHECK(n ? amps == n - 1 : *q == '\0');
	/* sorted by (name, value): the order of the parameters does not matter */
	reverse(params, n, rev);
	q2 = s3_sigv4_canonical_query(rev, n);
	FUZZ_CHECK(!q2 || strcmp(q, q2) == 0);
	free(q2);
	free(q);
}

/* Whether the header names differ after lowercasing (with duplicates the sort order of the
 * canonical headers, and so the signature, depends on their order: S3 callers never send
 * one header twice). */
static bool distinct_names(const struct s3_pair *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (strcasecmp(h[i].name, h[j].name) == 0)
				return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct s3_pair params[MAX_PAIRS], hdrs[MAX_PAIRS], rev[MAX_PAIRS];
	size_t np = 0, nh = 0;
	char *copy = malloc(size + 1), *s = copy, *f[6], amz_date[17], payload[65];
	char sig[65], sig2[65], *auth = NULL, *auth2 = NULL, *query = NULL, *line;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	for (int i = 0; i < 6; i++)
		if (!(f[i] = next_line(&s)))
			goto out;
	while ((line = next_line(&s)) && *line && np < MAX_PAIRS)
		params[np++] = split_pair(line, '=');
	while ((line = next_line(&s)) && nh < MAX_PAIRS)
		hdrs[nh++] = split_pair(line, ':');

	long long t = strtoll(f[5], NULL, 10);
	s3_sigv4_amz_date((time_t)(t < 0 ? 0 : t > LAST_TIME ? LAST_TIME : t), amz_date);
	FUZZ_CHECK(strlen(amz_date) == 16 && amz_date[8] == 'T' && amz_date[15] == 'Z');
	s3_sigv4_sha256_hex(data, size, payload);

	check_query(params, np);
	query = s3_sigv4_canonical_query(params, np);
	if (!query)
		goto out;
	memset(sig, 0, sizeof(sig));
	auth = s3_sigv4_authorization(f[0], f[1], query, hdrs, nh, payload, f[3], f[4], f[2],
				      amz_date, sig);
	if (!auth)
		goto out;
	FUZZ_CHECK(strlen(sig) == 64 && strspn(sig, "0123456789abcdef") == 64);
	size_t alen = strlen(auth);
	FUZZ_CHECK(strncmp(auth, "AWS4-HMAC-SHA256 Credential=", 28) == 0);
	FUZZ_CHECK(alen > 64 + 11 && strcmp(auth + alen - 64, sig) == 0 &&
		   strncmp(auth + alen - 64 - 11, ",Signature=", 11) == 0);
	/* headers are signed in any case and order */
	if (distinct_names(hdrs, nh)) {
		reverse(hdrs, nh, rev);
		auth2 = s3_sigv4_authorization(f[0], f[1], query, rev, nh, payload, f[3], f[4],
					       f[2], amz_date, sig2);
		FUZZ_CHECK(!auth2 || (strcmp(auth, auth2) == 0 && strcmp(sig, sig2) == 0));
	}
out:
	free(auth2);
	free(auth);
	free(query);
	free(copy);
	return 0;
}
