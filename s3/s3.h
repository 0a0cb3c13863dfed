/* s3/s3.h — the S3 client: the only header fs/, cache/ users and tools/ include from s3/.
 *
 * Every function here is thread-safe: a struct s3_client may be shared by all FUSE threads.
 * Connections are pooled and reused; no caller lock is needed. Functions return 0 or a
 * negative errno; S3 errors are mapped to errno in one table (s3/errmap.c):
 *   404 NoSuchKey -> -ENOENT, NoSuchBucket -> -ENXIO, 403 AccessDenied / SignatureDoesNotMatch /
 *   InvalidAccessKeyId -> -EACCES, 412 PreconditionFailed -> -ESTALE, 304 -> -EALREADY,
 *   BadDigest/ETag mismatch -> -EBADMSG (after retries), connection refused/unresolvable ->
 *   -EHOSTUNREACH, timeout -> -ETIMEDOUT, 5xx/SlowDown after retries -> -EIO.
 * After a failure, s3_last_error() gives a one-line message (S3 code, key, request id). */
#ifndef BFS_S3_H
#define BFS_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "util/util.h" /* struct bfs_hist_summary */

struct s3_client; /* opaque; thread-safe */

/* A set of credentials from a provider (struct s3_config.creds_fn). The strings are malloc'd;
 * whoever holds the struct owns them, and s3_creds_free wipes and frees them. */
struct s3_creds {
	char *access_key;
	char *secret_key;    /* never logged */
	char *session_token; /* NULL if none */
	time_t expiration;   /* wall clock; 0 = they do not expire */
};
void s3_creds_free(struct s3_creds *c);

/* Asks a credentials provider (credential_process, instance metadata, ...) for a fresh set.
 * Fills out (the client takes ownership) and returns 0, or returns -errno with a one-line
 * reason in err (no secrets in it). Called by one client thread at a time, holding no client
 * lock but the refresh mutex: it may block on network or process I/O. */
typedef int (*s3_creds_fn)(void *arg, struct s3_creds *out, char *err, size_t errlen);

#define S3_MAX_KEY 1024 /* longest object key S3 accepts, in bytes (UTF-8) */

struct s3_config {
	const char *endpoint;      /* "http://127.0.0.1:4568", "https://s3.example.com"; NULL = AWS for region */
	const char *region;        /* NULL = "us-east-1" */
	const char *bucket;
	bool path_style;           /* http://host/bucket/key instead of http://bucket.host/key */
	bool insecure;             /* disable TLS verification (default false = verify) */
	const char *ca_file;       /* NULL = system store */
	const char *access_key;    /* copied by s3_client_new */
	const char *secret_key;    /* copied; never logged */
	const char *session_token; /* copied; NULL if none */
	time_t creds_expiration;   /* when these keys expire (wall clock); 0 = never */
	s3_creds_fn creds_fn;      /* nullable: asked for new keys before creds_expiration (at
				    * min(5 min, half their lifetime) before it) and once after S3
				    * refuses them (ExpiredToken, InvalidAccessKeyId, InvalidToken);
				    * until a refresh succeeds the old keys stay in use */
	void *creds_arg;           /* for creds_fn; must outlive the client */
	int max_connections;       /* parallel requests for head_many/multipart; 0 = 16 */
	uint64_t part_size;        /* multipart part size; 0 = 8 MiB; objects > part_size go multipart */
	uint64_t copy_limit;       /* largest object the server copies with one CopyObject
				    * (larger: UploadPartCopy, in parts of at most this); 0 = 5 GiB */
	int retries;               /* retries of retryable failures; 0 = 5, -1 = none */
	long connect_timeout_ms;   /* 0 = 10000 */
	long low_speed_timeout_s;  /* abort a transfer slower than 1 KiB/s for this long; 0 = 30 */
	long unreachable_wait_s;   /* while the server cannot be reached (refused, reset, timed
				    * out), go on retrying for this long after the retries; 0 = no */
	bool slow_log;             /* log (info) each attempt that takes slow_ms or more */
	unsigned long slow_ms;
};

