/* tests/unit/test_fs_stream_upload.c — fs/stream_upload.c: the part layout of streamed
 * uploads (sizes double every 1000 parts, the last 1000 are 5 GiB, 10,000 parts cover S3's
 * largest object from the 5M minimum). The streaming itself needs a server: tests/integration/
 * test_stream_upload.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fs/fs_int.h"

#define MiB (1ull << 20)

static void test_layout_is_contiguous(void **state)
{
	(void)state;
	uint64_t bases[] = { 5 * MiB, 8 * MiB, 64 * MiB, 5ull << 30 };
	for (size_t b = 0; b < 4; b++) {
		uint64_t base = bases[b], off = 0;
		for (size_t i = 0; i < 10000; i++) {
			assert_int_equal(bfs_stream_part_off(base, i), off);
			uint64_t len = bfs_stream_part_len(base, i);
			assert_true(len >= base && len <= (5ull << 30));
			off += len;
		}
	}
	assert_int_equal(bfs_stream_part_len(8 * MiB, 999), 8 * MiB);
	assert_int_equal(bfs_stream_part_len(8 * MiB, 1000), 16 * MiB);
	assert_int_equal(bfs_stream_part_len(8 * MiB, 8999), 2048 * MiB);
	assert_int_equal(bfs_stream_part_len(8 * MiB, 9000), 5ull << 30);
	assert_int_equal(bfs_stream_part_len(64 * MiB, 9999), 5ull << 30);
}

static void test_parts_for(void **state)
{
	(void)state;
	uint64_t base = 5 * MiB;
	assert_int_equal(bfs_stream_parts_for(base, 1), 1);
	assert_int_equal(bfs_stream_parts_for(base, base), 1);
	assert_int_equal(bfs_stream_parts_for(base, base + 1), 2);
	assert_int_equal(bfs_stream_parts_for(base, 40 * MiB + 12345), 9);
	for (size_t i = 1; i < 10000; i += 997) {
		uint64_t off = bfs_stream_part_off(base, i);
		assert_int_equal(bfs_stream_parts_for(base, off), i);
		assert_int_equal(bfs_stream_parts_for(base, off + 1), i + 1);
	}
	/* S3's largest object (5 TiB) fits from the 5M minimum; more does not */
	assert_true(bfs_stream_parts_for(base, 5ull << 40) <= 10000);
	uint64_t all = bfs_stream_part_off(base, 9999) + bfs_stream_part_len(base, 9999);
	assert_int_equal(bfs_stream_parts_for(base, all), 10000);
	assert_int_equal(bfs_stream_parts_for(base, all + 1), 10001);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout_is_contiguous),
		cmocka_unit_test(test_parts_for),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
