/* tests/unit/test_fs_mime.c — fs/mime.c: the Content-Type of a new object from its name. */
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

static struct bfs_mime *parse(const char *text)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	assert_non_null(f);
	struct bfs_mime *m = NULL;
	assert_int_equal(bfs_mime_parse(f, &m), 0);
	fclose(f);
	assert_non_null(m);
	return m;
}

static void test_parse_and_lookup(void **state)
{
	(void)state;
	struct bfs_mime *m = parse("# a comment: text/x-no  no\n"
				   "\n"
				   "text/html\t\t\thtml htm shtml\n"
				   "text/css\t\t\t\tcss   # trailing comment\r\n"
				   "application/x-empty\n"
				   "notatype ext\n"
				   "image/svg+xml svg svgz\n"
				   "text/x-later html\n");
	assert_string_equal(bfs_mime_lookup(m, "index.html"), "text/html"); /* first line wins */
	assert_string_equal(bfs_mime_lookup(m, "a/b.c/page.HTM"), "text/html");
	assert_string_equal(bfs_mime_lookup(m, "site/x.css"), "text/css");
	assert_string_equal(bfs_mime_lookup(m, "logo.svgz"), "image/svg+xml");
	assert_string_equal(bfs_mime_lookup(m, "a.no"), "application/octet-stream");
	assert_string_equal(bfs_mime_lookup(m, "a.ext"), "application/octet-stream");
	assert_string_equal(bfs_mime_lookup(m, "README"), "application/octet-stream");
	assert_string_equal(bfs_mime_lookup(m, ".css"), "application/octet-stream");
	assert_string_equal(bfs_mime_lookup(m, "dir.css/file"), "application/octet-stream");
	assert_string_equal(bfs_mime_lookup(m, "trailing."), "application/octet-stream");
	bfs_mime_free(m);
	/* no table: everything is the default */
	assert_string_equal(bfs_mime_lookup(NULL, "x.html"), "application/octet-stream");
}

static void test_empty_file(void **state)
{
	(void)state;
	struct bfs_mime *m = parse("");
	assert_string_equal(bfs_mime_lookup(m, "x.html"), "application/octet-stream");
	bfs_mime_free(m);
}

/* The system table (tools/install-deps.sh installs media-types, which provides it). */
static void test_system_table(void **state)
{
	(void)state;
	FILE *f = fopen(BFS_MIME_TYPES, "r");
	if (!f) {
		printf("skipped: no %s (Debian package media-types)\n", BFS_MIME_TYPES);
		skip();
	}
	fclose(f);
	assert_string_equal(bfs_mime_type("www/index.html"), "text/html");
	assert_string_equal(bfs_mime_type("www/x.css"), "text/css");
	assert_string_equal(bfs_mime_type("www/noext"), "application/octet-stream");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_and_lookup),
		cmocka_unit_test(test_empty_file),
		cmocka_unit_test(test_system_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
