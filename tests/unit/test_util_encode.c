/* tests/unit/test_util_encode.c — percent-encoding, hex, base64 and size parsing (util/). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/util.h"

static void check_encode(const char *in, int keep_slash, const char *want)
{
	char *got = bfs_uri_encode(in, keep_slash);

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_uri_encode(void **state)
{
	(void)state;
	check_encode("AZaz09-._~", 0, "AZaz09-._~");
	check_encode("a b/c", 1, "a%20b/c");
	check_encode("a b/c", 0, "a%20b%2Fc");
	check_encode("test$file.text", 1, "test%24file.text");
	check_encode("100%/a+b#c?d&e=f", 1, "100%25/a%2Bb%23c%3Fd%26e%3Df");
	check_encode("\xc3\xbc", 1, "%C3%BC"); /* UTF-8 bytes, upper-case hex */
	check_encode("", 1, "");
	/* Encoding an encoded string encodes the '%' again: callers must encode once. */
	check_encode("%20", 1, "%2520");
}

static void test_uri_decode(void **state)
{
	(void)state;
	const char *samples[] = { "dir/a b+c%d&e=?#", "\xc3\xbc/\x01\x7f", "", "%%%" };
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		char *enc = bfs_uri_encode(samples[i], 1);
		char *dec = bfs_uri_decode(enc, 0);
		assert_string_equal(dec, samples[i]);
		free(enc);
		free(dec);
	}
	char *d = bfs_uri_decode("a+b%2Bc%zz%4", 1);
	assert_string_equal(d, "a b+c%zz%4");
	free(d);
	d = bfs_uri_decode("a+b", 0);
	assert_string_equal(d, "a+b");
	free(d);
}

static void test_hex(void **state)
{
	(void)state;
	const unsigned char in[] = { 0x00, 0x01, 0xab, 0xff, 0x7e };
	char out[11];

	bfs_hex(in, 5, out);
	assert_string_equal(out, "0001abff7e");
	bfs_hex(in, 0, out);
	assert_string_equal(out, "");
}

static void test_unhex(void **state)
{
	(void)state;
	unsigned char out[4];
	assert_int_equal(bfs_unhex("00fFa9", out, 3), 0);
	assert_memory_equal(out, "\x00\xff\xa9", 3);
	assert_int_equal(bfs_unhex("00ff", out, 3), -EINVAL);   /* too short */
	assert_int_equal(bfs_unhex("00ffa9b", out, 3), -EINVAL); /* too long */
	assert_int_equal(bfs_unhex("00fg", out, 2), -EINVAL);    /* not hex */
	assert_int_equal(bfs_unhex(NULL, out, 1), -EINVAL);
	char hex[9];
	bfs_hex((const unsigned char *)"\x12\x34\xab\xcd", 4, hex);
	assert_int_equal(bfs_unhex(hex, out, 4), 0);
	assert_memory_equal(out, "\x12\x34\xab\xcd", 4);
}

static void test_base64_vectors(void **state)
{
	(void)state;
	/* RFC 4648 section 10. */
	const char *plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	const char *enc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	char out[16];
	unsigned char back[16];

	for (int i = 0; i < 7; i++) {
		size_t n = bfs_base64((const unsigned char *)plain[i], strlen(plain[i]), out);
		assert_string_equal(out, enc[i]);
		assert_int_equal(n, strlen(enc[i]));
		long m = bfs_base64_decode(enc[i], strlen(enc[i]), back);
		assert_int_equal(m, (long)strlen(plain[i]));
		assert_memory_equal(back, plain[i], (size_t)m);
	}
}

static void test_base64_round_trip(void **state)
{
	(void)state;
	unsigned char in[256], back[256 + 3];
	char enc[4 * 86 + 1];

	for (int i = 0; i < 256; i++)
		in[i] = (unsigned char)(255 - i);
	for (size_t n = 0; n <= 256; n++) {
		size_t e = bfs_base64(in, n, enc);
		assert_int_equal(e, 4 * ((n + 2) / 3));
		assert_int_equal(bfs_base64_decode(enc, e, back), (long)n);
		assert_memory_equal(back, in, n);
	}
}

static void test_base64_invalid(void **state)
{
	(void)state;
	unsigned char out[16];

	assert_int_equal(bfs_base64_decode("Zm9", 3, out), -EINVAL);    /* not a multiple of 4 */
	assert_int_equal(bfs_base64_decode("Zm9*", 4, out), -EINVAL);   /* bad character */
	assert_int_equal(bfs_base64_decode("Z===", 4, out), -EINVAL);   /* too much padding */
	assert_int_equal(bfs_base64_decode("Zg==Zm9v", 8, out), -EINVAL); /* data after padding */
	assert_int_equal(bfs_base64_decode("Zm=v", 4, out), -EINVAL);
}

static void test_parse_size(void **state)
{
	(void)state;
	uint64_t v;

	assert_int_equal(bfs_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(bfs_parse_size("64M", &v), 0);
	assert_int_equal(v, 64ULL << 20);
	assert_int_equal(bfs_parse_size("10G", &v), 0);
	assert_int_equal(v, 10ULL << 30);
	assert_int_equal(bfs_parse_size("1k", &v), 0);
	assert_int_equal(v, 1024);
	assert_int_equal(bfs_parse_size("2T", &v), 0);
	assert_int_equal(v, 2ULL << 40);
	assert_int_equal(bfs_parse_size("8MiB", &v), 0);
	assert_int_equal(v, 8ULL << 20);
	assert_int_equal(bfs_parse_size("0", &v), 0);
	assert_int_equal(v, 0);

	v = 77;
	assert_int_equal(bfs_parse_size("", &v), -EINVAL);
	assert_int_equal(bfs_parse_size("M", &v), -EINVAL);
	assert_int_equal(bfs_parse_size("-1", &v), -EINVAL);
	assert_int_equal(bfs_parse_size("12X", &v), -EINVAL);
	assert_int_equal(bfs_parse_size("12 M", &v), -EINVAL);
	assert_int_equal(bfs_parse_size("1.5G", &v), -EINVAL);
	assert_int_equal(bfs_parse_size("99999999999999999999", &v), -EINVAL);
	assert_int_equal(bfs_parse_size("20000000T", &v), -EINVAL); /* overflows 64 bits */
	assert_int_equal(bfs_parse_size(NULL, &v), -EINVAL);
	assert_int_equal(v, 77);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uri_encode),
		cmocka_unit_test(test_uri_decode),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_unhex),
		cmocka_unit_test(test_base64_vectors),
		cmocka_unit_test(test_base64_round_trip),
		cmocka_unit_test(test_base64_invalid),
		cmocka_unit_test(test_parse_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
