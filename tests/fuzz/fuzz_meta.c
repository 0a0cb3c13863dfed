/* tests/fuzz/fuzz_meta.c — what a HEAD response's headers go through: s3_parse_header_line
 * (s3/meta.c), then the POSIX attributes (fs/meta.c: mode, uid, gid, rdev, mtime/ctime/atime,
 * the goog-reserved-* headers), the extended attributes (fs/xattr.c: x-amz-meta-xattr) and
 * the integrity headers (fs/integrity.c: bfs-digest, bfs-blocks, bfs-md5, bfs-dlist,
 * bfs-sig, bfs-keyid) and the stored inode number (fs/inode.c: bfs-ino).
 * Input: response header lines as curl passes them ("x-amz-meta-mode: 33188\r\n"), each
 * given to the parser in a buffer of exactly its length. */
#include <errno.h>
#include <string.h>
#include <sys/xattr.h>

#include "fs/fs_int.h"
#include "s3/internal.h"
#include "tests/fuzz/fuzz.h"

#define NSEC_PER_SEC 1000000000L

static void check_time(const char *value)
{
	struct timespec ts, back;
	struct s3_meta m;

	if (bfs_meta_parse_time(value, &ts))
		return;
	FUZZ_CHECK(ts.tv_nsec >= 0 && ts.tv_nsec < NSEC_PER_SEC);
	/* what bucketfs writes reads back as the same time */
	s3_meta_init(&m);
	if (bfs_meta_set_time(&m, "mtime", &ts) == 0) {
		FUZZ_CHECK(bfs_meta_parse_time(s3_meta_get(&m, "mtime"), &back) == 0);
		FUZZ_CHECK(back.tv_sec == ts.tv_sec && back.tv_nsec == ts.tv_nsec);
	}
	s3_meta_free(&m);
}

static void check_stat(const struct s3_object *o, bool is_dir)
{
	static const struct bfs_defaults d = { .uid = 1000, .gid = 1000, .umask = 022 };
	struct stat st;

	bfs_meta_to_stat(o, is_dir, &d, &st);
	FUZZ_CHECK((st.st_mode & S_IFMT) != 0 && (st.st_mode & ~(S_IFMT | 07777)) == 0);
	FUZZ_CHECK(!is_dir || S_ISDIR(st.st_mode));
	FUZZ_CHECK(st.st_nlink == 1 && st.st_size >= 0);
	FUZZ_CHECK(st.st_mtim.tv_nsec >= 0 && st.st_mtim.tv_nsec < NSEC_PER_SEC);
	FUZZ_CHECK(st.st_ctim.tv_nsec >= 0 && st.st_ctim.tv_nsec < NSEC_PER_SEC);
	FUZZ_CHECK(st.st_atim.tv_nsec >= 0 && st.st_atim.tv_nsec < NSEC_PER_SEC);
}

/* The value of name in m, malloc'd into *val; its length, or -errno. */
static ssize_t xattr_dup(const struct s3_meta *m, const char *name, unsigned char **val)
{
	ssize_t len = bfs_xattr_get(m, name, NULL, 0), got;

	*val = NULL;
	if (len < 0)
		return len;
	*val = malloc(len ? (size_t)len : 1);
	if (!*val)
		return -ENOMEM;
	got = bfs_xattr_get(m, name, *val, (size_t)len);
	if (len > 0)
		FUZZ_CHECK(got == len);
	return got;
}

/* listxattr and getxattr agree; a setxattr keeps every other attribute as it was. */
static void check_xattrs(const struct s3_meta *m)
{
	static const unsigned char fval[] = "fuzz\0value\xff";
	ssize_t total = bfs_xattr_list(m, NULL, 0), got;
	struct s3_meta copy;
	char *names;

	if (total < 0)
		return; /* ENOMEM */
	names = malloc(total ? (size_t)total : 1);
	if (!names)
		return;
	got = bfs_xattr_list(m, names, (size_t)total);
	FUZZ_CHECK(got == total);
	if (total > 0) {
		FUZZ_CHECK(names[total - 1] == '\0');
		FUZZ_CHECK(bfs_xattr_list(m, names, (size_t)total - 1) == -ERANGE);
	}
	if (s3_meta_copy(&copy, m)) {
		free(names);
		return;
	}
	int rc = bfs_xattr_set(&copy, "user.fuzz", fval, sizeof(fval), 0);
	FUZZ_CHECK(rc == 0 || rc == -ENOSPC || rc == -ENOMEM);
	for (const char *n = names; n < names + total; n += strlen(n) + 1) {
		unsigned char *a, *b;
		FUZZ_CHECK(*n != '\0');
		ssize_t la = xattr_dup(m, n, &a);
		FUZZ_CHECK(la >= 0 || la == -ENOMEM);
		if (rc == 0 && la >= 0 && strcmp(n, "user.fuzz") != 0) {
			ssize_t lb = xattr_dup(&copy, n, &b);
			FUZZ_CHECK(lb == la || lb == -ENOMEM);
			if (lb == la)
				FUZZ_CHECK(la == 0 || memcmp(a, b, (size_t)la) == 0);
			free(b);
		}
		free(a);
	}
	if (rc == 0) {
		unsigned char buf[sizeof(fval)];
		FUZZ_CHECK(bfs_xattr_get(&copy, "user.fuzz", buf, sizeof(buf)) == sizeof(fval));
		FUZZ_CHECK(memcmp(buf, fval, sizeof(fval)) == 0);
		rc = bfs_xattr_remove(&copy, "user.fuzz"); /* gives back the room it took */
		FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
		if (rc == 0)
			FUZZ_CHECK(bfs_xattr_get(&copy, "user.fuzz", NULL, 0) == -ENODATA);
	}
	s3_meta_free(&copy);
	free(names);
}

