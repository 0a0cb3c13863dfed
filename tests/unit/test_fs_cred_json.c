/* tests/unit/test_fs_cred_json.c — fs/cred_json.c: credential_process and instance metadata
 * JSON, and ISO 8601 times. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fs/fs_int.h"

static char err[256];

static int parse(const char *text, enum bfs_cred_json kind, struct s3_creds *c)
{
	err[0] = '\0';
	return bfs_cred_json_parse(text, strlen(text), kind, c, err, sizeof(err));
}

static void test_iso8601(void **state)
{
	(void)state;
	time_t t;
	assert_int_equal(bfs_iso8601_parse("2026-12-02T06:30:00Z", &t), 0);
	assert_int_equal(t, 1796193000);
	assert_int_equal(bfs_iso8601_parse("2026-12-02T06:30:00.123456Z", &t), 0);
	assert_int_equal(t, 1796193000);
	assert_int_equal(bfs_iso8601_parse("2026-12-02T08:30:00+02:00", &t), 0);
	assert_int_equal(t, 1796193000);
	assert_int_equal(bfs_iso8601_parse("2026-12-02T01:00:00-0530", &t), 0);
	assert_int_equal(t, 1796193000);
	assert_int_equal(bfs_iso8601_parse("1970-01-01T00:00:00Z", &t), 0);
	assert_int_equal(t, 0);
	static const char *const bad[] = {
		"2026-12-02T06:30:00", "2026-12-02 06:30:00Z", "2026-13-02T06:30:00Z",
		"2026-12-02T06:30:00Zjunk", "2026-12-02T06:30Z", "", "tomorrow",
		"2026-12-02T06:30:00+2", "2026-12-02T24:00:00Z",
		/* signs and blanks where digits belong (found by tests/fuzz/fuzz_creds.c) */
		"2026-12-+2T12:52:46Z", "2026-12-02T-1:30:00Z", "2026-12-02T06:-3:00Z",
		"2026-12-02T06:30: 0Z", "2026-12-02T06:30:00+-1:00", "2026-12-02T06:30:00-+130",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (bfs_iso8601_parse(bad[i], &t) == 0)
			fail_msg("accepted '%s'", bad[i]);
}

static void test_process_json(void **state)
{
	(void)state;
	struct s3_creds c;
	assert_int_equal(parse("{\"Version\": 1, \"AccessKeyId\": \"AKIA1\",\n"
			       " \"SecretAccessKey\": \"s\\/ec\\\"ret\\u00e9\\ud83d\\ude00\",\n"
			       " \"SessionToken\": \"TOK\", \"Expiration\": "
			       "\"2026-12-02T06:30:00Z\", \"Extra\": {\"a\": [1, 2.5e3, null, "
			       "true, {\"b\": \"c\"}]}}", BFS_CRED_JSON_PROCESS, &c), 0);
	assert_string_equal(c.access_key, "AKIA1");
	assert_string_equal(c.secret_key, "s/ec\"ret\xc3\xa9\xf0\x9f\x98\x80");
	assert_string_equal(c.session_token, "TOK");
	assert_int_equal(c.expiration, 1796193000);
	s3_creds_free(&c);
	assert_null(c.access_key);

	/* no token and no expiration: long-term keys; Token is not SessionToken here */
	assert_int_equal(parse("{\"Version\":1,\"AccessKeyId\":\"K\",\"SecretAccessKey\":\"S\","
			       "\"Token\":\"T\"}", BFS_CRED_JSON_PROCESS, &c), 0);
	assert_null(c.session_token);
	assert_int_equal(c.expiration, 0);
	s3_creds_free(&c);

	static const struct { const char *json, *why; } bad[] = {
		{ "", "not a JSON object" },
		{ "[1]", "not a JSON object" },
		{ "{\"Version\":1,\"AccessKeyId\":\"K\",\"SecretAccessKey\":\"S\"} x",
		  "not a JSON object" },
		{ "{\"Version\":1,\"AccessKeyId\":\"K\",\"SecretAccessKey\":\"S\"", "not a JSON object" },
		{ "{\"Version\":1,\"AccessKeyId\":\"K\n\",\"SecretAccessKey\":\"S\"}",
		  "not a JSON object" },
		{ "{\"AccessKeyId\":\"K\",\"SecretAccessKey\":\"S\"}", "no Version" },
		{ "{\"Version\":2,\"AccessKeyId\":\"K\",\"SecretAccessKey\":\"S\"}",
		  "unsupported Version (want 1)" },
		{ "{\"Version\":1,\"SecretAccessKey\":\"S\"}", "no AccessKeyId" },
		{ "{\"Version\":1,\"AccessKeyId\":\"K\",\"SecretAccessKey\":\"\"}", "no SecretAccessKey" },
		{ "{\"Version\":1,\"AccessKeyId\":\"K\",\"SecretAccessKey\":\"S\",\"Expiration\":"
		  "\"soon\"}", "Expiration 'soon' is not an ISO 8601 time" },
		{ "{\"Version\":1,\"AccessKeyId\":\"K\",\"SecretAccessKey\":\"S\",\"x\":\"\\ud800\"}",
		  "not a JSON object" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i].json, BFS_CRED_JSON_PROCESS, &c) != -EINVAL)
			fail_msg("accepted %s", bad[i].json);
		assert_string_equal(err, bad[i].why);
		assert_null(c.access_key);
	}
	/* the message never carries a secret */
	assert_int_equal(parse("{\"Version\":1,\"AccessKeyId\":\"K\",\"SecretAccessKey\":"
			       "\"TOPSECRET\",\"Expiration\":\"x\"}", BFS_CRED_JSON_PROCESS, &c),
			 -EINVAL);
	assert_null(strstr(err, "TOPSECRET"));
}

static void test_imds_json(void **state)
{
	(void)state;
	struct s3_creds c;
	static const char doc[] =
		"{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2026-12-02T06:00:00Z\",\n"
		"  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"ASIA2\",\n"
		"  \"SecretAccessKey\" : \"sec\",\n  \"Token\" : \"tok==\",\n"
		"  \"Expiration\" : \"2026-12-02T12:30:00Z\"\n}\n";
	assert_int_equal(parse(doc, BFS_CRED_JSON_IMDS, &c), 0);
	assert_string_equal(c.access_key, "ASIA2");
	assert_string_equal(c.secret_key, "sec");
	assert_string_equal(c.session_token, "tok==");
	assert_int_equal(c.expiration, 1796193000 + 6 * 3600);
	s3_creds_free(&c);

	assert_int_equal(parse("{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"AccessKeyId\":\"K\"}",
			       BFS_CRED_JSON_IMDS, &c), -EINVAL);
	assert_string_equal(err, "Code is AssumeRoleUnauthorizedAccess, not Success");
	assert_int_equal(parse("{\"AccessKeyId\":\"K\",\"SecretAccessKey\":\"S\",\"Expiration\":"
			       "\"2026-12-02T12:30:00Z\"}", BFS_CRED_JSON_IMDS, &c), -EINVAL);
	assert_string_equal(err, "no Token");
	assert_int_equal(parse("{\"AccessKeyId\":\"K\",\"SecretAccessKey\":\"S\",\"Token\":\"T\"}",
			       BFS_CRED_JSON_IMDS, &c), -EINVAL);
	assert_string_equal(err, "no Expiration");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_iso8601),
		cmocka_unit_test(test_process_json),
		cmocka_unit_test(test_imds_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
