/* s3/object.c — HEAD, GET (ranged and whole-object), PUT, COPY and DELETE of objects. */
#include "s3/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

/* Moves the parsed response headers of r into out (initialised here). */
static void take_object(struct s3_req *r, struct s3_object *out)
{
	*out = r->obj;
	s3_object_init(&r->obj);
}

int s3_head(struct s3_client *c, const char *key, struct s3_object *out)
{
	struct s3_req r;
	int rc;

	s3_object_init(out);
	s3_req_init(&r, "HEAD", key);
	atomic_fetch_add(&c->stats.head, 1);
	rc = s3_request(c, &r);
	if (rc == 0)
		take_object(&r, out);
	s3_req_free(&r);
	return rc;
}

struct head_many {
	struct s3_client *c;
	const char *const *keys;
	struct s3_object *outs;
	int *rcs;
};

static void head_one(void *arg, size_t i)
{
	struct head_many *h = arg;

	h->rcs[i] = s3_head(h->c, h->keys[i], &h->outs[i]);
}

int s3_head_many(struct s3_client *c, const char *const *keys, size_t n,
		 struct s3_object *outs, int *rcs)
{
	struct head_many h = { c, keys, outs, rcs };

	for (size_t i = 0; i < n; i++) {
		s3_object_init(&outs[i]);
		rcs[i] = -ECANCELED;
	}
	return s3_parallel(c, n, head_one, &h);
}

/* Sends a GET of [off, off+len) (len 0 = to the end) into the sink already set on r. */
static void set_range(struct s3_req *r, uint64_t off, uint64_t len)
{
	if (len)
		s3_req_header(r, "Range", "bytes=%llu-%llu", (unsigned long long)off,
			      (unsigned long long)(off + len - 1));
	else
		s3_req_header(r, "Range", "bytes=%llu-", (unsigned long long)off);
	r->range_off = off;
}

/* A GET sent with If-Match: a server that ignores the condition (s3rver does) answers with
 * another version's bytes. Its ETag tells, and that is "the object changed" (-ESTALE) like
 * a 412, never bytes of the wrong version. */
static int check_match(const struct s3_req *r, const char *key, const char *if_match)
{
	if (!if_match || !if_match[0] || !r->obj.etag[0] || strcmp(r->obj.etag, if_match) == 0)
		return 0;
	s3_set_error("GET %s: the object changed (ETag %s, expected %s)", key, r->obj.etag,
		     if_match);
	return -ESTALE;
}

int s3_get_range(struct s3_client *c, const char *key, uint64_t off, size_t len, void *buf,
		 size_t *got, const char *if_match, struct s3_object *info)
{
	struct s3_req r;
	int rc;

	*got = 0;
	if (info)
		s3_object_init(info);
	if (len == 0)
		return 0;
	s3_req_init(&r, "GET", key);
	set_range(&r, off, len);
	if (if_match)
		s3_req_header(&r, "If-Match", "\"%s\"", if_match);
	r.sink = S3_SINK_BUF;
	r.buf = buf;
	r.cap = len;
	atomic_fetch_add(&c->stats.get, 1);
	rc = s3_request(c, &r);
	if (rc == -ERANGE)
		rc = 0; /* starts at or past the end of the object: nothing to read */
	else if (rc == 0)
		rc = check_match(&r, key, if_match);
	if (rc == 0) {
		*got = (size_t)r.got;
		if (info)
			take_object(&r, info);
	}
	s3_req_free(&r);
	return rc;
}

/* Parallel download of the rest of an object after its first part. */
struct get_parts {
	struct s3_client *c;
	const char *key, *etag;
	int fd;
	uint64_t start, total, part;
	struct s3_first_err fe;
};

static void get_part(void *arg, size_t i)
{
	struct get_parts *g = arg;
	uint64_t off = g->start + i * g->part;
	uint64_t len = g->total - off < g->part ? g->total - off : g->part;
	struct s3_req r;
	int rc;

	s3_req_init(&r, "GET", g->key);
	set_range(&r, off, len);
	if (g->etag[0])
		s3_req_header(&r, "If-Match", "\"%s\"", g->etag);
	r.sink = S3_SINK_FD;
	r.fd = g->fd;
	r.fd_off = off;
	atomic_fetch_add(&g->c->stats.get, 1);
	rc = s3_request(g->c, &r);
	if (rc == 0)
		rc = check_match(&r, g->key, g->etag);
	if (rc == 0 && r.got < len) {
		s3_set_error("GET %s: short body at %llu: %llu of %llu bytes", g->key,
			     (unsigned long long)off, (unsigned long long)r.got,
			     (unsigned long long)len);
		rc = -EIO;
	}
	if (rc)
		s3_first_err_record(&g->fe, rc);
	s3_req_free(&r);
}

