/* s3/stats.c — what each request is called (S3's operation names, as in AWS's API reference
 * and the audit proxy), and per-operation counters and latency of the requests sent. */
#include "s3/internal.h"

#include <inttypes.h>
#include <string.h>
#include <strings.h>

#include "util/util.h"

static const char *const op_names[S3_OP_COUNT] = {
	[S3_OP_GET_OBJECT] = "GetObject",
	[S3_OP_HEAD_OBJECT] = "HeadObject",
	[S3_OP_PUT_OBJECT] = "PutObject",
	[S3_OP_COPY_OBJECT] = "CopyObject",
	[S3_OP_DELETE_OBJECT] = "DeleteObject",
	[S3_OP_DELETE_OBJECTS] = "DeleteObjects",
	[S3_OP_LIST_OBJECTS_V2] = "ListObjectsV2",
	[S3_OP_CREATE_MULTIPART_UPLOAD] = "CreateMultipartUpload",
	[S3_OP_UPLOAD_PART] = "UploadPart",
	[S3_OP_UPLOAD_PART_COPY] = "UploadPartCopy",
	[S3_OP_COMPLETE_MULTIPART_UPLOAD] = "CompleteMultipartUpload",
	[S3_OP_ABORT_MULTIPART_UPLOAD] = "AbortMultipartUpload",
	[S3_OP_LIST_MULTIPART_UPLOADS] = "ListMultipartUploads",
	[S3_OP_OTHER] = "Other",
};

const char *s3_op_name(enum s3_op op)
{
	return (unsigned)op < S3_OP_COUNT ? op_names[op] : "Other";
}

static bool has_param(const struct s3_req *r, const char *name)
{
	for (size_t i = 0; i < r->nparams; i++)
		if (strcmp(r->params[i].name, name) == 0)
			return true;
	return false;
}

static bool has_header(const struct s3_req *r, const char *name)
{
	for (size_t i = 0; i < r->nhdrs; i++)
		if (strcasecmp(r->hdrs[i].name, name) == 0)
			return true;
	return false;
}

enum s3_op s3_op_of(const struct s3_req *r)
{
	const char *m = r->method;

	if (!r->key) { /* bucket level */
		if (strcmp(m, "GET") == 0)
			return has_param(r, "uploads") ? S3_OP_LIST_MULTIPART_UPLOADS
						       : S3_OP_LIST_OBJECTS_V2;
		if (strcmp(m, "POST") == 0 && has_param(r, "delete"))
			return S3_OP_DELETE_OBJECTS;
		return S3_OP_OTHER;
	}
	if (strcmp(m, "GET") == 0)
		return S3_OP_GET_OBJECT;
	if (strcmp(m, "HEAD") == 0)
		return S3_OP_HEAD_OBJECT;
	if (strcmp(m, "PUT") == 0) {
		bool copy = has_header(r, "x-amz-copy-source");
		if (has_param(r, "partNumber"))
			return copy ? S3_OP_UPLOAD_PART_COPY : S3_OP_UPLOAD_PART;
		return copy ? S3_OP_COPY_OBJECT : S3_OP_PUT_OBJECT;
	}
	if (strcmp(m, "DELETE") == 0)
		return has_param(r, "uploadId") ? S3_OP_ABORT_MULTIPART_UPLOAD
						: S3_OP_DELETE_OBJECT;
	if (strcmp(m, "POST") == 0) {
		if (has_param(r, "uploads"))
			return S3_OP_CREATE_MULTIPART_UPLOAD;
		if (has_param(r, "uploadId"))
			return S3_OP_COMPLETE_MULTIPART_UPLOAD;
	}
	return S3_OP_OTHER;
}

void s3_stats_attempt(struct s3_client *c, const struct s3_req *r, enum s3_op op, int64_t ns)
{
	if (ns < 0)
		ns = 0;
	atomic_fetch_add_explicit(&c->ops[op].requests, 1, memory_order_relaxed);
	bfs_hist_add(&c->ops[op].latency, (uint64_t)ns);
	if (c->slow_ns >= 0 && ns >= c->slow_ns)
		bfs_log(BFS_LOG_INFO, "slow s3 %s %" PRId64 ".%09" PRId64 " status=%ld %s%s",
			s3_op_name(op), ns / 1000000000, ns % 1000000000, r->status,
			r->key ? "key=" : "bucket=", r->key ? r->key : c->bucket);
}

void s3_metrics_get(struct s3_client *c, struct s3_metrics *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < S3_OP_COUNT; i++) {
		struct s3_op_metrics *m = &out->op[i];
		m->requests = atomic_load_explicit(&c->ops[i].requests, memory_order_relaxed);
		m->errors = atomic_load_explicit(&c->ops[i].errors, memory_order_relaxed);
		m->retries = atomic_load_explicit(&c->ops[i].retries, memory_order_relaxed);
		bfs_hist_summarize(&c->ops[i].latency, &m->latency);
		out->requests += m->requests;
		out->errors += m->errors;
		out->retries += m->retries;
	}
	out->bytes_up = atomic_load(&c->stats.bytes_up);
	out->bytes_down = atomic_load(&c->stats.bytes_down);
}
