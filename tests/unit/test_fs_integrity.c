/* tests/unit/test_fs_integrity.c — fs/integrity.c: HMAC (RFC 4231 vectors), the signed
 * string, digest roots, sign/verify, key files, block verification. No network: objects of
 * at most one block never reach S3. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "fs/fs_int.h"
#include "util/util.h"

static void unhex(const char *h, unsigned char *out, size_t *n)
{
	size_t l = strlen(h) / 2;
	for (size_t i = 0; i < l; i++) {
		unsigned v;
		sscanf(h + 2 * i, "%2x", &v);
		out[i] = (unsigned char)v;
	}
	*n = l;
}

static void hmac_case(const char *key_hex, const char *msg_hex, const char *want, size_t cmp)
{
	unsigned char key[256], msg[256], mac[32];
	size_t kl, ml;
	char hex[65];
	unhex(key_hex, key, &kl);
	unhex(msg_hex, msg, &ml);
	bfs_hmac_sha256(key, kl, msg, ml, mac);
	bfs_hex(mac, 32, hex);
	assert_memory_equal(hex, want, cmp);
}

/* RFC 4231 section 4: test cases 1-7 (case 5 is truncated to 128 bits). */
static void test_hmac_rfc4231(void **state)
{
	(void)state;
	hmac_case("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
		  "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", 64);
	hmac_case("4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
		  "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", 64);
	hmac_case("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
		  "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", 64);
	hmac_case("0102030405060708090a0b0c0d0e0f10111213141516171819",
		  "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
		  "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", 64);
	hmac_case("0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c",
		  "546573742057697468205472756e636174696f6e",
		  "a3b6167473100ee06e0c796c2955552b", 32);
	char key[131 * 2 + 1];
	for (int i = 0; i < 131; i++)
		memcpy(key + 2 * i, "aa", 2);
	key[262] = '\0';
	hmac_case(key,
		  "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048617368204b6579204669727374",
		  "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", 64);
	hmac_case(key,
		  "5468697320697320612074657374207573696e672061206c6172676572207468616e20626c6f636b2d73697a65206b657920616e642061206c6172676572207468616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565647320746f20626520686173686564206265666f7265206265696e6720757365642062792074686520484d414320616c676f726974686d2e",
		  "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2", 64);
}

static void test_root_known_answers(void **state)
{
	(void)state;
	unsigned char root[32], d[32];
	char hex[65];
	bfs_integrity_root(1 << 20, NULL, 0, root);
	bfs_hex(root, 32, hex);
	/* python3: sha256(b"bfs-blocks-v1\n1048576\n") */
	assert_string_equal(hex, "328f7b8ac7f58ec869154c0ccad36ba6419f9ee81bb897385054ec98bfa23a40");
	EVP_Digest("hello", 5, d, NULL, EVP_sha256(), NULL);
	bfs_integrity_root(1 << 20, d, 1, root);
	bfs_hex(root, 32, hex);
	/* python3: sha256(b"bfs-blocks-v1\n1048576\n" + sha256(b"hello").digest()) */
	assert_string_equal(hex, "ca3ff1f58ab1f634306033b22ae7755138660710594f698b0f8dce87377a87c4");
}

static void test_canonical(void **state)
{
	(void)state;
	struct s3_meta m;
	s3_meta_init(&m);
	s3_meta_set(&m, "mode", "33188");
	s3_meta_set(&m, "uid", "1000");
	s3_meta_set(&m, "mtime", "1609459200.123456789");
	s3_meta_set(&m, "bfs-digest", "sha256:1048576:ab");
	s3_meta_set(&m, "xattr", "ignored");
	char *c = bfs_integrity_canonical("p/a\nb", &m, 42);
	assert_non_null(c);
	assert_string_equal(c, "v=10:bfs-sig-v1\nkey=5:p/a\nb\nmode=5:33188\nuid=4:1000\n"
			       "gid=0:\nsize=2:42\nmtime=20:1609459200.123456789\n"
			       "digest=17:sha256:1048576:ab\n");
	free(c);
	s3_meta_free(&m);
}