int s3_get_to_fd(struct s3_client *c, const char *key, int fd, const char *if_match,
		 const char *if_none_match, struct s3_object *info)
{
	struct s3_req r;
	struct stat st;
	uint64_t total;
	int rc;

	if (info)
		s3_object_init(info);
	/* The first part: tells the size and ETag, and answers the conditions. */
	s3_req_init(&r, "GET", key);
	s3_req_header(&r, "Range", "bytes=0-%llu", (unsigned long long)(c->part_size - 1));
	if (if_match)
		s3_req_header(&r, "If-Match", "\"%s\"", if_match);
	if (if_none_match)
		s3_req_header(&r, "If-None-Match", "\"%s\"", if_none_match);
	r.sink = S3_SINK_FD;
	r.fd = fd;
	atomic_fetch_add(&c->stats.get, 1);
	rc = s3_request(c, &r);
	if (rc == -ERANGE) {
		/* An empty object has no byte 0: fetch it whole. */
		s3_req_free(&r);
		s3_req_init(&r, "GET", key);
		if (if_match)
			s3_req_header(&r, "If-Match", "\"%s\"", if_match);
		if (if_none_match)
			s3_req_header(&r, "If-None-Match", "\"%s\"", if_none_match);
		r.sink = S3_SINK_FD;
		r.fd = fd;
		atomic_fetch_add(&c->stats.get, 1);
		rc = s3_request(c, &r);
	}
	if (rc == 0)
		rc = check_match(&r, key, if_match);
	if (rc)
		goto out;
	total = r.have_range ? r.range_total : r.got;
	if (total > r.got) {
		struct get_parts g = { .c = c, .key = key, .etag = r.obj.etag, .fd = fd,
				       .start = r.got, .total = total, .part = c->part_size };
		size_t nparts = (size_t)((total - r.got + c->part_size - 1) / c->part_size);

		s3_first_err_init(&g.fe);
		rc = s3_parallel(c, nparts, get_part, &g);
		int prc = s3_first_err_finish(&g.fe);
		if (!rc)
			rc = prc;
		if (rc)
			goto out;
	}
	/* The whole object, nothing after it. */
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > total &&
	    ftruncate(fd, (off_t)total) < 0) {
		rc = -errno;
		s3_set_error("GET %s: truncating the destination: %s", key, strerror(errno));
		goto out;
	}
	r.obj.size = total;
	if (info)
		take_object(&r, info);
out:
	s3_req_free(&r);
	return rc;
}

/* Single-part PUT: the ETag S3 returns must be the hex MD5 of what we sent. */
static int check_put_etag(struct s3_req *r, void *arg)
{
	(void)arg;
	if (strcasecmp(r->obj.etag, r->body_md5_hex) == 0)
		return 0;
	s3_set_error("PUT %s: ETag %s does not match MD5 %s (request id %s)", r->key,
		     r->obj.etag[0] ? r->obj.etag : "(none)", r->body_md5_hex,
		     r->request_id[0] ? r->request_id : "-");
	return -EAGAIN;
}

/* PUT with the body already set on r. */
static int put_single(struct s3_client *c, struct s3_req *r, const char *content_type,
		      const struct s3_meta *meta, struct s3_object *out)
{
	int rc = s3_req_meta(r, meta, content_type);

	if (rc) {
		s3_set_error("PUT %s: invalid metadata or content type", r->key);
		return rc;
	}
	r->check = check_put_etag;
	atomic_fetch_add(&c->stats.put, 1);
	rc = s3_request(c, r);
	if (rc == 0 && out) {
		s3_object_init(out);
		snprintf(out->etag, sizeof(out->etag), "%s", r->obj.etag);
		out->size = r->body_len;
	}
	return rc;
}

