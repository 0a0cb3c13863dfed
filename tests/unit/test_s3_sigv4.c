/* tests/unit/test_s3_sigv4.c — SigV4 against the worked examples of the AWS S3 documentation
 * "Signature Calculations for the Authorization Header: Transferring Payload in a Single
 * Chunk" (examplebucket, us-east-1, 20130524T000000Z). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "s3/sigv4.h"

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define DATE "20130524T000000Z"
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define HOST "examplebucket.s3.amazonaws.com"

static void check_auth(const char *auth, const char *signed_headers, const char *signature)
{
	char want[512];

	snprintf(want, sizeof(want),
		 "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
		 "SignedHeaders=%s,Signature=%s",
		 signed_headers, signature);
	assert_non_null(auth);
	assert_string_equal(auth, want);
}

static void test_get_object_range(void **state)
{
	(void)state;
	struct s3_pair h[] = {
		{ "Host", HOST },
		{ "Range", "bytes=0-9" },
		{ "x-amz-content-sha256", EMPTY_SHA },
		{ "x-amz-date", DATE },
	};
	char sig[65];
	char *auth = s3_sigv4_authorization("GET", "/test.txt", "", h, 4, EMPTY_SHA, AK, SK,
					    "us-east-1", DATE, sig);
	check_auth(auth, "host;range;x-amz-content-sha256;x-amz-date",
		   "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	assert_string_equal(sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	free(auth);
}

static void test_put_object(void **state)
{
	(void)state;
	const char *body = "Welcome to Amazon S3.";
	char sha[65];
	s3_sigv4_sha256_hex(body, strlen(body), sha);
	assert_string_equal(sha, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");

	/* The key "test$file.text" is encoded as a path segment: '$' -> %24. Headers are given
	 * out of order and with odd case to check sorting and lowercasing. */
	struct s3_pair h[] = {
		{ "x-amz-storage-class", "REDUCED_REDUNDANCY" },
		{ "Date", "Fri, 24 May 2013 00:00:00 GMT" },
		{ "Host", HOST },
		{ "X-Amz-Date", DATE },
		{ "x-amz-content-sha256", sha },
	};
	char *auth = s3_sigv4_authorization("PUT", "/test%24file.text", "", h, 5, sha, AK, SK,
					    "us-east-1", DATE, NULL);
	check_auth(auth, "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
		   "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
	free(auth);
}

static void test_get_bucket_lifecycle(void **state)
{
	(void)state;
	struct s3_pair q[] = { { "lifecycle", NULL } };
	char *query = s3_sigv4_canonical_query(q, 1);
	assert_string_equal(query, "lifecycle=");
	struct s3_pair h[] = {
		{ "Host", HOST },
		{ "x-amz-date", DATE },
		{ "x-amz-content-sha256", EMPTY_SHA },
	};
	char *auth = s3_sigv4_authorization("GET", "/", query, h, 3, EMPTY_SHA, AK, SK,
					    "us-east-1", DATE, NULL);
	check_auth(auth, "host;x-amz-content-sha256;x-amz-date",
		   "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
	free(auth);
	free(query);
}

static void test_get_bucket_list_objects(void **state)
{
	(void)state;
	/* Given unsorted: the canonical query must sort them. */
	struct s3_pair q[] = { { "prefix", "J" }, { "max-keys", "2" } };
	char *query = s3_sigv4_canonical_query(q, 2);
	assert_string_equal(query, "max-keys=2&prefix=J");
	struct s3_pair h[] = {
		{ "Host", HOST },
		{ "x-amz-date", DATE },
		{ "x-amz-content-sha256", EMPTY_SHA },
	};
	char *auth = s3_sigv4_authorization("GET", "/", query, h, 3, EMPTY_SHA, AK, SK,
					    "us-east-1", DATE, NULL);
	check_auth(auth, "host;x-amz-content-sha256;x-amz-date",
		   "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
	free(auth);
	free(query);
}

static void test_signature_changes(void **state)
{
	(void)state;
	/* Any change in a signed part must change the signature. */
	struct s3_pair h[] = {
		{ "Host", HOST },
		{ "Range", "bytes=0-10" },
		{ "x-amz-content-sha256", EMPTY_SHA },
		{ "x-amz-date", DATE },
	};
	char sig[65];
	char *auth = s3_sigv4_authorization("GET", "/test.txt", "", h, 4, EMPTY_SHA, AK, SK,
					    "us-east-1", DATE, sig);
	assert_non_null(auth);
	assert_string_not_equal(sig,
				"f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	free(auth);
}

static void test_canonical_query_encoding(void **state)
{
	(void)state;
	struct s3_pair q[] = {
		{ "prefix", "a b/c+d%e&f=g" },
		{ "continuation-token", "1/2+3=" },
		{ "list-type", "2" },
		{ "delimiter", "/" },
	};
	char *query = s3_sigv4_canonical_query(q, 4);
	assert_string_equal(query, "continuation-token=1%2F2%2B3%3D&delimiter=%2F&list-type=2&"
				   "prefix=a%20b%2Fc%2Bd%25e%26f%3Dg");
	free(query);
	query = s3_sigv4_canonical_query(NULL, 0);
	assert_string_equal(query, "");
	free(query);
}

static void test_amz_date(void **state)
{
	(void)state;
	char d[17];
	s3_sigv4_amz_date(1369353600, d); /* 2013-05-24 00:00:00 UTC */
	assert_string_equal(d, DATE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_object_range),
		cmocka_unit_test(test_put_object),
		cmocka_unit_test(test_get_bucket_lifecycle),
		cmocka_unit_test(test_get_bucket_list_objects),
		cmocka_unit_test(test_signature_changes),
		cmocka_unit_test(test_canonical_query_encoding),
		cmocka_unit_test(test_amz_date),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
