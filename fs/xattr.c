/* fs/xattr.c — extended attributes in x-amz-meta-xattr, in s3fs-fuse's encoding.
 *
 * The header value is the percent-encoding (RFC 3986 unreserved characters and '/' kept) of
 *   {"NAME":"BASE64(VALUE)","NAME2":"..."}
 * with names in byte order, as s3fs 1.90 writes it (docs/layout.md has captured examples).
 * s3fs splits that text on ',' and ':' without any escaping, so a name containing '"', ','
 * or ':' cannot be stored: setting one fails with -EINVAL. Values are arbitrary bytes.
 * The attribute set is decoded from m on every call; m is the only state. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "fs/fs.h"
#include "util/util.h"

/* AWS limits the user metadata of an object (names and values) to 2 KiB. */
#define BFS_USER_META_MAX 2048

struct xattr_ent {
	char *name;
	unsigned char *val;
	size_t len;
};

struct xattr_set {
	struct xattr_ent *e; /* sorted by name after xattrs_parse; owned */
	size_t n, cap;
};

static void xattrs_free(struct xattr_set *x)
{
	for (size_t i = 0; i < x->n; i++) {
		free(x->e[i].name);
		free(x->e[i].val);
	}
	free(x->e);
	memset(x, 0, sizeof(*x));
}

static long find(const struct xattr_set *x, const char *name)
{
	for (size_t i = 0; i < x->n; i++)
		if (strcmp(x->e[i].name, name) == 0)
			return (long)i;
	return -1;
}

/* Sets name to a copy of val (replacing any earlier entry). 0 or -ENOMEM. */
static int xattrs_put(struct xattr_set *x, const char *name, size_t name_len,
		      const unsigned char *val, size_t len)
{
	char *nm = strndup(name, name_len);
	unsigned char *v = malloc(len ? len : 1);
	if (!nm || !v)
		goto nomem;
	if (len)
		memcpy(v, val, len);

	long i = find(x, nm);
	if (i >= 0) {
		free(x->e[i].name);
		free(x->e[i].val);
	} else {
		if (x->n == x->cap) {
			size_t cap = x->cap ? 2 * x->cap : 8;
			struct xattr_ent *e = realloc(x->e, cap * sizeof(*e));
			if (!e)
				goto nomem;
			x->e = e;
			x->cap = cap;
		}
		i = (long)x->n++;
	}
	x->e[i] = (struct xattr_ent){.name = nm, .val = v, .len = len};
	return 0;
nomem:
	free(nm);
	free(v);
	return -ENOMEM;
}

/* Percent-decodes s (a malformed escape is kept as it is, like s3fs). malloc'd or NULL. */
static char *percent_decode(const char *s)
{
	size_t n = strlen(s);
	char *out = malloc(n + 1), *p = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < n && (hi = bfs_hexval(s[i + 1])) >= 0 &&
		    (lo = bfs_hexval(s[i + 2])) >= 0) {
			*p++ = (char)(hi << 4 | lo);
			i += 2;
		} else {
			*p++ = s[i];
		}
	}
	*p = '\0';
	return out;
}

/* Trims blanks and one pair of surrounding double quotes from [*s, *s + *n). False if the
 * text is not a quoted string. */
static bool unquote(const char **s, size_t *n)
{
	while (*n && (**s == ' ' || **s == '\t'))
		(*s)++, (*n)--;
	while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
	if (*n < 2 || (*s)[0] != '"' || (*s)[*n - 1] != '"')
		return false;
	(*s)++;
	*n -= 2;
	return memchr(*s, '"', *n) == NULL;
}

static int cmp_ent(const void *a, const void *b)
{
	return strcmp(((const struct xattr_ent *)a)->name, ((const struct xattr_ent *)b)->name);
}

/* Decodes the xattr header of m into x (initialised here). An absent header is an empty set;
 * entries that do not parse are skipped, as s3fs skips them. 0 or -ENOMEM. */
static int xattrs_parse(const struct s3_meta *m, struct xattr_set *x)
{
	memset(x, 0, sizeof(*x));
	const char *hdr = s3_meta_get(m, "xattr");
	if (!hdr || !*hdr)
		return 0;
	char *json = percent_decode(hdr);
	if (!json)
		return -ENOMEM;

	int rc = 0;
	unsigned char *val = NULL;
	char *open = strchr(json, '{'), *close = strrchr(json, '}');
	if (!open || !close || close < open)
		goto out;
	*close = '\0';
	for (char *pair = open + 1; pair; ) {
		char *comma = strchr(pair, ',');
		size_t pair_len = comma ? (size_t)(comma - pair) : strlen(pair);
		char *colon = memchr(pair, ':', pair_len);
		if (colon) {
			const char *name = pair, *b64 = colon + 1;
			size_t name_len = (size_t)(colon - pair);
			size_t b64_len = pair_len - name_len - 1;
			if (unquote(&name, &name_len) && name_len > 0 && unquote(&b64, &b64_len)) {
				val = malloc(b64_len / 4 * 3 + 3);
				if (!val) {
					rc = -ENOMEM;
					goto out;
				}
				long len = bfs_base64_decode(b64, b64_len, val);
				if (len >= 0 && (rc = xattrs_put(x, name, name_len, val, (size_t)len)))
					goto out;
				free(val);
				val = NULL;
			}
		}
		pair = comma ? comma + 1 : NULL;
	}
	if (x->n > 1)
		qsort(x->e, x->n, sizeof(*x->e), cmp_ent);
out:
	free(val);
	free(json);
	if (rc)
		xattrs_free(x);
	return rc;
}

