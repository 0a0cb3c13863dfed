/* s3/multipart.c — multipart upload from an fd, multipart copy (UploadPartCopy), and the
 * listing/abort of unfinished uploads. Parts go in parallel on the connection pool. */
#include "s3/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "util/util.h"

/* One upload in progress and the ETag of each part. */
struct upload {
	struct s3_client *c;
	const char *key;
	char *upload_id;          /* owned */
	uint64_t size, part;      /* object size, part size (the last part may be shorter) */
	size_t nparts;
	char (*etags)[72];        /* owned; etags[i] of part i+1, each written by one worker */
	struct s3_first_err fe;
	/* upload from fd */
	int fd;
	/* copy */
	const char *source;       /* encoded "bucket/key" */
	const char *src_etag;     /* x-amz-copy-source-if-match */
};

/* Picks a part size: at least min_part, and few enough parts for S3's limit of 10000. */
static uint64_t choose_part(uint64_t size, uint64_t min_part)
{
	uint64_t part = min_part;
	uint64_t need = (size + S3_MAX_PARTS - 1) / S3_MAX_PARTS;

	if (part < need)
		part = (need + (1 << 20) - 1) & ~((uint64_t)(1 << 20) - 1);
	return part;
}

static int create_upload(struct upload *u, const struct s3_meta *meta, const char *content_type)
{
	struct s3_pair params[] = { { "uploads", NULL } };
	char id[1024];
	struct s3_req r;
	int rc;

	s3_req_init(&r, "POST", u->key);
	r.what = "CREATE-MULTIPART";
	r.params = params;
	r.nparams = 1;
	rc = s3_req_meta(&r, meta, content_type);
	if (rc) {
		s3_set_error("PUT %s: invalid metadata or content type", u->key);
		goto out;
	}
	atomic_fetch_add(&u->c->stats.multipart, 1);
	rc = s3_request(u->c, &r);
	if (rc)
		goto out;
	if (s3_xml_find_text(r.resp, r.resp_len, "InitiateMultipartUploadResult", "UploadId", id,
			     sizeof(id)) || !id[0]) {
		s3_set_error("CREATE-MULTIPART %s: no UploadId in the response (request id %s)",
			     u->key, r.request_id[0] ? r.request_id : "-");
		rc = -EPROTO;
		goto out;
	}
	u->upload_id = strdup(id);
	rc = u->upload_id ? 0 : -ENOMEM;
out:
	s3_req_free(&r);
	return rc;
}

/* UploadPart: the ETag S3 returns must be the hex MD5 of the part. */
static int check_part_etag(struct s3_req *r, void *arg)
{
	(void)arg;
	if (strcasecmp(r->obj.etag, r->body_md5_hex) == 0)
		return 0;
	s3_set_error("UPLOAD-PART %s: ETag %s does not match MD5 %s (request id %s)", r->key,
		     r->obj.etag[0] ? r->obj.etag : "(none)", r->body_md5_hex,
		     r->request_id[0] ? r->request_id : "-");
	return -EAGAIN;
}

/* Copy part results are XML: <CopyPartResult><ETag>, or a late <Error>. */
static int check_copy_part(struct s3_req *r, void *arg)
{
	char tag[80];

	if (s3_xml_parse_error(r->resp, r->resp_len, &r->err) == 0) {
		s3_set_error("UPLOAD-PART-COPY %s: error %s: %s (request id %s)", r->key,
			     r->err.code, r->err.message,
			     r->err.request_id[0] ? r->err.request_id : "-");
		return s3_errmap_http(500, r->err.code);
	}
	if (s3_xml_find_text(r->resp, r->resp_len, "CopyPartResult", "ETag", tag, sizeof(tag))) {
		s3_set_error("UPLOAD-PART-COPY %s: malformed result (request id %s)", r->key,
			     r->request_id[0] ? r->request_id : "-");
		return -EPROTO;
	}
	s3_etag_copy(arg, tag);
	return 0;
}