/* User metadata: x-amz-meta-NAME: VALUE pairs, NAME stored lowercase without the prefix.
 * Names beginning with ':' are instead the object's standard headers (S3_HDR_*, below):
 * responses put them here, and requests that send metadata send them as those headers, so
 * whatever carries an object's metadata along carries them too. (No x-amz-meta- name can
 * hold a ':'.) The struct owns its strings. Not thread-safe: one owner at a time. */
struct s3_kv {
	char *name;
	char *value;
};
struct s3_meta {
	struct s3_kv *kv;
	size_t n, cap;
};
void s3_meta_init(struct s3_meta *m);
void s3_meta_free(struct s3_meta *m);
int s3_meta_set(struct s3_meta *m, const char *name, const char *value); /* replaces; 0 or -ENOMEM */
const char *s3_meta_get(const struct s3_meta *m, const char *name);     /* NULL if absent */
void s3_meta_del(struct s3_meta *m, const char *name);
int s3_meta_copy(struct s3_meta *dst, const struct s3_meta *src); /* dst initialised by callee */

/* The standard headers kept in struct s3_meta, as their names there. */
#define S3_HDR_CONTENT_TYPE        ":content-type"
#define S3_HDR_CONTENT_ENCODING    ":content-encoding"
#define S3_HDR_CACHE_CONTROL       ":cache-control"
#define S3_HDR_CONTENT_DISPOSITION ":content-disposition"
/* True for such a name (a standard header, not x-amz-meta-). */
bool s3_meta_is_header(const char *name);
/* The HTTP header a ':' name stands for ("Cache-Control"), or NULL if it is none of the four. */
const char *s3_meta_header_name(const char *name);

/* What HEAD/GET/PUT/COPY learn about an object. Owner: the caller; free with s3_object_free. */
struct s3_object {
	char etag[72];                 /* without quotes; "" if unknown */
	uint64_t size;
	struct timespec last_modified; /* from Last-Modified (whole seconds) */
	char content_type[96];
	struct s3_meta meta;
};
void s3_object_init(struct s3_object *o);
void s3_object_free(struct s3_object *o);

/* Creates a client; copies everything it needs from cfg. 0 or -EINVAL/-ENOMEM. */
int s3_client_new(const struct s3_config *cfg, struct s3_client **out);
void s3_client_free(struct s3_client *c);

/* Last error message of the calling thread (static storage, valid until the next call). */
const char *s3_last_error(void);

/* Checks that the bucket exists and the credentials may list it (one ListObjectsV2,
 * max-keys=0). -ENXIO no such bucket, -EACCES denied/bad credentials, -EHOSTUNREACH. */
int s3_bucket_check(struct s3_client *c);

/* HEAD key. -ENOENT if absent. out is initialised by the callee. */
int s3_head(struct s3_client *c, const char *key, struct s3_object *out);

/* HEADs n keys in parallel (up to max_connections at once). rcs[i] gets each result,
 * outs[i] is initialised by the callee for every i. Returns 0 unless the batch itself failed. */
int s3_head_many(struct s3_client *c, const char *const *keys, size_t n,
		 struct s3_object *outs, int *rcs);

/* Ranged GET of [off, off+len) into buf; *got = bytes received (short at EOF).
 * if_match: when non-NULL, sent as If-Match and -ESTALE returned if the object changed.
 * info: when non-NULL, initialised by the callee with the response headers. */
int s3_get_range(struct s3_client *c, const char *key, uint64_t off, size_t len, void *buf,
		 size_t *got, const char *if_match, struct s3_object *info);

/* Conditional GET of the whole object into fd at offset 0 (parts fetched in parallel for
 * large objects, written with pwrite). if_none_match: when non-NULL and the ETag still matches,
 * returns -EALREADY without a body. info as for s3_get_range. */
int s3_get_to_fd(struct s3_client *c, const char *key, int fd, const char *if_match,
		 const char *if_none_match, struct s3_object *info);

