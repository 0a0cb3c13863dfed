/* tests/unit/test_cache_blocks.c — CRC32C and block files (cache/blocks.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cache/cache_int.h"
#include "tests/unit/cache_test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int setup(void **state)
{
	char tmpl[64];
	struct cache_config cfg = { .block_size = 4096, .size_cap = 1 << 20 };
	struct cache *c;

	cache_test_mkdtemp(tmpl, sizeof(tmpl), "test_cache_blocks");
	cfg.dir = tmpl;
	assert_int_equal(cache_open(&cfg, &c), 0);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct cache *c = *state;
	char *dir = strdup(c->dir);

	cache_close(c);
	cache_test_rmtree(dir);
	free(dir);
	return 0;
}

static void test_crc32c_vectors(void **state)
{
	unsigned char zeros[32] = { 0 }, ones[32], inc[32];
	(void)state;

	memset(ones, 0xff, sizeof(ones));
	for (int i = 0; i < 32; i++)
		inc[i] = (unsigned char)i;
	/* RFC 3720 B.4 test vectors and the usual check value */
	assert_int_equal(cache_crc32c(0, "123456789", 9), 0xE3069283);
	assert_int_equal(cache_crc32c(0, zeros, 32), 0x8A9136AA);
	assert_int_equal(cache_crc32c(0, ones, 32), 0x62A8AB43);
	assert_int_equal(cache_crc32c(0, inc, 32), 0x46DD794E);
	assert_int_equal(cache_crc32c(0, "", 0), 0);
}

/* The hardware and the portable versions agree on every length and alignment. */
static void test_crc32c_sw_equals_hw(void **state)
{
	unsigned char buf[4096 + 16];
	(void)state;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 131 + (i >> 7));
	for (size_t off = 0; off < 9; off++)
		for (size_t n = 0; n < 300; n += 7)
			assert_int_equal(cache_crc32c(0x1234567u * (uint32_t)off, buf + off, n),
					 cache_crc32c_sw(0x1234567u * (uint32_t)off, buf + off, n));
	assert_int_equal(cache_crc32c(0, buf, 4096), cache_crc32c_sw(0, buf, 4096));
	assert_int_equal(cache_crc32c_sw(0, "123456789", 9), 0xE3069283);
}

static void test_crc32c_incremental(void **state)
{
	unsigned char buf[1000];
	(void)state;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	uint32_t whole = cache_crc32c(0, buf, sizeof(buf));
	for (size_t split = 0; split <= sizeof(buf); split += 37)
		assert_int_equal(cache_crc32c(cache_crc32c(0, buf, split), buf + split,
					      sizeof(buf) - split), whole);
	buf[500] ^= 1;
	assert_int_not_equal(cache_crc32c(0, buf, sizeof(buf)), whole);
}

static void test_write_read_verify(void **state)
{
	struct cache *c = *state;
	char data[3000], got[3000], path[4096];
	uint32_t crc;
	int fd;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 13);
	crc = cache_crc32c(0, data, sizeof(data));
	assert_int_equal(cache_blk_write(c, 0x1234, data, sizeof(data)), 0);
	cache_blk_path(c, 0x1234, path, sizeof(path));
	assert_non_null(strstr(path, "/blocks/34/0000000000001234"));
	assert_int_equal(cache_blk_read(c, 0x1234, got, sizeof(got), crc), 0);
	assert_memory_equal(got, data, sizeof(data));
	/* wrong crc, wrong expected length */
	assert_int_equal(cache_blk_read(c, 0x1234, got, sizeof(got), crc ^ 1), -EBADMSG);
	assert_int_equal(cache_blk_read(c, 0x1234, got, sizeof(got) - 1, crc), -EBADMSG);
	/* flip one byte on disk */
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "\x55", 1, 1000), 1);
	close(fd);
	assert_int_equal(cache_blk_read(c, 0x1234, got, sizeof(got), crc), -EBADMSG);
	/* truncated */
	assert_int_equal(truncate(path, 100), 0);
	assert_int_equal(cache_blk_read(c, 0x1234, got, sizeof(got), crc), -EBADMSG);
	cache_blk_unlink(c, 0x1234);
	assert_int_equal(cache_blk_read(c, 0x1234, got, sizeof(got), crc), -ENOENT);
}

static void test_sweep(void **state)
{
	struct cache *c = *state;
	char path[4096], tmp[4200];
	uint64_t live[] = { 5, 300 };
	FILE *f;

	assert_int_equal(cache_blk_write(c, 5, "a", 1), 0);
	assert_int_equal(cache_blk_write(c, 6, "b", 1), 0);
	assert_int_equal(cache_blk_write(c, 300, "c", 1), 0);
	cache_blk_path(c, 7, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(cache_blk_sweep(c, live, 2), 0);
	cache_blk_path(c, 5, path, sizeof(path));
	assert_int_equal(access(path, F_OK), 0);
	cache_blk_path(c, 300, path, sizeof(path));
	assert_int_equal(access(path, F_OK), 0);
	cache_blk_path(c, 6, path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(access(tmp, F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_vectors),
		cmocka_unit_test(test_crc32c_sw_equals_hw),
		cmocka_unit_test(test_crc32c_incremental),
		cmocka_unit_test_setup_teardown(test_write_read_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