static void upload_part(void *arg, size_t i)
{
	struct upload *u = arg;
	uint64_t off = (uint64_t)i * u->part;
	uint64_t len = u->size - off < u->part ? u->size - off : u->part;
	char num[16];
	struct s3_pair params[2];
	struct s3_req r;
	int rc;

	pthread_mutex_lock(&u->fe.lock);
	rc = u->fe.rc;
	pthread_mutex_unlock(&u->fe.lock);
	if (rc) /* another part failed: the upload will be aborted anyway */
		return;
	snprintf(num, sizeof(num), "%zu", i + 1);
	params[0] = (struct s3_pair){ "partNumber", num };
	params[1] = (struct s3_pair){ "uploadId", u->upload_id };
	s3_req_init(&r, "PUT", u->key);
	r.params = params;
	r.nparams = 2;
	if (u->source) {
		r.what = "UPLOAD-PART-COPY";
		s3_req_header(&r, "x-amz-copy-source", "%s", u->source);
		s3_req_header(&r, "x-amz-copy-source-range", "bytes=%llu-%llu",
			      (unsigned long long)off, (unsigned long long)(off + len - 1));
		if (u->src_etag && *u->src_etag)
			s3_req_header(&r, "x-amz-copy-source-if-match", "\"%s\"", u->src_etag);
		r.check = check_copy_part;
		r.check_arg = u->etags[i];
	} else {
		r.what = "UPLOAD-PART";
		rc = s3_req_body_fd(&r, u->fd, off, len, true);
		if (rc) {
			if (rc != -EIO)
				s3_set_error("UPLOAD-PART %s: reading the source: %s", u->key,
					     strerror(-rc));
			goto out;
		}
		r.check = check_part_etag;
	}
	atomic_fetch_add(&u->c->stats.multipart, 1);
	rc = s3_request(u->c, &r);
	if (rc == 0 && !u->source)
		snprintf(u->etags[i], sizeof(u->etags[i]), "%s", r.obj.etag);
out:
	if (rc)
		s3_first_err_record(&u->fe, rc);
	s3_req_free(&r);
}

/* CompleteMultipartUpload answers 200 and may still fail: the body tells. */
static int check_complete(struct s3_req *r, void *arg)
{
	char tag[80];

	if (s3_xml_parse_error(r->resp, r->resp_len, &r->err) == 0) {
		s3_set_error("COMPLETE-MULTIPART %s: error %s: %s (request id %s)", r->key,
			     r->err.code, r->err.message,
			     r->err.request_id[0] ? r->err.request_id : "-");
		return s3_errmap_http(500, r->err.code);
	}
	/* Root CompleteMultipartUploadResult; some servers name it ...Response: accept any. */
	if (s3_xml_find_text(r->resp, r->resp_len, NULL, "ETag", tag, sizeof(tag))) {
		s3_set_error("COMPLETE-MULTIPART %s: malformed result (request id %s)", r->key,
			     r->request_id[0] ? r->request_id : "-");
		return -EPROTO;
	}
	s3_etag_copy(arg, tag);
	return 0;
}

static int complete_upload(struct upload *u, char etag[72])
{
	struct s3_pair params[] = { { "uploadId", u->upload_id } };
	size_t cap = 128 + u->nparts * 128, len = 0;
	char *body = malloc(cap);
	struct s3_req r;
	int rc = -ENOMEM;

	s3_req_init(&r, "POST", u->key);
	r.what = "COMPLETE-MULTIPART";
	if (!body)
		goto out;
	len += (size_t)snprintf(body + len, cap - len, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < u->nparts; i++)
		len += (size_t)snprintf(body + len, cap - len,
					"<Part><PartNumber>%zu</PartNumber><ETag>\"%s\"</ETag></Part>",
					i + 1, u->etags[i]);
	len += (size_t)snprintf(body + len, cap - len, "</CompleteMultipartUpload>");
	s3_req_body_mem(&r, body, len, true);
	s3_req_header(&r, "Content-Type", "application/xml");
	r.params = params;
	r.nparams = 1;
	r.check = check_complete;
	r.check_arg = etag;
	atomic_fetch_add(&u->c->stats.multipart, 1);
	rc = s3_request(u->c, &r);
out:
	free(body);
	s3_req_free(&r);
	return rc;
}

int s3_multipart_abort(struct s3_client *c, const char *key, const char *upload_id)
{
	struct s3_pair params[] = { { "uploadId", upload_id } };
	struct s3_req r;
	int rc;

	s3_req_init(&r, "DELETE", key);
	r.what = "ABORT-MULTIPART";
	r.params = params;
	r.nparams = 1;
	atomic_fetch_add(&c->stats.multipart, 1);
	rc = s3_request(c, &r);
	if (rc == -ENOENT)
		rc = 0; /* NoSuchUpload: already gone */
	s3_req_free(&r);
	return rc;
}