static void check_integrity(const struct s3_object *o)
{
	struct bfs_hmac_key key = { .key = "0123456789abcdef-fuzz", .len = 21,
					   .id = "00000000" };
	struct bfs_options opts = { .hmac_mode = BFS_HMAC_VERIFY, .hmac_keys = &key,
				    .nhmac_keys = 1 };
	struct bfs_verify *v = NULL;
	struct s3_meta m;

	/* the key id of the signature in the headers, when there is one, is this key's */
	if (s3_meta_get(&o->meta, "bfs-keyid"))
		snprintf(key.id, sizeof(key.id), "%.8s", s3_meta_get(&o->meta, "bfs-keyid"));
	(void)bfs_integrity_sig_status(&opts, "dir/key", o->size, &o->meta);
	int rc = bfs_integrity_prepare(&opts, "dir/key", o->etag, o->size, &o->meta, &v);
	FUZZ_CHECK(rc == 0 || rc == -EACCES || rc == -EIO || rc == -ENOMEM);
	FUZZ_CHECK(!rc == !!v);
	if (v && o->size <= 4096) {
		/* at most one digest block (4 KiB or more): checked without the S3 client */
		unsigned char *buf = calloc(1, o->size ? o->size : 1);
		uint64_t bad;
		if (buf) {
			rc = bfs_verify_blocks(NULL, v, "dir/key", 0, buf, (size_t)o->size, &bad);
			FUZZ_CHECK(rc == 0 || rc == -EIO);
			FUZZ_CHECK(rc == 0 || bfs_verify_has_digest(v));
			(void)bfs_verify_md5(v, buf, (size_t)o->size);
			free(buf);
		}
	}
	bfs_verify_free(v);

	/* what we sign verifies */
	if (s3_meta_copy(&m, &o->meta))
		return;
	if (bfs_integrity_sign(&opts, "dir/key", o->size, &m) == 0)
		FUZZ_CHECK(bfs_integrity_sig_status(&opts, "dir/key", o->size, &m) == BFS_SIG_OK);
	s3_meta_free(&m);
}

/* A stored number is a valid inode number, counts only at its own key, and reads back as
 * stored. */
static void check_ino(const struct s3_meta *m)
{
	ino_t n = bfs_ino_stored(m, "dir/key");
	struct s3_meta back;

	FUZZ_CHECK(n == 0 || (n >= 2 && n <= 0x7fffffffffffffffull));
	if (n)
		FUZZ_CHECK(bfs_ino_stored(m, "dir/other") == 0);
	s3_meta_init(&back);
	if (n && bfs_ino_store(&back, n, "dir/key") == 0) {
		FUZZ_CHECK(bfs_ino_stored(&back, "dir/key") == n);
		FUZZ_CHECK(strcmp(s3_meta_get(&back, BFS_INO_META), s3_meta_get(m, BFS_INO_META)) == 0);
	}
	s3_meta_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	struct s3_req r;

	if (!quiet) {
		bfs_log_setup(0, (enum bfs_log_level)0); /* the parsers log what they refuse */
		quiet = true;
	}
	s3_req_init(&r, "HEAD", "dir/key");
	for (size_t off = 0; off < size;) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t n = nl ? (size_t)(nl - (data + off)) + 1 : size - off;
		char *line = malloc(n);
		if (!line)
			break;
		memcpy(line, data + off, n);
		s3_parse_header_line(&r, line, n);
		free(line);
		off += n;
	}
	FUZZ_CHECK(strnlen(r.obj.etag, sizeof(r.obj.etag)) < sizeof(r.obj.etag));
	FUZZ_CHECK(strnlen(r.obj.content_type, sizeof(r.obj.content_type)) <
		   sizeof(r.obj.content_type));
	FUZZ_CHECK(strnlen(r.request_id, sizeof(r.request_id)) < sizeof(r.request_id));
	for (size_t i = 0; i < r.obj.meta.n; i++) {
		const char *name = r.obj.meta.kv[i].name;
		for (const char *c = name; *c; c++)
			FUZZ_CHECK(*c < 'A' || *c > 'Z'); /* stored lowercase */
		check_time(r.obj.meta.kv[i].value);
	}
	check_stat(&r.obj, false);
	check_stat(&r.obj, true);
	check_stat(NULL, true);
	check_xattrs(&r.obj.meta);
	check_integrity(&r.obj);
	check_ino(&r.obj.meta);
	s3_req_free(&r);
	return 0;
}
