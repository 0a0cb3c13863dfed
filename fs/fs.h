/* fs/fs.h — the FUSE file system: options, S3 metadata conventions, inode table, operations.
 * The only header tools/ include from fs/. Data flows down: fs/ calls cache/ and s3/. */
#ifndef BFS_FS_H
#define BFS_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "s3/s3.h"

/* ---- options (fs/options.c) ---- */

/* -o hmac= (fs/integrity.c, docs/integrity.md) */
enum bfs_hmac_mode { BFS_HMAC_DEFAULT = 0, BFS_HMAC_OFF, BFS_HMAC_SIGN, BFS_HMAC_VERIFY,
		     BFS_HMAC_REQUIRE };
/* One HMAC key from hmac_key_file; wiped by bfs_integrity_free_keys. */
struct bfs_hmac_key {
	unsigned char key[256];
	size_t len;
	char id[9];           /* first 8 hex digits of SHA-256(key) */
};

/* -o consistency=: when a change is in S3. CLOSE_TO_OPEN (the default): when close(),
 * fsync(), mkdir, rmdir, unlink, rename, symlink, link or mknod returns. WRITEBACK: when the
 * local journal has it; the upload follows upload_delay after the last close. */
enum bfs_consistency { BFS_CLOSE_TO_OPEN = 0, BFS_WRITEBACK };

/* Everything the command line and the environment decide. Owner: main(); strings malloc'd. */
struct bfs_options {
	char *bucket;         /* BUCKET of BUCKET[:PREFIX] */
	char *prefix;         /* "" or "some/prefix/" (always ends in '/') */
	char *mountpoint;     /* absolute path */
	char *endpoint;       /* -o endpoint= | $AWS_ENDPOINT_URL_S3 | $AWS_ENDPOINT_URL | the profile's
	                       * s3 endpoint_url, endpoint_url in ~/.aws/config | NULL (AWS) */
	char *region;         /* -o region= | $AWS_REGION | $AWS_DEFAULT_REGION | the profile's region
	                       * in ~/.aws/config | "us-east-1" */
	bool path_style;      /* -o path_style */
	bool insecure;        /* -o no_verify_ssl: TLS verification off (default on) */
	char *ca_file;        /* -o ca_file= */
	char *profile;        /* -o profile= | $AWS_PROFILE | "default" */
	bool profile_named;   /* profile came from -o profile= or $AWS_PROFILE: it must exist */
	bool profile_option;  /* from -o profile=: wins over $AWS_ACCESS_KEY_ID (as --profile) */
	char *imds_endpoint;  /* -o imds_endpoint= | $AWS_EC2_METADATA_SERVICE_ENDPOINT | NULL
	                       * (http://169.254.169.254) */
	char *passwd_file;    /* -o passwd_file= (s3fs style KEY:SECRET, must not be group/other readable) */
	char *cache_dir;      /* -o cache_dir= | ~/.cache/bucketfs/<host>/<bucket> | /var/cache/bucketfs/<host>/<bucket> for root */
	double stat_ttl;      /* -o stat_ttl=SECONDS (default 5): attribute, entry and listing cache */
	bool uid_set, gid_set;
	uid_t uid;            /* -o uid= owner of objects without x-amz-meta-uid (default: mounting user) */
	gid_t gid;            /* -o gid= */
	mode_t umask;         /* -o umask= (octal) for objects without x-amz-meta-mode (default 022) */
	enum bfs_consistency consistency; /* -o consistency= (docs/consistency.md) */
	double upload_delay;  /* -o upload_delay=SECONDS after last close before uploading (default 0.5;
	                       * writeback mode) */
	double neg_ttl;       /* -o neg_ttl=SECONDS: how long the kernel trusts "no such name" (default
	                       * 1 close-to-open, stat_ttl writeback); < 0 until parsed */
	uint64_t block_size;  /* -o block_size=SIZE (cache block, default 1M) */
	uint64_t cache_size;  /* -o cache_size=SIZE (0 = 10% of disk) */
	unsigned cache_ttl;   /* -o cache_ttl=SECONDS (0 = none) */
	unsigned timeout;     /* -o timeout=SECONDS: a request under 1 KiB/s this long is retried (30) */
	unsigned server_wait; /* -o server_wait=SECONDS: calls wait for an unreachable server (60) */
	unsigned lock_wait;   /* -o lock_wait=SECONDS for a cache_dir held by an unmounting daemon (300) */
	uint64_t part_size;   /* -o part_size=SIZE (multipart part, default 8M) */
	uint64_t copy_limit;  /* -o copy_limit=SIZE (largest one-request copy, default 5G) */
	uint64_t readahead;   /* -o readahead=SIZE: most bytes fetched ahead of a sequential reader (64M; 0 off) */
	int max_connections;  /* -o parallel=N (default 16) */
	unsigned stream_budget; /* -o stream_budget=N: parts of files being written sent at once in
	                       * the background, per mount (default 4; 0: no streaming) */
	char *hmac_key_file;  /* -o hmac_key_file= (must not be group/other accessible) */
	enum bfs_hmac_mode hmac_mode; /* -o hmac=; DEFAULT until bfs_integrity_load_keys */
	struct bfs_hmac_key *hmac_keys; /* [0] signs, all verify; owned; set by bfs_integrity_load_keys */
	size_t nhmac_keys;
	int log_level;        /* -o log_level=error|warn|info|debug: a BFS_LOG_* of util/util.h (default
	                       * info, debug with -d); 0 until parsed */
	long slow_ms;         /* -o slow_ms=N: log FUSE calls and S3 requests taking N ms or more
	                       * (info level, docs/stats.md); -1 = off (the default) */
	bool foreground;      /* -f */
	bool debug;           /* -d: foreground + debug log */
	bool allow_other;     /* -o allow_other */
	bool read_only;       /* -o ro */
	char **fuse_argv;     /* remaining FUSE options, for fuse_session_new; NULL-terminated */
	int fuse_argc;
};

