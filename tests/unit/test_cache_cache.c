/* tests/unit/test_cache_cache.c — opening and closing (cache/cache.c): the process lock,
 * the default size cap, block size changes, stats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cache/cache_int.h"
#include "tests/unit/cache_test_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

static int setup(void **state)
{
	(void)state;
	cache_test_mkdtemp(dir, sizeof(dir), "test_cache_cache");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	cache_test_rmtree(dir);
	return 0;
}

static ssize_t fetch(void *arg, uint64_t off, size_t len, void *buf)
{
	(*(int *)arg)++;
	memset(buf, (int)(off / 4096), len);
	return (ssize_t)len;
}

static void test_second_open_is_busy(void **state)
{
	struct cache_config cfg = { .dir = dir, .size_cap = 1 << 20 };
	struct cache *a, *b = (void *)0x1;
	int status;
	pid_t pid;

	(void)state;
	assert_int_equal(cache_open(&cfg, &a), 0);
	/* same process */
	assert_int_equal(cache_open(&cfg, &b), -EBUSY);
	assert_null(b);
	/* another process */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct cache *c;
		_exit(cache_open(&cfg, &c) == -EBUSY ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* free again once closed */
	cache_close(a);
	assert_int_equal(cache_open(&cfg, &b), 0);
	cache_close(b);
}

static void test_creates_nested_dir_and_default_cap(void **state)
{
	char sub[128];
	struct cache_config cfg = { .dir = sub };
	struct statvfs vfs;
	struct cache *c;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/x/y/z", dir);
	assert_int_equal(cache_open(&cfg, &c), 0);
	assert_int_equal(statvfs(sub, &vfs), 0);
	assert_int_equal(c->size_cap, (uint64_t)vfs.f_blocks * vfs.f_frsize / 10);
	assert_int_equal(c->block_size, 1 << 20);
	cache_close(c);
	cfg.block_size = 1ull << 40;
	assert_int_equal(cache_open(&cfg, &c), -EINVAL);
	cfg.dir = NULL;
	assert_int_equal(cache_open(&cfg, &c), -EINVAL);
}

/* Block numbers mean other offsets under another block size: the blocks must go. */
static void test_block_size_change_drops_blocks(void **state)
{
	struct cache_config cfg = { .dir = dir, .block_size = 4096, .size_cap = 1 << 20 };
	struct cache_stats st;
	struct cache *c;
	char buf[8192];
	int calls = 0;

	(void)state;
	assert_int_equal(cache_open(&cfg, &c), 0);
	assert_int_equal(cache_read(c, "k", "e", 8192, 0, 8192, buf, fetch, &calls), 8192);
	assert_int_equal(buf[4096], 1);
	cache_close(c);
	cfg.block_size = 8192;
	assert_int_equal(cache_open(&cfg, &c), 0);
	cache_stats_get(c, &st);
	assert_int_equal(st.blocks, 0);
	assert_int_equal(st.bytes, 0);
	assert_int_equal(cache_read(c, "k", "e", 8192, 0, 8192, buf, fetch, &calls), 8192);
	assert_int_equal(calls, 3);
	cache_close(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_second_open_is_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_creates_nested_dir_and_default_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_size_change_drops_blocks, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
