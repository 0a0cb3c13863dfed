/* s3/internal.h — internal to s3/: the client struct, one request, XML and error helpers.
 * Nothing outside s3/ (and its unit tests) includes this. */
#ifndef BFS_S3_INTERNAL_H
#define BFS_S3_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <curl/curl.h>

#include "s3/s3.h"
#include "s3/sigv4.h"

#define S3_MAX_COPY_SIZE (5ULL << 30) /* largest single CopyObject / PUT */
#define S3_MAX_PARTS 10000
#define S3_MIN_PART_SIZE (5ULL << 20)

struct s3_client {
	/* Immutable after s3_client_new: readable by any thread without a lock. */
	char *scheme;        /* "https" */
	char *host;          /* "s3.us-east-1.amazonaws.com" or "127.0.0.1:4568" */
	char *region, *bucket, *ca_file;
	bool path_style, insecure;
	int max_connections;
	uint64_t part_size;
	uint64_t copy_part_threshold; /* copies above this use UploadPartCopy (5 GiB) */
	uint64_t copy_part_size;      /* UploadPartCopy part size (512 MiB) */
	int retries;
	long connect_timeout_ms, low_speed_timeout_s, unreachable_wait_s;
	int64_t slow_ns;     /* attempts this long or longer are logged; < 0: none */

	/* Pool of idle CURL easy handles (each keeps its connections alive); pool_lock protects
	 * idle, nidle and nhandles, never held during a transfer. */
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	CURL **idle;
	int nidle;
	int nhandles; /* idle + in use, <= max_connections */

	/* Per operation, counted per attempt (s3/stats.c); lock-free. */
	struct {
		atomic_uint_least64_t requests, errors, retries;
		struct bfs_hist latency;
	} ops[S3_OP_COUNT];

	/* Credentials (s3/creds.c). creds_lock protects the creds pointer, held only to take a
	 * reference or swap it; refresh_lock serialises calls of creds_fn (held across its I/O,
	 * never while taking creds_lock for long). */
	pthread_mutex_t creds_lock;
	bool creds_lock_ready;       /* s3_creds_init ran: the locks exist */
	struct s3_cred_set *creds;
	pthread_mutex_t refresh_lock;
	s3_creds_fn creds_fn;
	void *creds_arg;
	atomic_llong creds_next_try; /* after a failed refresh: no new attempt before (time_t) */
	atomic_llong creds_last_try; /* when creds_fn was last asked (time_t) */

	/* Counters; lock-free. */
	struct {
		atomic_uint_least64_t get, put, head, list, copy, del, multipart, retries, errors;
		atomic_uint_least64_t bytes_up, bytes_down;
	} stats;
};

/* ---- creds.c ---- */

/* One set of keys in use; immutable once published, freed (wiped) by the last reference. */
struct s3_cred_set {
	atomic_int refs;
	char *access_key, *secret_key, *session_token;
	time_t expiration; /* 0 = never */
	time_t refresh_at; /* ask creds_fn from then on; 0 = never */
};
/* When to refresh keys obtained at now that expire at expiration: min(5 min, half their
 * remaining lifetime) before it; 0 for keys that do not expire. */
time_t s3_creds_refresh_at(time_t now, time_t expiration);
/* Sets up c's credentials from cfg (copies the keys). 0, -EINVAL (no keys, CR/LF in the
 * token) or -ENOMEM. */
int s3_creds_init(struct s3_client *c, const struct s3_config *cfg);
void s3_creds_destroy(struct s3_client *c);
/* The keys to sign with at wall-clock time now, refreshed first when they are due (a thread
 * finding another one refreshing goes on with the current keys unless they have expired).
 * Never NULL; release with s3_creds_put. Thread-safe. */
struct s3_cred_set *s3_creds_get(struct s3_client *c, time_t now);
void s3_creds_put(struct s3_cred_set *cs);
/* S3 refused used (ExpiredToken, InvalidAccessKeyId..., or a HEAD's bare 400/403 with keys
 * that expire) at time now: fetches new keys unless someone already has, or the provider was
 * asked less than RETRY_S ago. true if the keys now in use differ from used (worth one
 * retry). */
bool s3_creds_rejected(struct s3_client *c, struct s3_cred_set *used, time_t now);

