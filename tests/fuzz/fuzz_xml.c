/* tests/fuzz/fuzz_xml.c — the S3 XML response parsers of s3/xml.c.
 * Input: one selector byte, then the response body. Selector % 5 picks the parser: 0 error,
 * 1 find_text, 2 delete_result, 3 list (ListObjectsV2), 4 uploads (ListMultipartUploads);
 * for find_text, selector / 5 picks the (root, element) pair a caller in s3/ asks for and
 * the size of the output buffer. */
#include <errno.h>
#include <string.h>

#include "s3/internal.h"
#include "tests/fuzz/fuzz.h"

/* The fields are snprintf'd into fixed arrays: each must be a terminated string. */
static void check_error(const struct s3_xml_error *e)
{
	FUZZ_CHECK(strnlen(e->code, sizeof(e->code)) < sizeof(e->code));
	FUZZ_CHECK(strnlen(e->message, sizeof(e->message)) < sizeof(e->message));
	FUZZ_CHECK(strnlen(e->request_id, sizeof(e->request_id)) < sizeof(e->request_id));
	FUZZ_CHECK(strnlen(e->key, sizeof(e->key)) < sizeof(e->key));
}

static void fuzz_error(const char *body, size_t len)
{
	struct s3_xml_error e;
	int rc = s3_xml_parse_error(body, len, &e);

	FUZZ_CHECK(rc == 0 || rc == -ENOENT || rc == -EPROTO);
	if (rc == 0)
		check_error(&e);
}

static void fuzz_find_text(const char *body, size_t len, unsigned sel)
{
	/* what multipart.c and object.c look for */
	static const char *const pairs[][2] = {
		{ "InitiateMultipartUploadResult", "UploadId" },
		{ "CopyPartResult", "ETag" },
		{ NULL, "ETag" },
		{ "CopyObjectResult", "ETag" },
	};
	static const size_t sizes[] = { 1, 8, 80, 1024 };
	const char *const *p = pairs[sel & 3];
	size_t outlen = sizes[(sel >> 2) & 3];
	char out[1024 + 1];
	int rc;

	out[outlen] = 'X'; /* must survive: nothing is written past outlen */
	rc = s3_xml_find_text(body, len, p[0], p[1], out, outlen);
	FUZZ_CHECK(rc == 0 || rc == -ENOENT || rc == -EPROTO);
	FUZZ_CHECK(out[outlen] == 'X');
	if (rc == 0)
		FUZZ_CHECK(strnlen(out, outlen) < outlen);
}

static void fuzz_delete_result(const char *body, size_t len)
{
	struct s3_xml_error e;
	int rc = s3_xml_parse_delete_result(body, len, &e);

	FUZZ_CHECK(rc == 0 || rc == 1 || rc == -EPROTO);
	if (rc == 1)
		check_error(&e);
}

static void fuzz_list(const char *body, size_t len)
{
	struct s3_list_page p;
	int rc = s3_xml_parse_list(body, len, &p);

	FUZZ_CHECK(rc == 0 || rc == -EPROTO || rc == -ENOMEM);
	if (rc) {
		/* the page is left empty on failure: nothing for the caller to free */
		FUZZ_CHECK(!p.objects && !p.prefixes && !p.next_token && !p.nobjects &&
			   !p.nprefixes);
		return;
	}
	FUZZ_CHECK(p.objects && p.prefixes);
	for (size_t i = 0; i < p.nobjects; i++) {
		FUZZ_CHECK(p.objects[i].key != NULL);
		FUZZ_CHECK(strnlen(p.objects[i].etag, sizeof(p.objects[i].etag)) <
			   sizeof(p.objects[i].etag));
		FUZZ_CHECK(p.objects[i].last_modified.tv_nsec == 0);
		(void)strlen(p.objects[i].key); /* a terminated string (ASan checks the read) */
	}
	for (size_t i = 0; i < p.nprefixes; i++) {
		FUZZ_CHECK(p.prefixes[i] != NULL);
		(void)strlen(p.prefixes[i]);
	}
	if (p.next_token)
		FUZZ_CHECK(p.next_token[0] != '\0');
	s3_list_page_free(&p);
	FUZZ_CHECK(!p.objects && !p.nobjects);
}

static void fuzz_uploads(const char *body, size_t len)
{
	struct s3_upload_list l;
	int rc = s3_xml_parse_uploads(body, len, &l);

	FUZZ_CHECK(rc == 0 || rc == -EPROTO || rc == -ENOMEM);
	if (rc) {
		FUZZ_CHECK(!l.uploads && !l.n && !l.next_key_marker && !l.next_upload_id_marker);
		return;
	}
	FUZZ_CHECK(l.uploads != NULL);
	for (size_t i = 0; i < l.n; i++) {
		FUZZ_CHECK(l.uploads[i].key && l.uploads[i].upload_id);
		(void)strlen(l.uploads[i].key);
		(void)strlen(l.uploads[i].upload_id);
	}
	/* both markers or neither: the next page needs both */
	FUZZ_CHECK(!l.next_key_marker == !l.next_upload_id_marker);
	s3_upload_list_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned sel = data[0];
	size_t len = size - 1;
	/* an exact copy: the parsers are given a length, not a terminated string */
	char *body = malloc(len ? len : 1);

	if (!body)
		return 0;
	memcpy(body, data + 1, len);
	switch (sel % 5) {
	case 0: fuzz_error(body, len); break;
	case 1: fuzz_find_text(body, len, sel / 5); break;
	case 2: fuzz_delete_result(body, len); break;
	case 3: fuzz_list(body, len); break;
	case 4: fuzz_uploads(body, len); break;
	}
	free(body);
	return 0;
}