/* Uploads size bytes of fd (read with pread from offset 0) as key with the given metadata
 * and Content-Type (NULL = application/octet-stream; meta's S3_HDR_CONTENT_TYPE wins over
 * it, here and in s3_put_buf and s3_copy). Single PUT with Content-MD5 when
 * size <= part_size, else multipart with parts uploaded in parallel, each with Content-MD5;
 * a failed multipart upload is aborted. The returned ETag is checked against the MD5 sent
 * (single part) and a mismatch retried, then -EBADMSG. out (nullable) gets etag and size. */
int s3_put_fd(struct s3_client *c, const char *key, int fd, uint64_t size,
	      const char *content_type, const struct s3_meta *meta, struct s3_object *out);

/* PUT of a memory buffer (symlinks, directory markers, small objects). */
int s3_put_buf(struct s3_client *c, const char *key, const void *buf, size_t size,
	       const char *content_type, const struct s3_meta *meta, struct s3_object *out);

/* Server-side copy src -> dst. meta non-NULL: x-amz-metadata-directive REPLACE with meta and
 * content_type; NULL: COPY. Objects over 5 GiB use UploadPartCopy. if_match (nullable) is
 * sent as x-amz-copy-source-if-match. out (nullable) gets the new etag. */
int s3_copy(struct s3_client *c, const char *src_key, const char *dst_key,
	    const struct s3_meta *meta, const char *content_type, const char *if_match,
	    struct s3_object *out);

/* DeleteObject; an absent key is success. */
int s3_delete(struct s3_client *c, const char *key);

/* DeleteObjects in batches of 1000 (Quiet). Returns the first failure, if any. */
int s3_delete_many(struct s3_client *c, const char *const *keys, size_t n);

/* One ListObjectsV2 page. Owner: the caller; free with s3_list_page_free. */
struct s3_list_entry {
	char *key;
	uint64_t size;
	char etag[72];
	struct timespec last_modified;
};
struct s3_list_page {
	struct s3_list_entry *objects;
	size_t nobjects;
	char **prefixes; /* CommonPrefixes, each ending in the delimiter */
	size_t nprefixes;
	char *next_token; /* NULL when not truncated */
};
/* prefix/delimiter/token may be NULL; max_keys 0 = 1000. out initialised by the callee. */
int s3_list(struct s3_client *c, const char *prefix, const char *delimiter, const char *token,
	    int max_keys, struct s3_list_page *out);
void s3_list_page_free(struct s3_list_page *p);
/* s3_list with start-after (used on the first page only; ignored with a token): keys up to
 * and including start_after are skipped, e.g. a directory's own "dir/" marker. */
int s3_list_after(struct s3_client *c, const char *prefix, const char *delimiter,
		  const char *token, const char *start_after, int max_keys,
		  struct s3_list_page *out);

/* Request counters since s3_client_new (for stats and tests); lock-free reads. */
struct s3_stats {
	uint64_t get, put, head, list, copy, del, multipart, retries, errors;
	uint64_t bytes_up, bytes_down;
};
void s3_stats_get(struct s3_client *c, struct s3_stats *out);

/* ---- per-operation statistics (s3/stats.c) ---- */

/* The S3 operation of a request, named as in S3's API reference (s3_op_name). */
enum s3_op {
	S3_OP_GET_OBJECT, S3_OP_HEAD_OBJECT, S3_OP_PUT_OBJECT, S3_OP_COPY_OBJECT,
	S3_OP_DELETE_OBJECT, S3_OP_DELETE_OBJECTS, S3_OP_LIST_OBJECTS_V2,
	S3_OP_CREATE_MULTIPART_UPLOAD, S3_OP_UPLOAD_PART, S3_OP_UPLOAD_PART_COPY,
	S3_OP_COMPLETE_MULTIPART_UPLOAD, S3_OP_ABORT_MULTIPART_UPLOAD,
	S3_OP_LIST_MULTIPART_UPLOADS, S3_OP_OTHER,
	S3_OP_COUNT
};
/* "GetObject", "PutObject", ... (static storage; "Other" for anything else). */
const char *s3_op_name(enum s3_op op);

/* Counters of one operation since s3_client_new: requests = attempts sent (retries
 * included, as a server or proxy counts them); errors = requests that failed after their
 * retries (not counting answers a file system expects: 404, 304, 412, 416); retries =
 * attempts repeated; latency of each attempt's transfer. */