/* ---- errmap.c ---- */

/* Errno for an HTTP status and S3 error code (code may be NULL or ""); never 0 for >= 300. */
int s3_errmap_http(long status, const char *code);
/* Errno for a transport failure. */
int s3_errmap_curl(CURLcode rc);
/* What went wrong, for the TLS failures ("TLS certificate not accepted"), else NULL; a static
 * string. */
const char *s3_errmap_curl_what(CURLcode rc);
/* Whether a response with this status/code may succeed when retried. */
bool s3_errmap_retryable_http(long status, const char *code);
bool s3_errmap_retryable_curl(CURLcode rc);
/* The server cannot be reached at all (refused, unresolvable, timed out, cut): worth waiting
 * for when the client is configured to (s3_config.unreachable_wait_s). */
bool s3_errmap_unreachable_curl(CURLcode rc);

/* Sets the calling thread's s3_last_error() message (printf-style). */
void s3_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- xml.c (parsers never fetch or expand entities; a DOCTYPE is rejected) ---- */

struct s3_xml_error {
	char code[64];
	char message[256];
	char request_id[96];
	char key[256];
};
/* 0 and *err filled if body is an <Error> document, else -ENOENT (or -EPROTO if not XML). */
int s3_xml_parse_error(const char *body, size_t len, struct s3_xml_error *err);
/* ListObjectsV2 result into out (initialised by the callee); keys url-decoded when the
 * response says EncodingType=url. 0, -EPROTO or -ENOMEM. */
int s3_xml_parse_list(const char *body, size_t len, struct s3_list_page *out);
/* Text of the first element named `name` (at any depth) under the root named `root` (NULL:
 * any root but <Error>), into out (truncated to outlen). 0, -ENOENT if missing (or the root
 * differs), -EPROTO if not XML. */
int s3_xml_find_text(const char *body, size_t len, const char *root, const char *name,
		     char *out, size_t outlen);
/* DeleteResult: first <Error> that is not NoSuchKey into err. 0 = none, 1 = found. */
int s3_xml_parse_delete_result(const char *body, size_t len, struct s3_xml_error *err);

/* ListMultipartUploadsResult page. */
struct s3_upload_list;
int s3_xml_parse_uploads(const char *body, size_t len, struct s3_upload_list *out);

/* ---- request.c ---- */

enum s3_sink { S3_SINK_MEM, S3_SINK_BUF, S3_SINK_FD };

/* One S3 request and its response. Owner: the caller's stack; s3_req_init / s3_req_free.
 * The strings it points at (key, params) must outlive s3_request(). */
struct s3_req {
	const char *method;
	const char *key;              /* NULL for a bucket-level request */
	const struct s3_pair *params; /* query parameters, raw (encoded by request.c) */
	size_t nparams;
	struct s3_pair *hdrs;         /* extra headers, all signed; owned (s3_req_header) */
	size_t nhdrs;
	int oom;                      /* an s3_req_header allocation failed */

	/* Request body: memory (body) or a range of fd; hashes set by s3_req_body_*. */
	const void *body;
	int body_fd;
	uint64_t body_off, body_len;
	char body_sha256[65];
	char body_md5_b64[25];   /* "" = no Content-MD5 header */
	char body_md5_hex[33];
	s3_tap_fn tap;           /* nullable: sees an fd body once, in order, as it is hashed */
	void *tap_arg;

	/* Response body destination for 2xx; error bodies always go to resp. */
	enum s3_sink sink;
	void *buf;        /* S3_SINK_BUF: up to cap bytes */
	size_t cap;
	uint64_t range_off; /* caller's Range start: a 200 (Range ignored) drops that many bytes */
	bool ranged;      /* set per attempt by request.c from range_off */
	uint64_t skip;    /* bytes still to drop (request.c) */
	int fd;           /* S3_SINK_FD: pwrite at fd_off + n */
	uint64_t fd_off;

	/* Validates a 2xx response: 0 ok, -EAGAIN retry, other -errno fail. Nullable. */
	int (*check)(struct s3_req *r, void *arg);
	void *check_arg;
	const char *what; /* operation name for messages, e.g. "PUT" */
	bool quiet;       /* the caller reports a failure itself (a check at mount time, whose
			   * one line is the error): logged at debug only */