/* The ETag S3 gives a completed multipart object: hex MD5 of the parts' binary MD5s, "-N". */
static void multipart_etag(const struct upload *u, char out[72])
{
	unsigned char (*md5s)[16] = calloc(u->nparts, sizeof(*md5s)), digest[16];
	out[0] = '\0';
	if (!md5s)
		return;
	for (size_t i = 0; i < u->nparts; i++)
		if (bfs_unhex(u->etags[i], md5s[i], 16) != 0)
			goto out;
	EVP_Digest(md5s, u->nparts * 16, digest, NULL, EVP_md5(), NULL);
	bfs_hex(digest, 16, out);
	snprintf(out + 32, 72 - 32, "-%zu", u->nparts);
out:
	free(md5s);
}

/* CompleteMultipartUpload answered without an ETag (Ceph RGW 16 sends <ETag></ETag>): ask the
 * object. The caller must know the ETag of what it wrote: an empty one reads as "nothing in
 * S3", and a later write would start from nothing. If the HEAD fails, the ETag S3 computes
 * is used; should the server compute another, a conditional request fails and the object is
 * learnt anew. */
static void learn_etag(struct upload *u, char etag[72])
{
	struct s3_object o;
	char want[72];
	multipart_etag(u, want);
	int rc = s3_head(u->c, u->key, &o);
	if (rc == 0 && o.etag[0] && o.size == u->size) {
		if (want[0] && strcmp(o.etag, want) != 0)
			bfs_log(BFS_LOG_DEBUG, "s3: %s: ETag %s after an upload whose parts make %s",
				u->key, o.etag, want);
		snprintf(etag, 72, "%s", o.etag);
	} else {
		snprintf(etag, 72, "%s", want);
	}
	if (rc == 0)
		s3_object_free(&o);
}

/* Runs the parts of u (created), completes it, or aborts it on failure. */
static int run_upload(struct upload *u, struct s3_object *out)
{
	char etag[72] = "";
	int rc;

	u->etags = calloc(u->nparts, sizeof(*u->etags));
	if (!u->etags) {
		rc = -ENOMEM;
		goto abort;
	}
	s3_first_err_init(&u->fe);
	rc = s3_parallel(u->c, u->nparts, upload_part, u);
	int prc = s3_first_err_finish(&u->fe);
	if (!rc)
		rc = prc;
	if (rc)
		goto abort;
	rc = complete_upload(u, etag);
	if (rc)
		goto abort;
	if (!etag[0])
		learn_etag(u, etag);
	if (out) {
		s3_object_init(out);
		snprintf(out->etag, sizeof(out->etag), "%s", etag);
		out->size = u->size;
	}
	goto out;
abort:;
	/* Keep the first error's message: the abort may overwrite it. */
	char msg[4096];
	snprintf(msg, sizeof(msg), "%s", s3_last_error());
	if (s3_multipart_abort(u->c, u->key, u->upload_id))
		bfs_log(BFS_LOG_WARN, "s3: %s: could not abort upload %s: %s", u->key,
			u->upload_id, s3_last_error());
	s3_set_error("%s", msg);
out:
	free(u->etags);
	free(u->upload_id);
	return rc;
}

int s3_multipart_put_fd(struct s3_client *c, const char *key, int fd, uint64_t size,
			const char *content_type, const struct s3_meta *meta,
			struct s3_object *out)
{
	struct upload u = { .c = c, .key = key, .fd = fd, .size = size };
	int rc;

	u.part = choose_part(size, c->part_size);
	u.nparts = (size_t)((size + u.part - 1) / u.part);
	if (u.nparts > S3_MAX_PARTS || u.part > S3_MAX_COPY_SIZE) {
		s3_set_error("PUT %s: %llu bytes is over the S3 object size limit", key,
			     (unsigned long long)size);
		return -EFBIG;
	}
	rc = create_upload(&u, meta, content_type);
	if (rc)
		return rc;
	return run_upload(&u, out);
}

