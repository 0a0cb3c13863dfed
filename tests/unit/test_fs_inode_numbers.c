/* tests/unit/test_fs_inode_numbers.c — fs/inode.c: stored inode numbers, bound to their key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fs/fs_int.h"

static void test_stored_number_counts_at_its_key_only(void **state)
{
	(void)state;
	struct s3_meta m;
	s3_meta_init(&m);
	assert_int_equal(bfs_ino_store(&m, 0x123456789abcdefull, "dir/a"), 0);
	const char *v = s3_meta_get(&m, BFS_INO_META);
	assert_non_null(v);
	assert_int_equal(strlen(v), 33);
	assert_memory_equal(v, "0123456789abcdef-", 17);
	assert_int_equal(bfs_ino_stored(&m, "dir/a"), 0x123456789abcdefull);
	/* a copy at another key (another S3 tool copies the metadata along) */
	assert_int_equal(bfs_ino_stored(&m, "dir/b"), 0);
	assert_int_equal(bfs_ino_stored(&m, "dir/a/"), 0);
	assert_int_equal(bfs_ino_stored(NULL, "dir/a"), 0);
	s3_meta_free(&m);
}

static void test_malformed_values_are_no_number(void **state)
{
	(void)state;
	char kh[17];
	snprintf(kh, sizeof(kh), "%016llx", (unsigned long long)bfs_ino_of_key("k"));
	char buf[64];
	const char *bad[] = {
		"%s",                     /* no number */
		"0000000000000000-%s",    /* 0 and 1 are never inode numbers */
		"0000000000000001-%s",
		"8000000000000000-%s",    /* beyond 63 bits */
		"00000000000000AB-%s",    /* upper case */
		"000000000000000g-%s",
		"00000000000000ab+%s",
		"00000000000000ab-%s0",   /* too long */
		"0000000000000ab-%s",     /* too short */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct s3_meta m;
		s3_meta_init(&m);
		snprintf(buf, sizeof(buf), bad[i], kh);
		assert_int_equal(s3_meta_set(&m, BFS_INO_META, buf), 0);
		assert_int_equal(bfs_ino_stored(&m, "k"), 0);
		s3_meta_free(&m);
	}
	struct s3_meta m;
	s3_meta_init(&m);
	snprintf(buf, sizeof(buf), "00000000000000ab-%s", kh);
	assert_int_equal(s3_meta_set(&m, BFS_INO_META, buf), 0);
	assert_int_equal(bfs_ino_stored(&m, "k"), 0xab);
	s3_meta_free(&m);
}

static void test_assign_falls_back_to_the_keys_hash(void **state)
{
	(void)state;
	struct bfs_inode ino;
	memset(&ino, 0, sizeof(ino));
	struct s3_meta m;
	s3_meta_init(&m);
	bfs_ino_assign(&ino, &m, "f");
	assert_false(ino.ino_stored);
	assert_int_equal(ino.st.st_ino, bfs_ino_of_key("f"));
	assert_int_equal(bfs_ino_store(&m, 77, "f"), 0);
	bfs_ino_assign(&ino, &m, "f");
	assert_true(ino.ino_stored);
	assert_int_equal(ino.st.st_ino, 77);
	bfs_ino_assign(&ino, &m, "g");
	assert_false(ino.ino_stored);
	assert_int_equal(ino.st.st_ino, bfs_ino_of_key("g"));
	s3_meta_free(&m);
}

static void test_random_numbers(void **state)
{
	(void)state;
	ino_t seen[64];
	for (size_t i = 0; i < 64; i++) {
		seen[i] = bfs_ino_random();
		assert_true(seen[i] >= 2 && seen[i] <= 0x7fffffffffffffffull);
		for (size_t j = 0; j < i; j++)
			assert_true(seen[i] != seen[j]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stored_number_counts_at_its_key_only),
		cmocka_unit_test(test_malformed_values_are_no_number),
		cmocka_unit_test(test_assign_falls_back_to_the_keys_hash),
		cmocka_unit_test(test_random_numbers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
