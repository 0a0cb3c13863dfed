/* s3/meta.c — struct s3_meta / s3_object helpers and response header parsing. */
#include "s3/internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void s3_meta_init(struct s3_meta *m)
{
	m->kv = NULL;
	m->n = m->cap = 0;
}

void s3_meta_free(struct s3_meta *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->kv[i].name);
		free(m->kv[i].value);
	}
	free(m->kv);
	s3_meta_init(m);
}

static ssize_t meta_find(const struct s3_meta *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcasecmp(m->kv[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

int s3_meta_set(struct s3_meta *m, const char *name, const char *value)
{
	ssize_t i = meta_find(m, name);
	char *v = strdup(value), *nm = NULL;

	if (!v)
		return -ENOMEM;
	if (i >= 0) {
		free(m->kv[i].value);
		m->kv[i].value = v;
		return 0;
	}
	nm = strdup(name);
	if (!nm)
		goto nomem;
	for (char *p = nm; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 8;
		struct s3_kv *kv = realloc(m->kv, cap * sizeof(*kv));
		if (!kv)
			goto nomem;
		m->kv = kv;
		m->cap = cap;
	}
	m->kv[m->n].name = nm;
	m->kv[m->n].value = v;
	m->n++;
	return 0;
nomem:
	free(nm);
	free(v);
	return -ENOMEM;
}

const char *s3_meta_get(const struct s3_meta *m, const char *name)
{
	ssize_t i = meta_find(m, name);

	return i >= 0 ? m->kv[i].value : NULL;
}

void s3_meta_del(struct s3_meta *m, const char *name)
{
	ssize_t i = meta_find(m, name);

	if (i < 0)
		return;
	free(m->kv[i].name);
	free(m->kv[i].value);
	m->kv[i] = m->kv[m->n - 1];
	m->n--;
}

int s3_meta_copy(struct s3_meta *dst, const struct s3_meta *src)
{
	s3_meta_init(dst);
	for (size_t i = 0; src && i < src->n; i++) {
		if (s3_meta_set(dst, src->kv[i].name, src->kv[i].value)) {
			s3_meta_free(dst);
			return -ENOMEM;
		}
	}
	return 0;
}

static const struct {
	const char *meta, *header;
} std_headers[] = {
	{ S3_HDR_CONTENT_TYPE, "Content-Type" },
	{ S3_HDR_CONTENT_ENCODING, "Content-Encoding" },
	{ S3_HDR_CACHE_CONTROL, "Cache-Control" },
	{ S3_HDR_CONTENT_DISPOSITION, "Content-Disposition" },
};

bool s3_meta_is_header(const char *name)
{
	return name[0] == ':';
}

const char *s3_meta_header_name(const char *name)
{
	for (size_t i = 0; i < sizeof(std_headers) / sizeof(std_headers[0]); i++)
		if (strcasecmp(name, std_headers[i].meta) == 0)
			return std_headers[i].header;
	return NULL;
}

/* The ':' name of a standard response header line "Name: ...", or NULL. */
static const char *std_header_meta(const char *line, size_t nlen)
{
	for (size_t i = 0; i < sizeof(std_headers) / sizeof(std_headers[0]); i++) {
		const char *h = std_headers[i].header;
		if (strlen(h) == nlen && strncasecmp(line, h, nlen) == 0)
			return std_headers[i].meta;
	}
	return NULL;
}

void s3_object_init(struct s3_object *o)
{
	memset(o, 0, sizeof(*o));
	s3_meta_init(&o->meta);
}

void s3_object_free(struct s3_object *o)
{
	s3_meta_free(&o->meta);
	s3_object_init(o);
}

void s3_etag_copy(char out[72], const char *etag)
{
	size_t len = strlen(etag);

	if (len >= 2 && etag[0] == '"' && etag[len - 1] == '"') {
		etag++;
		len -= 2;
	}
	if (len > 71)
		len = 71;
	memcpy(out, etag, len);
	out[len] = '\0';
}

int s3_parse_iso8601(const char *s, struct timespec *out)
{
	struct tm tm = { 0 };
	char *end;

	out->tv_sec = 0;
	out->tv_nsec = 0;
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end)
		return -EINVAL;
	out->tv_sec = timegm(&tm);
	return 0;
}

/* Copies header value [v, v+len) trimmed into a NUL-terminated malloc'd string. */
static char *value_dup(const char *v, size_t len)
{
	while (len && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len && (v[len - 1] == ' ' || v[len - 1] == '\t' || v[len - 1] == '\r' ||
		       v[len - 1] == '\n'))
		len--;
	return strndup(v, len);
}

void s3_parse_header_line(struct s3_req *r, const char *line, size_t len)
{
	const char *colon;
	size_t nlen;
	char *value;
	const char *std;

	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		/* A new response (after 100 Continue, or a new attempt): forget the last one.
		 * The line is not NUL-terminated: the status is read within len. */
		const char *sp = memchr(line, ' ', len), *end = line + len;
		r->status = 0;
		for (const char *d = sp ? sp + 1 : end; d < end && *d >= '0' && *d <= '9' &&
		     r->status < 1000; d++)
			r->status = r->status * 10 + (*d - '0');
		s3_object_free(&r->obj);
		r->have_range = false;
		r->range_total = 0;
		r->range_len = 0;
		r->request_id[0] = '\0';
		return;
	}
	colon = memchr(line, ':', len);
	if (!colon)
		return;
	nlen = (size_t)(colon - line);
	value = value_dup(colon + 1, len - nlen - 1);
	if (!value)
		return;

#define IS(h) (nlen == sizeof(h) - 1 && strncasecmp(line, h, nlen) == 0)
	if (IS("ETag")) {
		s3_etag_copy(r->obj.etag, value);
	} else if (IS("Content-Length")) {
		if (!r->have_range)
			r->obj.size = strtoull(value, NULL, 10);
	} else if (IS("Content-Range")) {
		/* "bytes 0-9/443" or "bytes * /443" */
		const char *slash = strrchr(value, '/');
		if (slash && slash[1] != '*') {
			r->have_range = true;
			r->range_total = strtoull(slash + 1, NULL, 10);
			r->obj.size = r->range_total;
		}
		unsigned long long first, last;
		if (sscanf(value, "bytes %llu-%llu/", &first, &last) == 2 && last >= first)
			r->range_len = last - first + 1;
	} else if (IS("Last-Modified")) {
		time_t t = curl_getdate(value, NULL);
		r->obj.last_modified.tv_sec = t > 0 ? t : 0;
		r->obj.last_modified.tv_nsec = 0;
	} else if ((std = std_header_meta(line, nlen))) {
		if (IS("Content-Type"))
			snprintf(r->obj.content_type, sizeof(r->obj.content_type), "%s", value);
		s3_meta_set(&r->obj.meta, std, value);
	} else if (IS("x-amz-request-id")) {
		snprintf(r->request_id, sizeof(r->request_id), "%s", value);
	} else if (nlen > 11 && strncasecmp(line, "x-amz-meta-", 11) == 0) {
		char *name = strndup(line + 11, nlen - 11);
		if (name) {
			s3_meta_set(&r->obj.meta, name, value); /* lowercases the name */
			free(name);
		}
	}
#undef IS
	free(value);
}