int s3_multipart_copy(struct s3_client *c, const char *src_key, const char *dst_key,
		      const struct s3_object *src, const struct s3_meta *meta,
		      const char *content_type, const char *if_match, struct s3_object *out)
{
	struct upload u = { .c = c, .key = dst_key, .fd = -1, .size = src->size };
	char *source = NULL;
	int rc;

	if (if_match && strcmp(if_match, src->etag) != 0) {
		s3_set_error("COPY %s: source changed (ETag %s, expected %s)", src_key, src->etag,
			     if_match);
		return -ESTALE;
	}
	u.part = choose_part(src->size, c->copy_part_size);
	u.nparts = (size_t)((src->size + u.part - 1) / u.part);
	if (u.nparts > S3_MAX_PARTS || u.part > S3_MAX_COPY_SIZE) {
		s3_set_error("COPY %s: %llu bytes is over the S3 object size limit", src_key,
			     (unsigned long long)src->size);
		return -EFBIG;
	}
	source = s3_copy_source(c, src_key);
	if (!source)
		return -ENOMEM;
	u.source = source;
	u.src_etag = src->etag; /* every part from the same version of the source */
	/* COPY keeps the source's metadata and type; REPLACE uses the caller's. */
	rc = meta ? create_upload(&u, meta, content_type)
		  : create_upload(&u, &src->meta, src->content_type[0] ? src->content_type : NULL);
	if (rc == 0) {
		atomic_fetch_add(&c->stats.copy, 1);
		rc = run_upload(&u, out);
	}
	free(source);
	return rc;
}

int s3_multipart_list(struct s3_client *c, const char *prefix, const char *key_marker,
		      const char *upload_id_marker, struct s3_upload_list *out)
{
	struct s3_pair params[5];
	size_t n = 0;
	struct s3_req r;
	int rc;

	memset(out, 0, sizeof(*out));
	params[n++] = (struct s3_pair){ "uploads", NULL };
	params[n++] = (struct s3_pair){ "encoding-type", "url" };
	if (prefix && *prefix)
		params[n++] = (struct s3_pair){ "prefix", prefix };
	if (key_marker && *key_marker)
		params[n++] = (struct s3_pair){ "key-marker", key_marker };
	if (upload_id_marker && *upload_id_marker)
		params[n++] = (struct s3_pair){ "upload-id-marker", upload_id_marker };
	s3_req_init(&r, "GET", NULL);
	r.what = "LIST-MULTIPART";
	r.params = params;
	r.nparams = n;
	atomic_fetch_add(&c->stats.list, 1);
	rc = s3_request(c, &r);
	if (rc == 0) {
		rc = s3_xml_parse_uploads(r.resp, r.resp_len, out);
		if (rc)
			s3_set_error("LIST-MULTIPART: malformed response (request id %s)",
				     r.request_id[0] ? r.request_id : "-");
	}
	s3_req_free(&r);
	return rc;
}

void s3_upload_list_free(struct s3_upload_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->uploads[i].key);
		free(l->uploads[i].upload_id);
	}
	free(l->uploads);
	free(l->next_key_marker);
	free(l->next_upload_id_marker);
	memset(l, 0, sizeof(*l));
}

/* ---- multipart uploads driven by the caller ---- */

struct s3_multipart {
	struct upload u;        /* key and upload_id owned; u.etags/u.nparts used at completion */
	char *key;              /* owned; u.key points here */
	pthread_mutex_t lock;   /* protects etags, sizes, cap */
	char (*etags)[72];      /* etags[i]: part i+1; "" until it was sent */
	uint64_t *sizes;        /* sizes[i]: bytes of part i+1 */
	size_t cap;
};

int s3_multipart_begin(struct s3_client *c, const char *key, const struct s3_meta *meta,
		       const char *content_type, struct s3_multipart **out)
{
	struct s3_multipart *m = calloc(1, sizeof(*m));
	int rc = -ENOMEM;

	*out = NULL;
	if (!m || !(m->key = strdup(key)))
		goto fail;
	pthread_mutex_init(&m->lock, NULL);
	m->u.c = c;
	m->u.key = m->key;
	m->u.fd = -1;
	rc = create_upload(&m->u, meta, content_type);
	if (rc)
		goto fail;
	*out = m;
	return 0;
fail:
	if (m) {
		free(m->key);
		free(m);
	}
	return rc;
}

