/* tests/unit/test_s3_xml.c — parsing of S3 XML responses (s3/xml.c), including hostile input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "s3/internal.h"

#define S(str) (str), strlen(str)

static const char list_xml[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	"<Name>test</Name><Prefix>dir%2F</Prefix><KeyCount>3</KeyCount><MaxKeys>3</MaxKeys>"
	"<Delimiter>%2F</Delimiter><EncodingType>url</EncodingType>"
	"<IsTruncated>true</IsTruncated>"
	"<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
	"<Contents><Key>dir%2Fa+b%2Bc%25d%26e%3D%3F%23</Key>"
	"<LastModified>2013-09-17T18:07:53.000Z</LastModified>"
	"<ETag>&quot;599bab3ed2c697f1d26842727561fd94&quot;</ETag><Size>857</Size>"
	"<StorageClass>STANDARD</StorageClass></Contents>"
	"<Contents><Key>dir%2F%C3%BCn%C3%AF</Key><LastModified>2020-01-02T03:04:05Z</LastModified>"
	"<ETag>\"9b2cf535f27731c974343645a3985328-3\"</ETag><Size>30000000000</Size></Contents>"
	"<CommonPrefixes><Prefix>dir%2Fsub%2F</Prefix></CommonPrefixes>"
	"<CommonPrefixes><Prefix>dir%2Fsub+2%2F</Prefix></CommonPrefixes>"
	"</ListBucketResult>";

static void test_list_url_encoded(void **state)
{
	(void)state;
	struct s3_list_page p;

	assert_int_equal(s3_xml_parse_list(S(list_xml), &p), 0);
	assert_int_equal(p.nobjects, 2);
	assert_string_equal(p.objects[0].key, "dir/a b+c%d&e=?#");
	assert_int_equal(p.objects[0].size, 857);
	assert_string_equal(p.objects[0].etag, "599bab3ed2c697f1d26842727561fd94");
	assert_int_equal(p.objects[0].last_modified.tv_sec, 1379441273);
	assert_string_equal(p.objects[1].key, "dir/\xc3\xbcn\xc3\xaf");
	assert_int_equal(p.objects[1].size, 30000000000ULL);
	assert_string_equal(p.objects[1].etag, "9b2cf535f27731c974343645a3985328-3");
	assert_int_equal(p.objects[1].last_modified.tv_sec, 1577934245);
	assert_int_equal(p.nprefixes, 2);
	assert_string_equal(p.prefixes[0], "dir/sub/");
	assert_string_equal(p.prefixes[1], "dir/sub 2/");
	assert_non_null(p.next_token);
	/* The token is opaque: never decoded ('+' and '/' kept). */
	assert_string_equal(p.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
	s3_list_page_free(&p);
	assert_null(p.objects);
}

static void test_list_plain_last_page(void **state)
{
	(void)state;
	/* Without EncodingType the keys are taken as they are ('+' and '%' literal). */
	const char *xml = "<ListBucketResult><IsTruncated>false</IsTruncated>"
			  "<Contents><Key>a+b%20c &amp; d</Key><Size>0</Size><ETag>\"x\"</ETag>"
			  "</Contents></ListBucketResult>";
	struct s3_list_page p;

	assert_int_equal(s3_xml_parse_list(S(xml), &p), 0);
	assert_int_equal(p.nobjects, 1);
	assert_string_equal(p.objects[0].key, "a+b%20c & d");
	assert_int_equal(p.nprefixes, 0);
	assert_null(p.next_token);
	s3_list_page_free(&p);
}

static void test_list_empty_and_bad(void **state)
{
	(void)state;
	struct s3_list_page p;

	assert_int_equal(s3_xml_parse_list(S("<ListBucketResult><KeyCount>0</KeyCount>"
					     "<IsTruncated>false</IsTruncated></ListBucketResult>"),
					   &p),
			 0);
	assert_int_equal(p.nobjects + p.nprefixes, 0);
	s3_list_page_free(&p);
	/* Truncated without a token: unusable. */
	assert_int_equal(s3_xml_parse_list(S("<ListBucketResult><IsTruncated>true</IsTruncated>"
					     "</ListBucketResult>"),
					   &p),
			 -EPROTO);
	assert_int_equal(s3_xml_parse_list(S("<Error><Code>NoSuchBucket</Code></Error>"), &p),
			 -EPROTO);
	assert_int_equal(s3_xml_parse_list(S("not xml at all"), &p), -EPROTO);
	assert_int_equal(s3_xml_parse_list(S("<ListBucketResult><Contents>"), &p), -EPROTO);
	assert_int_equal(s3_xml_parse_list("", 0, &p), -EPROTO);
}