int s3_put_buf(struct s3_client *c, const char *key, const void *buf, size_t size,
	       const char *content_type, const struct s3_meta *meta, struct s3_object *out)
{
	struct s3_req r;
	int rc;

	if (size > S3_MAX_COPY_SIZE) {
		s3_set_error("PUT %s: %zu bytes is over the 5 GiB single PUT limit", key, size);
		return -EFBIG;
	}
	s3_req_init(&r, "PUT", key);
	s3_req_body_mem(&r, buf, size, true);
	rc = put_single(c, &r, content_type, meta, out);
	s3_req_free(&r);
	return rc;
}

int s3_put_fd(struct s3_client *c, const char *key, int fd, uint64_t size,
	      const char *content_type, const struct s3_meta *meta, struct s3_object *out)
{
	struct s3_req r;
	int rc;

	if (size > c->part_size)
		return s3_multipart_put_fd(c, key, fd, size, content_type, meta, out);
	s3_req_init(&r, "PUT", key);
	rc = s3_req_body_fd(&r, fd, 0, size, true);
	if (rc == 0)
		rc = put_single(c, &r, content_type, meta, out);
	else if (rc != -EIO)
		s3_set_error("PUT %s: reading the source: %s", key, strerror(-rc));
	s3_req_free(&r);
	return rc;
}

/* A 2xx answer to a copy may still carry an <Error>: S3 sends 200 early, then fails. */
static int check_copy_result(struct s3_req *r, void *arg)
{
	char *etag = arg;
	char tag[80];

	if (s3_xml_parse_error(r->resp, r->resp_len, &r->err) == 0) {
		s3_set_error("%s %s: HTTP %ld with error %s: %s (request id %s)", r->what, r->key,
			     r->status, r->err.code, r->err.message,
			     r->err.request_id[0] ? r->err.request_id : "-");
		return s3_errmap_http(500, r->err.code);
	}
	if (s3_xml_find_text(r->resp, r->resp_len, "CopyObjectResult", "ETag", tag,
			     sizeof(tag)) &&
	    s3_xml_find_text(r->resp, r->resp_len, "CopyPartResult", "ETag", tag, sizeof(tag))) {
		s3_set_error("%s %s: malformed copy result (request id %s)", r->what, r->key,
			     r->request_id[0] ? r->request_id : "-");
		return -EPROTO;
	}
	s3_etag_copy(etag, tag);
	return 0;
}

char *s3_copy_source(struct s3_client *c, const char *key)
{
	char *raw = NULL, *enc;

	if (asprintf(&raw, "%s/%s", c->bucket, key) < 0)
		return NULL;
	enc = bfs_uri_encode(raw, 1);
	free(raw);
	return enc;
}

/* One CopyObject request (sources up to 5 GiB). */
static int copy_single(struct s3_client *c, const char *src_key, const char *dst_key,
		       const struct s3_meta *meta, const char *content_type, const char *if_match,
		       char *etag)
{
	struct s3_req r;
	char *source = NULL;
	int rc = -ENOMEM;

	s3_req_init(&r, "PUT", dst_key);
	r.what = "COPY";
	source = s3_copy_source(c, src_key);
	if (!source)
		goto out;
	s3_req_header(&r, "x-amz-copy-source", "%s", source);
	if (if_match)
		s3_req_header(&r, "x-amz-copy-source-if-match", "\"%s\"", if_match);
	if (meta) {
		s3_req_header(&r, "x-amz-metadata-directive", "REPLACE");
		rc = s3_req_meta(&r, meta, content_type);
		if (rc) {
			s3_set_error("COPY %s: invalid metadata or content type", dst_key);
			goto out;
		}
	} else {
		s3_req_header(&r, "x-amz-metadata-directive", "COPY");
	}
	r.check = check_copy_result;
	r.check_arg = etag;
	atomic_fetch_add(&c->stats.copy, 1);
	rc = s3_request(c, &r);
out:
	free(source);
	s3_req_free(&r);
	return rc;
}

int s3_copy(struct s3_client *c, const char *src_key, const char *dst_key,
	    const struct s3_meta *meta, const char *content_type, const char *if_match,
	    struct s3_object *out)
{
	struct s3_object src;
	char etag[72] = "";
	int rc;