/* Parses argv (BUCKET[:PREFIX] MOUNTPOINT [-f] [-d] [-o opts]) and the environment into o.
 * On error returns -EINVAL and writes one line (no trailing newline) into err.
 * Returns 1 (and prints usage/version to stdout) for -h/--help/-V/--version. */
int bfs_options_parse(int argc, char **argv, struct bfs_options *o, char *err, size_t errlen);
void bfs_options_free(struct bfs_options *o);

/* ---- credentials (fs/creds.c) ---- */

/* Where new temporary keys come from (credential_process, instance metadata). Opaque. */
struct bfs_cred_source;
/* Access key, secret and token. Owner: caller; bfs_creds_free wipes and frees. */
struct bfs_creds {
	char *access_key, *secret_key, *session_token;
	time_t expiration;              /* 0: they do not expire */
	struct bfs_cred_source *source; /* NULL for static keys; owned; the S3 clients made with
	                                 * bfs_s3_config use it, so it outlives them */
};
/* Order: $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY[/$AWS_SESSION_TOKEN], then
 * ${AWS_SHARED_CREDENTIALS_FILE:-~/.aws/credentials} [profile], then passwd_file (also when
 * set explicitly it wins over the file, not over the environment).  A credentials or passwd file
 * readable by group/other is refused (-EACCES with a message naming the file).
 * -ENOENT with a message when none is found. err gets one line. */
int bfs_creds_load(const struct bfs_options *o, struct bfs_creds *out, char *err, size_t errlen);
void bfs_creds_free(struct bfs_creds *c);
/* The S3 client settings the options and credentials give (strings borrowed from both; with
 * a source, cfg->creds_fn asks it for new keys before they expire). */
void bfs_s3_config(const struct bfs_options *o, const struct bfs_creds *cr,
		   struct s3_config *cfg);

/* ---- S3 metadata conventions (fs/meta.c), compatible with s3fs-fuse ---- */

/* Defaults for objects that carry no ownership/mode metadata. */
struct bfs_defaults {
	uid_t uid;
	gid_t gid;
	mode_t umask;
};

/* Fills st (mode, uid, gid, size, times, nlink=1) from a HEAD result of key.
 * is_dir_hint: the object is a "dir/" marker or an implicit directory (prefix only; o may be
 * NULL then). Reads x-amz-meta-mode/uid/gid/mtime/ctime/atime as s3fs writes them, rclone's
 * float "mtime", GCS's goog-reserved-posix-{mode,uid,gid} and goog-reserved-file-mtime;
 * falls back to Last-Modified and the defaults. Symlinks: S_IFLNK from mode. */
void bfs_meta_to_stat(const struct s3_object *o, bool is_dir_hint, const struct bfs_defaults *d,
		      struct stat *st);

/* Writes mode, uid, gid, mtime, ctime, atime into m the way s3fs does
 * (mode decimal with type bits; times "<sec>" or "<sec>.<9-digit nsec>"). */
int bfs_meta_from_stat(const struct stat *st, struct s3_meta *m);
/* Sets one time header ("mtime", "ctime", "atime") of m to t, as s3fs writes it. */
int bfs_meta_set_time(struct s3_meta *m, const char *name, const struct timespec *t);

/* Parses an s3fs time value ("sec", "sec.nsec" with up to 9 digits, or rclone's float). */
int bfs_meta_parse_time(const char *s, struct timespec *ts);

/* Extended attributes, stored in x-amz-meta-xattr in s3fs's encoding. Same semantics as
 * getxattr(2) etc.: get returns the length (size 0 = just the length), -ENODATA, -ERANGE. */
ssize_t bfs_xattr_get(const struct s3_meta *m, const char *name, void *buf, size_t size);
int bfs_xattr_set(struct s3_meta *m, const char *name, const void *val, size_t len, int flags);
ssize_t bfs_xattr_list(const struct s3_meta *m, char *buf, size_t size);
int bfs_xattr_remove(struct s3_meta *m, const char *name);

/* ---- the file system (fs/fs.c, inode.c, ops_*.c) ---- */

struct bfs_fs; /* opaque; shared by all FUSE threads */

/* Live statistics (docs/stats.md): extended attributes of the mount root that only the
 * mounting user and root may read, listed by no listxattr. JSON and Prometheus text. */
#define BFS_STATS_XATTR "user.bucketfs.stats"
#define BFS_STATS_XATTR_PROM "user.bucketfs.stats.prom"

#endif