static void test_error_body(void **state)
{
	(void)state;
	const char *xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>"
			  "<Message>The resource you requested does not exist</Message>"
			  "<Key>a/b c</Key><RequestId>4442587FB7D0A2F9</RequestId>"
			  "<HostId>xyz</HostId></Error>";
	struct s3_xml_error e;

	assert_int_equal(s3_xml_parse_error(S(xml), &e), 0);
	assert_string_equal(e.code, "NoSuchKey");
	assert_string_equal(e.message, "The resource you requested does not exist");
	assert_string_equal(e.request_id, "4442587FB7D0A2F9");
	assert_string_equal(e.key, "a/b c");
	assert_int_equal(s3_xml_parse_error(S("<CopyObjectResult/>"), &e), -ENOENT);
	assert_int_equal(s3_xml_parse_error(S("<html>502 Bad Gateway"), &e), -EPROTO);
	assert_int_equal(s3_xml_parse_error(NULL, 0, &e), -EPROTO);
}

static void test_complete_and_copy_results(void **state)
{
	(void)state;
	/* S3 may send whitespace before the document while it works. */
	const char *ok = "   \n  <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			 "<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
			 "<Location>http://b.s3.amazonaws.com/k</Location><Bucket>b</Bucket><Key>k</Key>"
			 "<ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag>"
			 "</CompleteMultipartUploadResult>";
	const char *failed = "  <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError"
			     "</Code><Message>We encountered an internal error.</Message>"
			     "<RequestId>656c76696e6727732072657175657374</RequestId></Error>";
	const char *copy = "<CopyObjectResult><LastModified>2009-10-28T22:32:00Z</LastModified>"
			   "<ETag>\"9b2cf535f27731c974343645a3985328\"</ETag></CopyObjectResult>";
	char tag[80];
	struct s3_xml_error e;

	assert_int_equal(s3_xml_find_text(S(ok), "CompleteMultipartUploadResult", "ETag", tag,
					  sizeof(tag)),
			 0);
	assert_string_equal(tag, "\"3858f62230ac3c915f300c664312c11f-9\"");
	assert_int_equal(s3_xml_find_text(S(ok), NULL, "ETag", tag, sizeof(tag)), 0);
	assert_int_equal(s3_xml_parse_error(S(ok), &e), -ENOENT);

	/* 200 with an <Error> body: an error, and never mistaken for a result. */
	assert_int_equal(s3_xml_parse_error(S(failed), &e), 0);
	assert_string_equal(e.code, "InternalError");
	assert_int_equal(s3_xml_find_text(S(failed), NULL, "ETag", tag, sizeof(tag)), -ENOENT);

	assert_int_equal(s3_xml_find_text(S(copy), "CopyObjectResult", "ETag", tag, sizeof(tag)),
			 0);
	assert_string_equal(tag, "\"9b2cf535f27731c974343645a3985328\"");
	assert_int_equal(s3_xml_find_text(S(copy), "CopyPartResult", "ETag", tag, sizeof(tag)),
			 -ENOENT);

	assert_int_equal(s3_xml_find_text(S("<InitiateMultipartUploadResult><Bucket>b</Bucket>"
					    "<Key>k</Key><UploadId>VXBsb2FkIElE</UploadId>"
					    "</InitiateMultipartUploadResult>"),
					  "InitiateMultipartUploadResult", "UploadId", tag,
					  sizeof(tag)),
			 0);
	assert_string_equal(tag, "VXBsb2FkIElE");
}

