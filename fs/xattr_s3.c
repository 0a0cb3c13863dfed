/* fs/xattr_s3.c — the virtual extended attributes user.s3.*: an object's Content-Type,
 * Content-Encoding, Cache-Control and Content-Disposition (kept in its metadata under the
 * S3_HDR_* names, s3/s3.h) and its ETag (read-only). They are never stored in
 * x-amz-meta-xattr: changing one changes the header itself (fs/ops_xattr.c). Like the
 * virtual attributes of other file systems (CephFS's ceph.*), they are read and set by name
 * and not listed, so getfattr -d, rsync -X and cp -a copy only the user's own attributes
 * (a copied user.s3.etag could never be set, and would fail the copy). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "fs/fs_int.h"

static const struct {
	const char *xattr, *meta;
} names[] = {
	{ "user.s3.content_type", S3_HDR_CONTENT_TYPE },
	{ "user.s3.content_encoding", S3_HDR_CONTENT_ENCODING },
	{ "user.s3.cache_control", S3_HDR_CACHE_CONTROL },
	{ "user.s3.content_disposition", S3_HDR_CONTENT_DISPOSITION },
};
/* longer header values than this are refused (servers limit a request's headers) */
#define BFS_S3_XATTR_MAX 1024
#define NNAMES (sizeof(names) / sizeof(names[0]))

bool bfs_s3_xattr_is(const char *name)
{
	return strncmp(name, BFS_S3_XATTR_PREFIX, strlen(BFS_S3_XATTR_PREFIX)) == 0;
}

/* The metadata name of a settable attribute, or NULL. */
static const char *meta_name(const char *name)
{
	for (size_t i = 0; i < NNAMES; i++)
		if (strcmp(name, names[i].xattr) == 0)
			return names[i].meta;
	return NULL;
}

static ssize_t reply(const char *v, void *buf, size_t size)
{
	size_t len = strlen(v);
	if (size == 0)
		return (ssize_t)len;
	if (size < len)
		return -ERANGE;
	memcpy(buf, v, len);
	return (ssize_t)len;
}

ssize_t bfs_s3_xattr_get(const struct s3_meta *m, const char *etag, const char *name,
			 void *buf, size_t size)
{
	if (strcmp(name, BFS_S3_XATTR_ETAG) == 0)
		return etag[0] ? reply(etag, buf, size) : -ENODATA;
	const char *mn = meta_name(name);
	const char *v = mn ? s3_meta_get(m, mn) : NULL;
	return v ? reply(v, buf, size) : -ENODATA;
}

int bfs_s3_xattr_change(struct s3_meta *m, const char *name, const void *val, size_t len,
			int flags)
{
	if (strcmp(name, BFS_S3_XATTR_ETAG) == 0)
		return -EPERM;
	const char *mn = meta_name(name);
	if (!mn)
		return -EOPNOTSUPP;
	if ((flags & ~(XATTR_CREATE | XATTR_REPLACE)) ||
	    flags == (XATTR_CREATE | XATTR_REPLACE))
		return -EINVAL;
	bool exists = s3_meta_get(m, mn) != NULL;
	if (!val) {
		if (!exists)
			return -ENODATA;
		s3_meta_del(m, mn);
		return 0;
	}
	if ((flags & XATTR_CREATE) && exists)
		return -EEXIST;
	if ((flags & XATTR_REPLACE) && !exists)
		return -ENODATA;
	/* an HTTP header value: one line of text */
	if (len == 0 || memchr(val, '\0', len) || memchr(val, '\r', len) || memchr(val, '\n', len))
		return -EINVAL;
	if (len > BFS_S3_XATTR_MAX)
		return -E2BIG;
	char *v = strndup(val, len);
	if (!v)
		return -ENOMEM;
	int rc = s3_meta_set(m, mn, v);
	free(v);
	return rc;
}