static void opts_with_key(struct bfs_options *o, enum bfs_hmac_mode mode)
{
	memset(o, 0, sizeof(*o));
	o->hmac_mode = mode;
	o->hmac_keys = calloc(2, sizeof(*o->hmac_keys));
	o->nhmac_keys = 2;
	memcpy(o->hmac_keys[0].key, "0123456789abcdef", 16);
	o->hmac_keys[0].len = 16;
	snprintf(o->hmac_keys[0].id, 9, "9f9f5111");
	memcpy(o->hmac_keys[1].key, "an older key, still accepted", 28);
	o->hmac_keys[1].len = 28;
	snprintf(o->hmac_keys[1].id, 9, "00000001");
}

static void sealed(struct bfs_options *o, struct s3_meta *m, const char *body)
{
	s3_meta_init(m);
	s3_meta_set(m, "mode", "33188");
	s3_meta_set(m, "uid", "1000");
	s3_meta_set(m, "gid", "100");
	s3_meta_set(m, "mtime", "1700000000");
	s3_meta_set(m, "bfs-sig", "stale");
	assert_int_equal(bfs_integrity_seal_buf(NULL, o, "dir/f", body, strlen(body), m), 0);
}

static void test_sign_and_tamper(void **state)
{
	(void)state;
	struct bfs_options o;
	opts_with_key(&o, BFS_HMAC_VERIFY);
	struct s3_meta m;
	sealed(&o, &m, "hello");
	assert_string_equal(s3_meta_get(&m, "bfs-keyid"), "9f9f5111");
	assert_int_equal(strlen(s3_meta_get(&m, "bfs-sig")), 64);
	assert_string_equal(s3_meta_get(&m, "bfs-digest"),
			    "sha256:1048576:ca3ff1f58ab1f634306033b22ae7755138660710594f698b0f8dce87377a87c4");
	assert_int_equal(bfs_integrity_sig_status(&o, "dir/f", 5, &m), BFS_SIG_OK);
	assert_int_equal(bfs_integrity_policy(&o, "dir/f", 5, &m), 0);
	/* every signed field matters */
	assert_int_equal(bfs_integrity_sig_status(&o, "dir/g", 5, &m), BFS_SIG_BAD);
	assert_int_equal(bfs_integrity_sig_status(&o, "dir/f", 6, &m), BFS_SIG_BAD);
	const char *fields[][2] = { { "mode", "35309" }, { "uid", "0" }, { "gid", "0" },
				    { "mtime", "1" }, { "bfs-digest", "sha256:1048576:00" } };
	for (size_t i = 0; i < 5; i++) {
		struct s3_meta t;
		s3_meta_copy(&t, &m);
		s3_meta_set(&t, fields[i][0], fields[i][1]);
		assert_int_equal(bfs_integrity_sig_status(&o, "dir/f", 5, &t), BFS_SIG_BAD);
		assert_int_equal(bfs_integrity_policy(&o, "dir/f", 5, &t), -EACCES);
		s3_meta_free(&t);
	}
	/* unsigned: verify serves, require refuses; unknown key refused by both */
	struct s3_meta t;
	s3_meta_copy(&t, &m);
	s3_meta_del(&t, "bfs-sig");
	assert_int_equal(bfs_integrity_sig_status(&o, "dir/f", 5, &t), BFS_SIG_NONE);
	assert_int_equal(bfs_integrity_policy(&o, "dir/f", 5, &t), 0);
	o.hmac_mode = BFS_HMAC_REQUIRE;
	assert_int_equal(bfs_integrity_policy(&o, "dir/f", 5, &t), -EACCES);
	s3_meta_free(&t);
	s3_meta_copy(&t, &m);
	s3_meta_set(&t, "bfs-keyid", "deadbeef");
	assert_int_equal(bfs_integrity_sig_status(&o, "dir/f", 5, &t), BFS_SIG_UNKNOWN_KEY);
	o.hmac_mode = BFS_HMAC_VERIFY;
	assert_int_equal(bfs_integrity_policy(&o, "dir/f", 5, &t), -EACCES);
	s3_meta_free(&t);
	/* off and sign do not check */
	o.hmac_mode = BFS_HMAC_SIGN;
	assert_int_equal(bfs_integrity_policy(&o, "dir/g", 5, &m), 0);
	s3_meta_free(&m);
	free(o.hmac_keys);
}