	/* one request in the common case; only a refused copy (a source over 5 GiB is
	 * InvalidRequest) costs a HEAD to find out whether a multipart copy is needed */
	s3_object_init(&src);
	rc = copy_single(c, src_key, dst_key, meta, content_type, if_match, etag);
	if (rc == -EINVAL) {
		int hrc = s3_head(c, src_key, &src);
		if (hrc == 0 && src.size > c->copy_part_threshold)
			rc = s3_multipart_copy(c, src_key, dst_key, &src, meta, content_type,
					       if_match, out);
		goto out;
	}
	if (rc == 0 && out) {
		s3_object_init(out);
		snprintf(out->etag, sizeof(out->etag), "%s", etag);
	}
out:
	s3_object_free(&src);
	return rc;
}

int s3_delete(struct s3_client *c, const char *key)
{
	struct s3_req r;
	int rc;

	s3_req_init(&r, "DELETE", key);
	atomic_fetch_add(&c->stats.del, 1);
	rc = s3_request(c, &r);
	if (rc == -ENOENT && r.status == 404 && strcmp(r.err.code, "NoSuchBucket") != 0)
		rc = 0;
	s3_req_free(&r);
	return rc;
}

/* Appends s to *buf, XML-escaped when escape; false on ENOMEM. */
static bool xml_append(char **buf, size_t *len, size_t *cap, const char *s, bool escape)
{
	for (; *s; s++) {
		char esc[8];
		const char *piece = esc;

		switch (escape ? *s : 0) {
		case '&': piece = "&amp;"; break;
		case '<': piece = "&lt;"; break;
		case '>': piece = "&gt;"; break;
		case '"': piece = "&quot;"; break;
		case '\'': piece = "&apos;"; break;
		case '\t': case '\n': case '\r':
			snprintf(esc, sizeof(esc), "&#x%X;", (unsigned)*s);
			break;
		default:
			esc[0] = *s;
			esc[1] = '\0';
		}
		size_t n = strlen(piece);
		if (*len + n + 1 > *cap) {
			size_t ncap = (*len + n + 1) * 2;
			char *p = realloc(*buf, ncap);
			if (!p)
				return false;
			*buf = p;
			*cap = ncap;
		}
		memcpy(*buf + *len, piece, n + 1);
		*len += n;
	}
	return true;
}

/* Keys with control characters XML 1.0 cannot carry are deleted one by one. */
static bool xml_representable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n' && *s != '\r')
			return false;
	return true;
}

static int delete_batch(struct s3_client *c, const char *const *keys, size_t n)
{
	struct s3_pair params[] = { { "delete", NULL } };
	char *body = NULL;
	size_t len = 0, cap = 0;
	struct s3_req r;
	bool ok = true;
	int rc = 0;

	s3_req_init(&r, "POST", NULL);
	r.what = "DELETE-MANY";
	ok = xml_append(&body, &len, &cap,
			"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>true</Quiet>", false);
	for (size_t i = 0; ok && i < n; i++) {
		if (!xml_representable(keys[i])) {
			int krc = s3_delete(c, keys[i]);
			if (krc && !rc)
				rc = krc;
			continue;
		}
		ok = xml_append(&body, &len, &cap, "<Object><Key>", false) &&
		     xml_append(&body, &len, &cap, keys[i], true) &&
		     xml_append(&body, &len, &cap, "</Key></Object>", false);
	}
	ok = ok && xml_append(&body, &len, &cap, "</Delete>", false);
	if (!ok) {
		rc = -ENOMEM;
		goto out;
	}
	s3_req_body_mem(&r, body, len, true);
	s3_req_header(&r, "Content-Type", "application/xml");
	r.params = params;
	r.nparams = 1;
	atomic_fetch_add(&c->stats.del, 1);
	int brc = s3_request(c, &r);
	if (brc == 0 && s3_xml_parse_delete_result(r.resp, r.resp_len, &r.err) == 1) {
		brc = s3_errmap_http(500, r.err.code);
		s3_set_error("DELETE %s: %s: %s (request id %s)", r.err.key, r.err.code,
			     r.err.message, r.request_id[0] ? r.request_id : "-");
	}
	if (brc && !rc)
		rc = brc;
out:
	free(body);
	s3_req_free(&r);
	return rc;
}

int s3_delete_many(struct s3_client *c, const char *const *keys, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n; i += 1000) {
		int brc = delete_batch(c, keys + i, n - i < 1000 ? n - i : 1000);
		if (brc && !rc)
			rc = brc;
	}
	return rc;
}