	/* Response. */
	long status;
	struct s3_object obj;     /* etag, size, type, meta, last-modified from headers */
	bool have_range;          /* Content-Range seen; obj.size is then the total size */
	uint64_t range_total;
	uint64_t range_len;       /* bytes the Content-Range says the body holds (last-first+1;
	                           * 0 if it gave none) */
	char request_id[96];
	char *resp;               /* MEM body or error body, NUL-terminated; owned */
	size_t resp_len, resp_cap;
	uint64_t got;             /* bytes delivered to BUF/FD */
	uint64_t sent;            /* upload position (for the read callback) */
	int io_error;             /* -errno from pread/pwrite in a callback */
	struct s3_xml_error err;  /* parsed error body of the last failure */
};

void s3_req_init(struct s3_req *r, const char *method, const char *key);
void s3_req_free(struct s3_req *r);
/* Adds a signed header (value printf-style); failures are reported by s3_request (-ENOMEM). */
void s3_req_header(struct s3_req *r, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Adds x-amz-meta-* headers and Content-Type. -EINVAL if a value has CR/LF. */
int s3_req_meta(struct s3_req *r, const struct s3_meta *meta, const char *content_type);
/* Sets a memory body and its hashes (with_md5: also Content-MD5). */
void s3_req_body_mem(struct s3_req *r, const void *buf, size_t len, bool with_md5);
/* Sets an fd range as body: reads it once to hash (SHA-256, MD5). 0 or -errno. */
int s3_req_body_fd(struct s3_req *r, int fd, uint64_t off, uint64_t len, bool with_md5);

/* Runs the request with retries. Returns 0 for a 2xx response that passed check, else a
 * negative errno (and sets s3_last_error). r->status/err describe the last attempt. */
int s3_request(struct s3_client *c, struct s3_req *r);

/* Runs fn(arg, i) for i in [0, n) on up to min(n, max_connections) threads. Returns 0, or
 * -ENOMEM/-EAGAIN when no thread could be started (fn results are the callee's business). */
int s3_parallel(struct s3_client *c, size_t n, void (*fn)(void *arg, size_t i), void *arg);

/* First failure among parallel workers, with its message (s3_last_error is per thread). */
struct s3_first_err {
	pthread_mutex_t lock; /* protects rc and msg */
	int rc;
	char msg[4096];
};
void s3_first_err_init(struct s3_first_err *fe);
/* Records rc (< 0) and the calling thread's s3_last_error() if it is the first failure. */
void s3_first_err_record(struct s3_first_err *fe, int rc);
/* Returns the first rc (0 if none), makes its message the caller's s3_last_error(). */
int s3_first_err_finish(struct s3_first_err *fe);

/* ---- stats.c ---- */

/* The S3 operation r is (from its method, key, query parameters and x-amz-copy-source). */
enum s3_op s3_op_of(const struct s3_req *r);
/* One attempt of r (operation op) ended after ns nanoseconds of transfer: counted, and
 * logged when slow (docs/stats.md). Thread-safe. */
void s3_stats_attempt(struct s3_client *c, const struct s3_req *r, enum s3_op op, int64_t ns);

/* ---- meta.c ---- */

/* Parses one response header line into r (status line, ETag, sizes, x-amz-meta-*, ...). */
void s3_parse_header_line(struct s3_req *r, const char *line, size_t len);
/* Parses ISO-8601 "2013-09-17T18:07:53.000Z"; 0 or -EINVAL. */
int s3_parse_iso8601(const char *s, struct timespec *out);
/* Copies an ETag without surrounding quotes into out[72]. */
void s3_etag_copy(char out[72], const char *etag);

/* ---- object.c ---- */

/* "bucket/key" percent-encoded for x-amz-copy-source. malloc'd, owned by the caller. */
char *s3_copy_source(struct s3_client *c, const char *key);

/* ---- multipart.c ---- */

int s3_multipart_put_fd(struct s3_client *c, const char *key, int fd, uint64_t size,
			const char *content_type, const struct s3_meta *meta,
			struct s3_object *out);
int s3_multipart_copy(struct s3_client *c, const char *src_key, const char *dst_key,
		      const struct s3_object *src, const struct s3_meta *meta,
		      const char *content_type, const char *if_match, struct s3_object *out);

#endif