/* Bytes of user metadata in m (names and values), not counting the xattr header (nor the
 * standard headers m keeps, which are not user metadata). */
static size_t meta_size_without_xattr(const struct s3_meta *m)
{
	size_t total = 0;
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->kv[i].name, "xattr") != 0 && !s3_meta_is_header(m->kv[i].name))
			total += strlen(m->kv[i].name) + strlen(m->kv[i].value);
	return total;
}

/* Encodes x into the xattr header of m (removed when x is empty). 0, -ENOMEM, or -ENOSPC
 * when the object's user metadata would exceed what S3 stores. */
static int xattrs_store(struct xattr_set *x, struct s3_meta *m)
{
	if (x->n == 0) {
		s3_meta_del(m, "xattr");
		return 0;
	}
	qsort(x->e, x->n, sizeof(*x->e), cmp_ent);

	size_t cap = 3;
	for (size_t i = 0; i < x->n; i++)
		cap += strlen(x->e[i].name) + (x->e[i].len + 2) / 3 * 4 + 6;
	char *json = malloc(cap), *p = json;
	if (!json)
		return -ENOMEM;
	*p++ = '{';
	for (size_t i = 0; i < x->n; i++) {
		if (i)
			*p++ = ',';
		size_t nl = strlen(x->e[i].name);
		*p++ = '"';
		memcpy(p, x->e[i].name, nl);
		p += nl;
		memcpy(p, "\":\"", 3);
		p += 3;
		p += bfs_base64(x->e[i].val, x->e[i].len, p);
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';

	int rc;
	char *enc = bfs_uri_encode(json, 1);
	if (!enc)
		rc = -ENOMEM;
	else if (meta_size_without_xattr(m) + strlen("xattr") + strlen(enc) > BFS_USER_META_MAX)
		rc = -ENOSPC;
	else
		rc = s3_meta_set(m, "xattr", enc);
	free(enc);
	free(json);
	return rc;
}

/* A name s3fs's format can carry: non-empty, no '"', ',' or ':'. */
static bool name_ok(const char *name)
{
	return name && *name && !strpbrk(name, "\",:");
}

ssize_t bfs_xattr_get(const struct s3_meta *m, const char *name, void *buf, size_t size)
{
	struct xattr_set x;
	int rc = xattrs_parse(m, &x);
	if (rc)
		return rc;
	ssize_t ret;
	long i = find(&x, name);
	if (i < 0)
		ret = -ENODATA;
	else if (size == 0)
		ret = (ssize_t)x.e[i].len;
	else if (size < x.e[i].len)
		ret = -ERANGE;
	else {
		if (x.e[i].len)
			memcpy(buf, x.e[i].val, x.e[i].len);
		ret = (ssize_t)x.e[i].len;
	}
	xattrs_free(&x);
	return ret;
}

int bfs_xattr_set(struct s3_meta *m, const char *name, const void *val, size_t len, int flags)
{
	if (!name_ok(name) || (flags & ~(XATTR_CREATE | XATTR_REPLACE)) ||
	    flags == (XATTR_CREATE | XATTR_REPLACE) || (len && !val))
		return -EINVAL;
	struct xattr_set x;
	int rc = xattrs_parse(m, &x);
	if (rc)
		return rc;
	bool exists = find(&x, name) >= 0;
	if ((flags & XATTR_CREATE) && exists)
		rc = -EEXIST;
	else if ((flags & XATTR_REPLACE) && !exists)
		rc = -ENODATA;
	else if (!(rc = xattrs_put(&x, name, strlen(name), val, len)))
		rc = xattrs_store(&x, m);
	xattrs_free(&x);
	return rc;
}

ssize_t bfs_xattr_list(const struct s3_meta *m, char *buf, size_t size)
{
	struct xattr_set x;
	int rc = xattrs_parse(m, &x);
	if (rc)
		return rc;
	size_t total = 0;
	for (size_t i = 0; i < x.n; i++)
		total += strlen(x.e[i].name) + 1;
	ssize_t ret = (ssize_t)total;
	if (size > 0 && size < total) {
		ret = -ERANGE;
	} else if (size > 0) {
		char *p = buf;
		for (size_t i = 0; i < x.n; i++) {
			size_t nl = strlen(x.e[i].name) + 1;
			memcpy(p, x.e[i].name, nl);
			p += nl;
		}
	}
	xattrs_free(&x);
	return ret;
}

int bfs_xattr_remove(struct s3_meta *m, const char *name)
{
	struct xattr_set x;
	int rc = xattrs_parse(m, &x);
	if (rc)
		return rc;
	long i = find(&x, name);
	if (i < 0) {
		rc = -ENODATA;
	} else {
		free(x.e[i].name);
		free(x.e[i].val);
		x.e[i] = x.e[--x.n];
		rc = xattrs_store(&x, m);
	}
	xattrs_free(&x);
	return rc;
}