static void test_delete_result(void **state)
{
	(void)state;
	struct s3_xml_error e;

	assert_int_equal(s3_xml_parse_delete_result(S("<DeleteResult/>"), &e), 0);
	/* NoSuchKey is not a failure of a delete. */
	assert_int_equal(s3_xml_parse_delete_result(
				 S("<DeleteResult><Error><Key>a</Key><Code>NoSuchKey</Code></Error>"
				   "</DeleteResult>"),
				 &e),
			 0);
	assert_int_equal(s3_xml_parse_delete_result(
				 S("<DeleteResult><Error><Key>a</Key><Code>NoSuchKey</Code></Error>"
				   "<Error><Key>b c</Key><Code>AccessDenied</Code>"
				   "<Message>Access Denied</Message></Error></DeleteResult>"),
				 &e),
			 1);
	assert_string_equal(e.key, "b c");
	assert_string_equal(e.code, "AccessDenied");
}

static void test_uploads(void **state)
{
	(void)state;
	const char *xml =
		"<ListMultipartUploadsResult><Bucket>b</Bucket><EncodingType>url</EncodingType>"
		"<NextKeyMarker>my%2Bkey</NextKeyMarker><NextUploadIdMarker>U2</NextUploadIdMarker>"
		"<IsTruncated>true</IsTruncated>"
		"<Upload><Key>a%20b</Key><UploadId>U1</UploadId>"
		"<Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>"
		"<Upload><Key>my%2Bkey</Key><UploadId>U2</UploadId></Upload>"
		"</ListMultipartUploadsResult>";
	struct s3_upload_list l;

	assert_int_equal(s3_xml_parse_uploads(S(xml), &l), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.uploads[0].key, "a b");
	assert_string_equal(l.uploads[0].upload_id, "U1");
	assert_int_equal(l.uploads[0].initiated.tv_sec, 1289422113);
	assert_string_equal(l.uploads[1].key, "my+key");
	assert_string_equal(l.next_key_marker, "my+key");
	assert_string_equal(l.next_upload_id_marker, "U2");
	s3_upload_list_free(&l);
}

/* A DOCTYPE with entities (external file, or exponential "billion laughs") must neither be
 * fetched nor expanded: the document is rejected. */
static void test_xxe_rejected(void **state)
{
	(void)state;
	const char *xxe = "<?xml version=\"1.0\"?>\n"
			  "<!DOCTYPE Error [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n"
			  "<Error><Code>&xxe;</Code><Message>&xxe;</Message></Error>";
	const char *net = "<?xml version=\"1.0\"?>\n"
			  "<!DOCTYPE ListBucketResult SYSTEM \"http://127.0.0.1:9/evil.dtd\">\n"
			  "<ListBucketResult><IsTruncated>false</IsTruncated>"
			  "<Contents><Key>k</Key></Contents></ListBucketResult>";
	const char *laughs = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n"
			     "<!ENTITY lol \"lol\">\n"
			     "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
			     "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
			     "<!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
			     "]>\n<Error><Code>&lol4;</Code></Error>";
	struct s3_xml_error e;
	struct s3_list_page p;
	char tag[80];

	memset(&e, 0, sizeof(e));
	assert_int_not_equal(s3_xml_parse_error(S(xxe), &e), 0);
	assert_null(strstr(e.code, "root:"));
	assert_null(strstr(e.message, "root:"));
	assert_int_equal(s3_xml_parse_list(S(net), &p), -EPROTO);
	assert_int_not_equal(s3_xml_parse_error(S(laughs), &e), 0);
	assert_null(strstr(e.code, "lol"));
	assert_int_equal(s3_xml_find_text(S(xxe), "Error", "Code", tag, sizeof(tag)), -EPROTO);
}

/* Even without a DOCTYPE, an undeclared entity reference must not yield text. */
static void test_undeclared_entity(void **state)
{
	(void)state;
	struct s3_xml_error e;

	memset(&e, 0, sizeof(e));
	assert_int_not_equal(s3_xml_parse_error(S("<Error><Code>&xxe;</Code></Error>"), &e), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_url_encoded),
		cmocka_unit_test(test_list_plain_last_page),
		cmocka_unit_test(test_list_empty_and_bad),
		cmocka_unit_test(test_error_body),
		cmocka_unit_test(test_complete_and_copy_results),
		cmocka_unit_test(test_delete_result),
		cmocka_unit_test(test_uploads),
		cmocka_unit_test(test_xxe_rejected),
		cmocka_unit_test(test_undeclared_entity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
