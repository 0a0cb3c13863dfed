/* tests/unit/test_fs_record.c — fs/record.c: journal records carry an object's standard
 * headers (S3_HDR_*) with its metadata, and records written before them still decode. */
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

static void test_headers_roundtrip(void **state)
{
	(void)state;
	struct s3_meta m, out;
	s3_meta_init(&m);
	assert_int_equal(s3_meta_set(&m, "mode", "33188"), 0);
	assert_int_equal(s3_meta_set(&m, S3_HDR_CONTENT_TYPE, "text/html; charset=utf-8"), 0);
	assert_int_equal(s3_meta_set(&m, S3_HDR_CONTENT_ENCODING, "gzip"), 0);
	assert_int_equal(s3_meta_set(&m, S3_HDR_CACHE_CONTROL, "max-age=60, public"), 0);
	assert_int_equal(s3_meta_set(&m, S3_HDR_CONTENT_DISPOSITION,
				     "attachment; filename=\"a b%.txt\""), 0);
	struct bfs_field f[] = { { "k", "dir/index.html" }, { "a", NULL } };
	char *rec = bfs_record_encode("bfs1", f, 2, &m);
	assert_non_null(rec);
	/* one line each, no raw tabs or newlines from the values */
	assert_non_null(strstr(rec, "\nm\t%3Acontent-type\ttext/html%3B%20charset%3Dutf-8\n"));

	struct bfs_field d[] = { { "k", NULL }, { "a", NULL } };
	assert_int_equal(bfs_record_decode(rec, strlen(rec), "bfs1", d, 2, &out), 0);
	assert_string_equal(d[0].value, "dir/index.html");
	assert_null(d[1].value);
	assert_int_equal(out.n, 5);
	assert_string_equal(s3_meta_get(&out, S3_HDR_CONTENT_TYPE), "text/html; charset=utf-8");
	assert_string_equal(s3_meta_get(&out, S3_HDR_CONTENT_ENCODING), "gzip");
	assert_string_equal(s3_meta_get(&out, S3_HDR_CACHE_CONTROL), "max-age=60, public");
	assert_string_equal(s3_meta_get(&out, S3_HDR_CONTENT_DISPOSITION),
			    "attachment; filename=\"a b%.txt\"");
	assert_string_equal(s3_meta_get(&out, "mode"), "33188");
	bfs_record_fields_free(d, 2);
	s3_meta_free(&out);
	s3_meta_free(&m);
	free(rec);
}

/* A journal record as bucketfs wrote it before the headers were kept: no ':' entries, and
 * the upload then sends the type guessed from the name (fs/upload.c). */
static void test_old_record_decodes(void **state)
{
	(void)state;
	static const char old[] = "bfs1\nk\tdocs/a%20b.txt\nt\t1764600000000000000\n"
				  "m\tmode\t33188\nm\tuid\t1000\nm\tmtime\t1764600000\n";
	struct bfs_field d[] = { { "k", NULL }, { "r", NULL }, { "t", NULL }, { "a", NULL } };
	struct s3_meta out;
	assert_int_equal(bfs_record_decode(old, strlen(old), "bfs1", d, 4, &out), 0);
	assert_string_equal(d[0].value, "docs/a b.txt");
	assert_null(d[1].value);
	assert_string_equal(d[2].value, "1764600000000000000");
	assert_int_equal(out.n, 3);
	assert_null(s3_meta_get(&out, S3_HDR_CONTENT_TYPE));
	assert_string_equal(s3_meta_get(&out, "uid"), "1000");
	bfs_record_fields_free(d, 4);
	s3_meta_free(&out);

	/* another magic is refused */
	assert_int_equal(bfs_record_decode(old, strlen(old), "bfsm1", d, 4, &out), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headers_roundtrip),
		cmocka_unit_test(test_old_record_decodes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