static void test_resign_and_rotation(void **state)
{
	(void)state;
	struct bfs_options o;
	opts_with_key(&o, BFS_HMAC_VERIFY);
	/* signed with the old key (second line): verifies, and chmod re-signs with the first */
	struct bfs_hmac_key k0 = o.hmac_keys[0];
	o.hmac_keys[0] = o.hmac_keys[1];
	struct s3_meta old;
	sealed(&o, &old, "x");
	o.hmac_keys[0] = k0;
	assert_string_equal(s3_meta_get(&old, "bfs-keyid"), "00000001");
	assert_int_equal(bfs_integrity_sig_status(&o, "dir/f", 1, &old), BFS_SIG_OK);
	struct s3_meta m;
	s3_meta_copy(&m, &old);
	s3_meta_set(&m, "mode", "33261");
	assert_int_equal(bfs_integrity_resign(&o, "dir/f", &old, 1, "dir/renamed", &m), 0);
	assert_string_equal(s3_meta_get(&m, "bfs-keyid"), "9f9f5111");
	assert_int_equal(bfs_integrity_sig_status(&o, "dir/renamed", 1, &m), BFS_SIG_OK);
	s3_meta_free(&m);
	/* a tampered object is not blessed: its new metadata goes out unsigned */
	s3_meta_set(&old, "uid", "0");
	s3_meta_copy(&m, &old);
	assert_int_equal(bfs_integrity_resign(&o, "dir/f", &old, 1, "dir/f", &m), 0);
	assert_null(s3_meta_get(&m, "bfs-sig"));
	assert_null(s3_meta_get(&m, "bfs-keyid"));
	s3_meta_free(&m);
	s3_meta_free(&old);
	free(o.hmac_keys);
}

static void test_verify_blocks(void **state)
{
	(void)state;
	struct bfs_options o;
	opts_with_key(&o, BFS_HMAC_REQUIRE);
	char body[1000];
	memset(body, 'z', sizeof(body));
	body[999] = '\0';
	struct s3_meta m;
	sealed(&o, &m, body);
	struct bfs_verify *v;
	assert_int_equal(bfs_integrity_prepare(&o, "dir/f", "", 999, &m, &v), 0);
	assert_true(bfs_verify_has_digest(v));
	uint64_t bad = 7;
	assert_int_equal(bfs_verify_blocks(NULL, v, "dir/f", 0, (unsigned char *)body, 999, &bad), 0);
	body[500] ^= 1;
	assert_int_equal(bfs_verify_blocks(NULL, v, "dir/f", 0, (unsigned char *)body, 999, &bad),
			 -EIO);
	assert_int_equal(bad, 0);
	bfs_verify_free(v);
	/* a bfs-blocks header that does not match the signed root: refused */
	s3_meta_set(&m, "bfs-blocks", "00");
	assert_int_equal(bfs_integrity_prepare(&o, "dir/f", "", 999, &m, &v), -EIO);
	/* plain MD5 ETag of an object without digests */
	struct s3_meta none;
	s3_meta_init(&none);
	o.hmac_mode = BFS_HMAC_VERIFY;
	assert_int_equal(bfs_integrity_prepare(&o, "x", "5d41402abc4b2a76b9719d911017c592", 5, &none,
					       &v), 0);
	assert_false(bfs_verify_has_digest(v));
	assert_true(bfs_verify_md5(v, (const unsigned char *)"hello", 5));
	assert_false(bfs_verify_md5(v, (const unsigned char *)"hellO", 5));
	bfs_verify_free(v);
	s3_meta_free(&none);
	s3_meta_free(&m);
	free(o.hmac_keys);
}