struct s3_op_metrics {
	uint64_t requests, errors, retries;
	struct bfs_hist_summary latency;
};
/* Everything at once; totals are the sums over operations (bytes: request and response
 * bodies of every attempt, error bodies not counted). */
struct s3_metrics {
	struct s3_op_metrics op[S3_OP_COUNT];
	uint64_t requests, errors, retries, bytes_up, bytes_down;
};
/* Reads the counters without a lock (each is atomic; the set is not one instant). */
void s3_metrics_get(struct s3_client *c, struct s3_metrics *out);

/* ---- multipart uploads in progress (for bucketfs-fsck) ---- */

/* One unfinished multipart upload. Owner: the s3_upload_list holding it. */
struct s3_upload {
	char *key;
	char *upload_id;
	struct timespec initiated; /* from Initiated (whole seconds) */
};
/* One ListMultipartUploads page. Owner: the caller; free with s3_upload_list_free. */
struct s3_upload_list {
	struct s3_upload *uploads;
	size_t n;
	char *next_key_marker;       /* NULL when not truncated; pass both markers back */
	char *next_upload_id_marker; /* NULL when not truncated */
};
/* Lists unfinished multipart uploads whose key starts with prefix (nullable), starting after
 * key_marker/upload_id_marker (nullable; from the previous page). out initialised by the
 * callee. 0 or -errno. */
int s3_multipart_list(struct s3_client *c, const char *prefix, const char *key_marker,
		      const char *upload_id_marker, struct s3_upload_list *out);
void s3_upload_list_free(struct s3_upload_list *l);

/* AbortMultipartUpload; an upload that no longer exists is success. 0 or -errno. */
int s3_multipart_abort(struct s3_client *c, const char *key, const char *upload_id);

/* ---- multipart uploads driven by the caller (fs/stream_upload.c) ---- */

/* One multipart upload in progress, its parts sent by the caller in any order and from
 * several threads at once. Owner: whoever began it; s3_multipart_free releases it (after
 * s3_multipart_complete or s3_multipart_cancel: freeing alone leaves it unfinished in S3). */
struct s3_multipart;
/* Sees the bytes of a part once, in order, while they are read to be hashed, before any
 * of them is sent. Called on the sending thread, with no s3 lock held. */
typedef void (*s3_tap_fn)(void *arg, const void *buf, size_t len);
/* CreateMultipartUpload of key with meta and content_type (NULL: application/octet-stream).
 * *out owned by the caller. 0 or -errno. */
int s3_multipart_begin(struct s3_client *c, const char *key, const struct s3_meta *meta,
		       const char *content_type, struct s3_multipart **out);
/* UploadPart number (1..10000) from len bytes of fd at off (pread), with Content-MD5; the
 * ETag S3 returns must be that MD5 (else retried, then -EBADMSG). tap (nullable) sees the
 * bytes as they are hashed. Thread-safe for distinct numbers; a number sent again replaces
 * its part. 0 or -errno. */
int s3_multipart_part(struct s3_multipart *m, size_t number, int fd, uint64_t off,
		      uint64_t len, s3_tap_fn tap, void *tap_arg);
/* CompleteMultipartUpload of parts 1..nparts (each sent successfully). out (nullable) gets
 * the object's ETag (learnt with a HEAD when the server's answer carries none) and its size
 * (the sum of the parts). Not concurrent with s3_multipart_part. 0 or -errno; after a
 * failure the upload is still unfinished (cancel it). */
int s3_multipart_complete(struct s3_multipart *m, size_t nparts, struct s3_object *out);
/* AbortMultipartUpload (an upload that no longer exists is success). 0 or -errno. */
int s3_multipart_cancel(struct s3_multipart *m);
void s3_multipart_free(struct s3_multipart *m);
/* The upload's key and UploadId (valid until s3_multipart_free). */
const char *s3_multipart_key(const struct s3_multipart *m);
const char *s3_multipart_id(const struct s3_multipart *m);

#endif