/* Makes room for part number n (1-based) in m's tables (m->lock held). */
static int reserve_part(struct s3_multipart *m, size_t n)
{
	if (n <= m->cap)
		return 0;
	size_t nc = m->cap ? m->cap : 64;
	while (nc < n)
		nc *= 2;
	if (nc > S3_MAX_PARTS)
		nc = S3_MAX_PARTS;
	char (*e)[72] = realloc(m->etags, nc * sizeof(*e));
	if (!e)
		return -ENOMEM;
	m->etags = e;
	uint64_t *sz = realloc(m->sizes, nc * sizeof(*sz));
	if (!sz)
		return -ENOMEM;
	m->sizes = sz;
	for (size_t i = m->cap; i < nc; i++) {
		m->etags[i][0] = '\0';
		m->sizes[i] = 0;
	}
	m->cap = nc;
	return 0;
}

int s3_multipart_part(struct s3_multipart *m, size_t number, int fd, uint64_t off,
		      uint64_t len, s3_tap_fn tap, void *tap_arg)
{
	struct s3_client *c = m->u.c;
	char num[16];
	struct s3_pair params[2];
	struct s3_req r;
	int rc;

	if (number < 1 || number > S3_MAX_PARTS || len == 0 || len > S3_MAX_COPY_SIZE) {
		s3_set_error("UPLOAD-PART %s: part %zu of %llu bytes is out of S3's limits", m->key,
			     number, (unsigned long long)len);
		return -EFBIG;
	}
	pthread_mutex_lock(&m->lock);
	rc = reserve_part(m, number);
	pthread_mutex_unlock(&m->lock);
	if (rc)
		return rc;
	snprintf(num, sizeof(num), "%zu", number);
	params[0] = (struct s3_pair){ "partNumber", num };
	params[1] = (struct s3_pair){ "uploadId", m->u.upload_id };
	s3_req_init(&r, "PUT", m->key);
	r.what = "UPLOAD-PART";
	r.params = params;
	r.nparams = 2;
	r.tap = tap;
	r.tap_arg = tap_arg;
	rc = s3_req_body_fd(&r, fd, off, len, true);
	if (rc) {
		if (rc != -EIO)
			s3_set_error("UPLOAD-PART %s: reading the source: %s", m->key, strerror(-rc));
		goto out;
	}
	r.check = check_part_etag;
	atomic_fetch_add(&c->stats.multipart, 1);
	rc = s3_request(c, &r);
	if (rc == 0) {
		pthread_mutex_lock(&m->lock);
		snprintf(m->etags[number - 1], sizeof(m->etags[0]), "%s", r.obj.etag);
		m->sizes[number - 1] = len;
		pthread_mutex_unlock(&m->lock);
	}
out:
	s3_req_free(&r);
	return rc;
}

int s3_multipart_complete(struct s3_multipart *m, size_t nparts, struct s3_object *out)
{
	char etag[72] = "";
	uint64_t size = 0;
	int rc;

	pthread_mutex_lock(&m->lock);
	rc = nparts == 0 || nparts > m->cap ? -EINVAL : 0;
	for (size_t i = 0; rc == 0 && i < nparts; i++) {
		if (!m->etags[i][0])
			rc = -EINVAL;
		size += m->sizes[i];
	}
	pthread_mutex_unlock(&m->lock);
	if (rc) {
		s3_set_error("COMPLETE-MULTIPART %s: not every one of %zu parts was sent", m->key,
			     nparts);
		return rc;
	}
	m->u.etags = m->etags;
	m->u.nparts = nparts;
	m->u.size = size;
	rc = complete_upload(&m->u, etag);
	if (rc == 0 && !etag[0])
		learn_etag(&m->u, etag);
	m->u.etags = NULL;
	if (rc == 0 && out) {
		s3_object_init(out);
		snprintf(out->etag, sizeof(out->etag), "%s", etag);
		out->size = size;
	}
	return rc;
}

int s3_multipart_cancel(struct s3_multipart *m)
{
	return s3_multipart_abort(m->u.c, m->key, m->u.upload_id);
}

void s3_multipart_free(struct s3_multipart *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m->etags);
	free(m->sizes);
	free(m->u.upload_id);
	free(m->key);
	free(m);
}

const char *s3_multipart_key(const struct s3_multipart *m)
{
	return m->key;
}

const char *s3_multipart_id(const struct s3_multipart *m)
{
	return m->u.upload_id;
}
