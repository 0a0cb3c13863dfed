/* tests/unit/test_util_log.c — bfs_log filtering and one-line output; clocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/util.h"

/* Runs the logging calls with stderr sent to a temporary file; returns what was written. */
static void capture(void (*fn)(void), char *out, size_t outlen)
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);

	assert_non_null(tmp);
	fflush(stderr);
	dup2(fileno(tmp), STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	size_t n = fread(out, 1, outlen - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
}

static void log_some(void)
{
	bfs_log_setup(0, BFS_LOG_WARN);
	bfs_log(BFS_LOG_ERR, "error %d", 1);
	bfs_log(BFS_LOG_WARN, "warn %s", "key\nwith newline");
	bfs_log(BFS_LOG_INFO, "info dropped");
	bfs_log(BFS_LOG_DEBUG, "debug dropped");
}

static void test_log_levels_and_lines(void **state)
{
	(void)state;
	char out[1024];

	capture(log_some, out, sizeof(out));
	assert_non_null(strstr(out, "error 1\n"));
	assert_non_null(strstr(out, "warn key with newline\n"));
	assert_null(strstr(out, "dropped"));
	/* Exactly two lines. */
	int lines = 0;
	for (char *p = out; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 2);
}

static void test_clocks(void **state)
{
	(void)state;
	int64_t a = bfs_mono_ns(), b = bfs_mono_ns();
	assert_true(b >= a);
	/* After 2020-01-01 and before 2100. */
	assert_true(bfs_now_ns() > 1577836800LL * 1000000000LL);
	assert_true(bfs_now_ns() < 4102444800LL * 1000000000LL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_levels_and_lines),
		cmocka_unit_test(test_clocks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