static void test_key_file(void **state)
{
	(void)state;
	char path[] = "/tmp/bfs-keyXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "# comment\n0123456789abcdef\n\nan older key, still accepted  \n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct bfs_options o;
	char err[256];
	memset(&o, 0, sizeof(o));
	o.hmac_key_file = path;
	chmod(path, 0640);
	assert_int_equal(bfs_integrity_load_keys(&o, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, path));
	chmod(path, 0600);
	assert_int_equal(bfs_integrity_load_keys(&o, err, sizeof(err)), 0);
	assert_int_equal(o.nhmac_keys, 2);
	assert_string_equal(o.hmac_keys[0].id, "9f9f5111"); /* sha256("0123456789abcdef")[:8] */
	assert_int_equal(o.hmac_keys[1].len, 28);
	assert_int_equal(o.hmac_mode, BFS_HMAC_VERIFY); /* the default with a key */
	bfs_integrity_free_keys(&o);
	/* too short a key */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "short\n", 6), 6);
	close(fd);
	o.hmac_mode = BFS_HMAC_DEFAULT;
	assert_int_equal(bfs_integrity_load_keys(&o, err, sizeof(err)), -EINVAL);
	unlink(path);
	/* no key: off by default, and require without a key is an error */
	memset(&o, 0, sizeof(o));
	assert_int_equal(bfs_integrity_load_keys(&o, err, sizeof(err)), 0);
	assert_int_equal(o.hmac_mode, BFS_HMAC_OFF);
	o.hmac_mode = BFS_HMAC_REQUIRE;
	assert_int_equal(bfs_integrity_load_keys(&o, err, sizeof(err)), -EINVAL);
}

/* The incremental digester (streamed uploads) seals exactly as bfs_integrity_seal does from
 * the file, whatever the pieces it is fed: digest, one-block list, MD5, signature. */
static void test_digester_matches_seal(void **state)
{
	(void)state;
	struct bfs_options o;
	opts_with_key(&o, BFS_HMAC_VERIFY);
	o.prefix = "";
	o.part_size = 1000; /* "multipart": bfs-md5 too */
	size_t n = 700000;
	unsigned char *body = malloc(n);
	for (size_t i = 0; i < n; i++)
		body[i] = (unsigned char)(i * 7 + (i >> 9));
	char path[] = "/tmp/bfs-digester-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, body, n), (ssize_t)n);

	struct s3_meta a, b;
	s3_meta_init(&a);
	s3_meta_set(&a, "mode", "33188");
	s3_meta_set(&a, "mtime", "1700000000");
	assert_int_equal(s3_meta_copy(&b, &a), 0);
	assert_int_equal(bfs_integrity_seal(NULL, &o, "dir/f", fd, n, &a), 0);
	struct bfs_digester *d;
	assert_int_equal(bfs_digester_new(&d), 0);
	size_t cuts[] = { 1, 4095, 262144, 1048576 };
	for (size_t off = 0, k = 0; off < n; k++) {
		size_t take = cuts[k % 4] < n - off ? cuts[k % 4] : n - off;
		assert_int_equal(bfs_digester_update(d, body + off, take), 0);
		off += take;
	}
	assert_int_equal(bfs_integrity_seal_digester(NULL, &o, "dir/f", d, n, &b), 0);
	bfs_digester_free(d);
	const char *names[] = { "bfs-digest", "bfs-blocks", "bfs-md5", "bfs-sig", "bfs-keyid" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		assert_non_null(s3_meta_get(&a, names[i]));
		assert_string_equal(s3_meta_get(&a, names[i]), s3_meta_get(&b, names[i]));
	}
	assert_int_equal(bfs_integrity_sig_status(&o, "dir/f", n, &b), BFS_SIG_OK);
	s3_meta_free(&a);
	s3_meta_free(&b);
	close(fd);
	free(body);
	bfs_integrity_free_keys(&o);
}

int main(void)
{
	bfs_log_setup(0, BFS_LOG_ERR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hmac_rfc4231),
		cmocka_unit_test(test_root_known_answers),
		cmocka_unit_test(test_canonical),
		cmocka_unit_test(test_sign_and_tamper),
		cmocka_unit_test(test_resign_and_rotation),
		cmocka_unit_test(test_verify_blocks),
		cmocka_unit_test(test_key_file),
		cmocka_unit_test(test_digester_matches_seal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
