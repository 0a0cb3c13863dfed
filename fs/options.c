/* fs/options.c — the command line: BUCKET[:PREFIX] MOUNTPOINT [-f] [-d] [-o opt[,opt...]].
 *
 * bucketfs's own -o options are parsed into struct bfs_options. Options libfuse 3 knows are
 * passed on in fuse_argv; options mount(8) and fstab add that mean nothing here (_netdev,
 * nofail, defaults, relatime, x-systemd.*...) are accepted and ignored. Anything else is an
 * error with one line naming the option and what it wants. */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/util.h"

#ifndef BFS_VERSION
#define BFS_VERSION "0.1.0"
#endif

#define MAX_SECONDS 1e9

/* Passed to fuse_session_new as -o NAME (the list libfuse 3.14 accepts). */
static const char *const fuse_flags[] = {
	"allow_root", "default_permissions", "auto_unmount", "rw", "nosuid", "suid", "nodev",
	"dev", "noexec", "exec", "noatime", "atime", "dirsync", "sync", "async", "blkdev", NULL,
};
/* Passed on as -o NAME=VALUE. */
static const char *const fuse_values[] = {
	"fsname", "subtype", "max_read", "blksize", "context", "fscontext", "defcontext",
	"rootcontext", NULL,
};
/* From mount(8), fstab or mount.fuse3; no meaning for bucketfs. */
static const char *const ignored[] = {
	"_netdev", "nofail", "auto", "noauto", "user", "nouser", "users", "owner", "group",
	"defaults", "relatime", "norelatime", "strictatime", "nostrictatime", "diratime",
	"nodiratime", "lazytime", "nolazytime", "iversion", "noiversion", "loud", "silent",
	NULL,
};

static const char usage_text[] =
	"usage: bucketfs BUCKET[:PREFIX] MOUNTPOINT [-f] [-d] [-o OPTION[,OPTION...]]\n"
	"       bucketfs -u MOUNTPOINT\n"
	"\n"
	"Mounts an S3 bucket (or the part of it under PREFIX/) as a directory.\n"
	"-u (--unmount) unmounts it and waits until every pending upload is in S3, showing\n"
	"what is left.\n"
	"\n"
	"  -f                   stay in the foreground\n"
	"  -d, -o debug         foreground and debug log (and FUSE's debug output)\n"
	"  -h, --help           this help\n"
	"  -V, --version        version\n"
	"\n"
	"S3:\n"
	"  endpoint=URL         S3 endpoint, e.g. http://127.0.0.1:4568 (default\n"
	"                       $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, the profile's s3\n"
	"                       endpoint_url or endpoint_url in ~/.aws/config, else AWS)\n"
	"  region=NAME          signing region (default $AWS_REGION, $AWS_DEFAULT_REGION, the\n"
	"                       profile's region in ~/.aws/config, else us-east-1)\n"
	"  path_style           http://host/bucket/key instead of http://bucket.host/key\n"
	"  no_verify_ssl        do not verify the server's TLS certificate\n"
	"  ca_file=PATH         CA certificates to verify the server with\n"
	"  profile=NAME         profile in ~/.aws/credentials and ~/.aws/config (default\n"
	"                       $AWS_PROFILE, else default); a named profile must exist, and its\n"
	"                       keys (or credential_process, renewed before they expire) win\n"
	"                       over $AWS_ACCESS_KEY_ID\n"
	"  passwd_file=PATH     s3fs-style KEY:SECRET or BUCKET:KEY:SECRET file (mode 600)\n"
	"  imds_endpoint=URL    EC2 instance metadata service, asked for the instance role's keys\n"
	"                       when nothing else has any (default\n"
	"                       $AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254;\n"
	"                       AWS_EC2_METADATA_DISABLED=true: not asked)\n"
	"  parallel=N           concurrent S3 requests (default 16)\n"
	"  part_size=SIZE       multipart upload part size (default 8M)\n"
	"  stream_budget=N      close-to-open: a file written sequentially past part_size is\n"
	"                       uploaded while it is written, at most N parts at once per\n"
	"                       mount; close waits for the tail only (default 4; 0: off)\n"
	"  copy_limit=SIZE      largest object the server copies in one request (rename,\n"
	"                       chmod); larger ones are copied in parts (default 5G)\n"
	"  timeout=SECONDS      a request moving under 1 KiB/s this long is cut and retried\n"
	"                       (default 30)\n"
	"  server_wait=SECONDS  while the server cannot be reached, calls wait this long for\n"
	"                       it before they fail (default 60; not at mount time)\n"
	"  hmac_key_file=PATH   HMAC-SHA256 keys (mode 600; first line signs, all verify)\n"
	"  hmac=MODE            off, sign, verify or require (default verify with a key, else off)\n"
	"\n"
	"Files:\n"
	"  uid=N, gid=N         owner of objects without x-amz-meta-uid/gid (default: you)\n"
	"  umask=OCTAL          mode mask for objects without x-amz-meta-mode (default 022)\n"
	"  consistency=MODE     close-to-open (default): close(), fsync(), mkdir, rename, ...\n"
	"                       return once S3 has the change; writeback: once the local\n"
	"                       journal has it, uploaded upload_delay after the last close\n"
	"  stat_ttl=SECONDS     how long attributes and listings are trusted (default 5)\n"
	"  neg_ttl=SECONDS      how long a name found missing stays missing (default 1 with\n"
	"                       close-to-open, stat_ttl with writeback)\n"
	"  upload_delay=SECONDS writeback: upload this long after the last close (default 0.5)\n"
	"  sync_close           the same as consistency=close-to-open\n"
	"\n"
	"Cache:\n"
	"  cache_dir=PATH       default ~/.cache/bucketfs/HOST/BUCKET (root: /var/cache/bucketfs/...)\n"
	"  cache_size=SIZE      clean blocks kept (default 0 = 10% of the cache's file system)\n"
	"  cache_ttl=SECONDS    drop cached blocks older than this (default 0 = never)\n"
	"  block_size=SIZE      cache block size (default 1M)\n"
	"  readahead=SIZE       most bytes fetched ahead of a sequential reader, in parallel\n"
	"                       (default 64M; 0: off)\n"
	"  lock_wait=SECONDS    wait this long for an unmounted daemon still uploading from the\n"
	"                       same cache_dir (default 300)\n"
	"\n"
	"Logging (stderr with -f or -d, else syslog):\n"
	"  log_level=LEVEL      error, warn, info or debug (default info; debug with -d)\n"
	"  slow_ms=N            log (at info) every FUSE call and S3 request that takes N ms\n"
	"                       or more, with its duration; 0 logs every call (default: off)\n"
	"\n"
	"FUSE, passed on: allow_other, allow_root, default_permissions, auto_unmount, ro, rw,\n"
	"nosuid, suid, nodev, dev, noexec, exec, noatime, atime, dirsync, sync, async, blkdev,\n"
	"fsname=NAME (default BUCKET[:PREFIX]), subtype=NAME (default bucketfs), max_read=N,\n"
	"blksize=N, context=, fscontext=, defcontext=, rootcontext= (SELinux labels).\n"
	"\n"
	"mount(8) and fstab, accepted and ignored: _netdev, nofail, auto, noauto, user, nouser,\n"
	"users, owner, group, defaults, relatime, norelatime, strictatime, nostrictatime,\n"
	"diratime, nodiratime, lazytime, nolazytime, iversion, noiversion, loud, silent,\n"
	"comment=TEXT, x-* (x-systemd.automount, ...).\n"
	"\n"
	"Unmount with: fusermount3 -u MOUNTPOINT (or bucketfs -u MOUNTPOINT, or umount)\n"
	"Live statistics: bucketfs-stat MOUNTPOINT (--watch, --json, --prom)\n";

struct parse {
	struct bfs_options *o;
	char *err;
	size_t errlen;
	bool fsname_set, subtype_set;
};

static int fail(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct parse *p, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(p->err, p->errlen, "bucketfs: ");
	if (n < 0 || (size_t)n >= p->errlen)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int bad_value(struct parse *p, const char *name, const char *value, const char *want)
{
	return fail(p, "bad value for %s: '%s' (want %s)", name, value, want);
}

static bool in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

static int fuse_arg_add(struct bfs_options *o, const char *arg)
{
	char **v = realloc(o->fuse_argv, (size_t)(o->fuse_argc + 2) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	o->fuse_argv = v;
	if (!(v[o->fuse_argc] = strdup(arg)))
		return -ENOMEM;
	v[++o->fuse_argc] = NULL;
	return 0;
}

static int fuse_opt_add(struct bfs_options *o, const char *opt)
{
	int rc = fuse_arg_add(o, "-o");
	return rc ? rc : fuse_arg_add(o, opt);
}

static int set_str(char **dst, const char *s)
{
	char *copy = strdup(s);
	if (!copy)
		return -ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

static const char *home_dir(void)
{
	const char *h = getenv("HOME");
	if (h && *h == '/')
		return h;
	struct passwd *pw = getpwuid(getuid());
	return pw && pw->pw_dir ? pw->pw_dir : NULL;
}

/* path made absolute ("~/" is the home directory): the daemon runs in "/". malloc'd. */
static char *abs_path(const char *path)
{
	char *out = NULL;
	if (path[0] == '/')
		return strdup(path);
	if (path[0] == '~' && (path[1] == '/' || path[1] == '\0')) {
		const char *h = home_dir();
		if (h && asprintf(&out, "%s%s", h, path + 1) < 0)
			out = NULL;
		return out;
	}
	char *cwd = getcwd(NULL, 0);
	if (!cwd)
		return NULL;
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	if (asprintf(&out, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, path) < 0)
		out = NULL;
	free(cwd);
	return out;
}

/* A number of seconds: digits with an optional fraction, 0..MAX_SECONDS. */
static bool parse_seconds(const char *s, double *out)
{
	size_t n = strlen(s);
	if (n == 0 || strspn(s, "0123456789.") != n || strchr(s, '.') != strrchr(s, '.') ||
	    strspn(s, ".") == n)
		return false;
	double v = strtod(s, NULL);
	if (!isfinite(v) || v < 0 || v > MAX_SECONDS)
		return false;
	*out = v;
	return true;
}

/* Decimal digits only, at most max. */
static bool parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	if (!*s || strspn(s, "0123456789") != strlen(s))
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, NULL, 10);
	if (errno || v > max)
		return false;
	*out = v;
	return true;
}

/* "http[s]://host[:port][/path]" without trailing slashes into *dst. */
static int set_endpoint(struct parse *p, char **dst, const char *name, const char *url)
{
	const char *rest = NULL;
	if (strncmp(url, "http://", 7) == 0)
		rest = url + 7;
	else if (strncmp(url, "https://", 8) == 0)
		rest = url + 8;
	if (!rest || !*rest || *rest == '/' || strpbrk(url, " \t\"'<>\\"))
		return bad_value(p, name, url, "a URL like https://s3.example.com or http://127.0.0.1:4568");
	size_t n = strlen(url);
	while (n > 0 && url[n - 1] == '/')
		n--;
	char *copy = strndup(url, n);
	if (!copy)
		return -ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

/* bucketfs options that take a value (FUSE's are in fuse_values). */
static const char *const valued[] = {
	"endpoint", "region", "profile", "ca_file", "passwd_file", "cache_dir", "stat_ttl",
	"upload_delay", "uid", "gid", "umask", "block_size", "cache_size", "cache_ttl",
	"part_size", "copy_limit", "parallel", "hmac_key_file", "hmac", "lock_wait", "timeout",
	"server_wait", "consistency", "neg_ttl", "readahead", "log_level", "slow_ms",
	"imds_endpoint", "stream_budget", NULL,
};

/* A FUSE option with a value: checked where FUSE would only fail later, passed on. */
static int fuse_value(struct parse *p, const char *name, const char *value)
{
	unsigned long long u;
	if (strcmp(name, "fsname") == 0)
		p->fsname_set = true;
	if (strcmp(name, "subtype") == 0)
		p->subtype_set = true;
	if ((strcmp(name, "max_read") == 0 || strcmp(name, "blksize") == 0) &&
	    (!parse_uint(value, UINT_MAX, &u) || u == 0))
		return bad_value(p, name, value, "a number of bytes");
	char *full;
	if (asprintf(&full, "%s=%s", name, value) < 0)
		return -ENOMEM;
	int rc = fuse_opt_add(p->o, full);
	free(full);
	return rc;
}

/* One of the valued bucketfs options; value is non-empty. */
static int set_value(struct parse *p, const char *name, const char *value)
{
	struct bfs_options *o = p->o;
	unsigned long long u;
	uint64_t size;

	if (strcmp(name, "endpoint") == 0)
		return set_endpoint(p, &o->endpoint, name, value);
	if (strcmp(name, "imds_endpoint") == 0)
		return set_endpoint(p, &o->imds_endpoint, name, value);
	if (strcmp(name, "region") == 0)
		return set_str(&o->region, value);
	if (strcmp(name, "profile") == 0) {
		o->profile_named = o->profile_option = true;
		return set_str(&o->profile, value);
	}

	char **path = strcmp(name, "ca_file") == 0 ? &o->ca_file
		    : strcmp(name, "passwd_file") == 0 ? &o->passwd_file
		    : strcmp(name, "cache_dir") == 0 ? &o->cache_dir
		    : strcmp(name, "hmac_key_file") == 0 ? &o->hmac_key_file : NULL;
	if (path) {
		char *abs = abs_path(value);
		if (!abs)
			return fail(p, "cannot make %s absolute: '%s'", name, value);
		free(*path);
		*path = abs;
		return 0;
	}

	double *fsecs = strcmp(name, "stat_ttl") == 0 ? &o->stat_ttl
		     : strcmp(name, "upload_delay") == 0 ? &o->upload_delay
		     : strcmp(name, "neg_ttl") == 0 ? &o->neg_ttl : NULL;
	if (fsecs) {
		if (!parse_seconds(value, fsecs))
			return bad_value(p, name, value, "a number of seconds >= 0");
		return 0;
	}
	if (strcmp(name, "log_level") == 0) {
		enum bfs_log_level level;
		if (bfs_log_level_parse(value, &level))
			return bad_value(p, name, value, "error, warn, info or debug");
		o->log_level = (int)level;
		return 0;
	}
	if (strcmp(name, "slow_ms") == 0) {
		if (!parse_uint(value, 86400000, &u))
			return bad_value(p, name, value, "a whole number of milliseconds");
		o->slow_ms = (long)u;
		return 0;
	}
	if (strcmp(name, "consistency") == 0) {
		if (strcmp(value, "close-to-open") == 0)
			o->consistency = BFS_CLOSE_TO_OPEN;
		else if (strcmp(value, "writeback") == 0)
			o->consistency = BFS_WRITEBACK;
		else
			return bad_value(p, name, value, "close-to-open or writeback");
		return 0;
	}
	if (strcmp(name, "uid") == 0) {
		if (!parse_uint(value, UINT32_MAX - 1, &u))
			return bad_value(p, name, value, "a numeric user id");
		o->uid = (uid_t)u;
		o->uid_set = true;
		return 0;
	}
	if (strcmp(name, "gid") == 0) {
		if (!parse_uint(value, UINT32_MAX - 1, &u))
			return bad_value(p, name, value, "a numeric group id");
		o->gid = (gid_t)u;
		o->gid_set = true;
		return 0;
	}
	if (strcmp(name, "umask") == 0) {
		if (strlen(value) > 4 || strspn(value, "01234567") != strlen(value) ||
		    strtoul(value, NULL, 8) > 0777)
			return bad_value(p, name, value, "an octal mask from 000 to 777, like 022");
		o->umask = (mode_t)strtoul(value, NULL, 8);
		return 0;
	}
	/* whole numbers of seconds */
	static const struct {
		const char *name;
		unsigned long min, max;
		size_t at;               /* offsetof the unsigned in struct bfs_options */
		const char *what;
	} secs[] = {
		{ "cache_ttl", 0, UINT_MAX, offsetof(struct bfs_options, cache_ttl),
		  "a whole number of seconds, 0 = never" },
		{ "server_wait", 0, 86400, offsetof(struct bfs_options, server_wait),
		  "a whole number of seconds up to 86400" },
		{ "timeout", 1, 3600, offsetof(struct bfs_options, timeout),
		  "a whole number of seconds from 1 to 3600" },
		{ "lock_wait", 0, 86400, offsetof(struct bfs_options, lock_wait),
		  "a whole number of seconds up to 86400" },
	};
	for (size_t i = 0; i < sizeof(secs) / sizeof(secs[0]); i++) {
		if (strcmp(name, secs[i].name) != 0)
			continue;
		if (!parse_uint(value, secs[i].max, &u) || u < secs[i].min)
			return bad_value(p, name, value, secs[i].what);
		*(unsigned *)((char *)o + secs[i].at) = (unsigned)u;
		return 0;
	}
	if (strcmp(name, "hmac") == 0) {
		static const char *const modes[] = { "off", "sign", "verify", "require" };
		for (int i = 0; i < 4; i++)
			if (strcmp(value, modes[i]) == 0) {
				o->hmac_mode = (enum bfs_hmac_mode)(BFS_HMAC_OFF + i);
				return 0;
			}
		return bad_value(p, name, value, "off, sign, verify or require");
	}
	if (strcmp(name, "stream_budget") == 0) {
		if (!parse_uint(value, 1000, &u))
			return bad_value(p, name, value, "a number of parts from 0 (off) to 1000");
		o->stream_budget = (unsigned)u;
		return 0;
	}
	if (strcmp(name, "parallel") == 0) {
		if (!parse_uint(value, 1000, &u) || u == 0)
			return bad_value(p, name, value, "a number of connections from 1 to 1000");
		o->max_connections = (int)u;
		return 0;
	}
	if (bfs_parse_size(value, &size) != 0)
		return bad_value(p, name, value, "a size like 4096, 512K, 8M or 1G");
	if (strcmp(name, "block_size") == 0) {
		if (size < 4096 || size > (64u << 20) || (size & (size - 1)))
			return bad_value(p, name, value, "a power of two from 4K to 64M");
		o->block_size = size;
	} else if (strcmp(name, "part_size") == 0) {
		if (size < (5u << 20) || size > (5ull << 30))
			return bad_value(p, name, value, "a size from 5M to 5G (S3's part limits)");
		o->part_size = size;
	} else if (strcmp(name, "copy_limit") == 0) {
		if (size < (5u << 20) || size > (5ull << 30))
			return bad_value(p, name, value, "a size from 5M to 5G");
		o->copy_limit = size;
	} else if (strcmp(name, "readahead") == 0) {
		if (size > (1ull << 30))
			return bad_value(p, name, value, "a size up to 1G (0: off)");
		o->readahead = size;
	} else {
		o->cache_size = size;
	}
	return 0;
}

/* Handles one -o option (name[=value]). */
static int handle_opt(struct parse *p, char *opt)
{
	struct bfs_options *o = p->o;
	char *value = strchr(opt, '=');
	if (value)
		*value++ = '\0';
	const char *name = opt;

	if (!*name)
		return value ? fail(p, "empty option name in '=%s'", value) : 0;

	struct { const char *name; bool *field; } flags[] = {
		{"path_style", &o->path_style}, {"no_verify_ssl", &o->insecure},
		{"allow_other", &o->allow_other}, {"ro", &o->read_only},
	};
	if (strcmp(name, "sync_close") == 0 && !value) {
		o->consistency = BFS_CLOSE_TO_OPEN; /* what it asked for before there were modes */
		return 0;
	}
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		if (strcmp(name, flags[i].name) != 0)
			continue;
		if (value)
			return fail(p, "option %s takes no value (got '%s')", name, value);
		*flags[i].field = true;
		/* allow_other and ro are also FUSE's business. */
		if (strcmp(name, "allow_other") == 0 || strcmp(name, "ro") == 0)
			return fuse_opt_add(o, name);
		return 0;
	}
	if (strcmp(name, "debug") == 0 && !value) {
		o->debug = o->foreground = true;
		return 0;
	}
	if (in_list(fuse_flags, name)) {
		if (value)
			return fail(p, "option %s takes no value (got '%s')", name, value);
		if (strcmp(name, "rw") == 0)
			o->read_only = false;
		return fuse_opt_add(o, name);
	}
	if (in_list(ignored, name) || strncmp(name, "x-", 2) == 0 || strcmp(name, "comment") == 0)
		return 0;

	if (!in_list(valued, name) && !in_list(fuse_values, name))
		return fail(p, "unknown option '%s' (see bucketfs --help)", name);
	if (!value || !*value)
		return fail(p, "option %s needs a value (%s=...)", name, name);
	if (in_list(fuse_values, name))
		return fuse_value(p, name, value);
	return set_value(p, name, value);
}

/* Splits a -o argument at commas and handles each option. */
static int handle_opts(struct parse *p, const char *arg)
{
	char *copy = strdup(arg);
	if (!copy)
		return -ENOMEM;
	int rc = 0;
	char *save = NULL;
	for (char *opt = strtok_r(copy, ",", &save); opt && !rc; opt = strtok_r(NULL, ",", &save))
		rc = handle_opt(p, opt);
	free(copy);
	return rc;
}

/* S3's bucket naming rules: 3-63 of [a-z0-9.-], letter or digit at both ends, no "..",
 * not an IPv4 address. */
static bool bucket_ok(const char *b)
{
	size_t n = strlen(b);
	if (n < 3 || n > 63 || strspn(b, "abcdefghijklmnopqrstuvwxyz0123456789.-") != n)
		return false;
	if (!isalnum((unsigned char)b[0]) || !isalnum((unsigned char)b[n - 1]) || strstr(b, ".."))
		return false;
	unsigned a1, a2, a3, a4;
	char extra;
	return sscanf(b, "%u.%u.%u.%u%c", &a1, &a2, &a3, &a4, &extra) != 4;
}

/* BUCKET[:PREFIX] into o->bucket and o->prefix ("" or "a/b/"). */
static int set_bucket(struct parse *p, const char *arg)
{
	struct bfs_options *o = p->o;
	const char *colon = strchr(arg, ':');
	size_t blen = colon ? (size_t)(colon - arg) : strlen(arg);
	if (!(o->bucket = strndup(arg, blen)))
		return -ENOMEM;
	if (!bucket_ok(o->bucket))
		return fail(p, "bad bucket name '%s' (want 3-63 lowercase letters, digits, '.' "
			    "and '-', starting and ending with a letter or digit)", o->bucket);

	const char *pre = colon ? colon + 1 : "";
	while (*pre == '/')
		pre++;
	size_t n = strlen(pre);
	while (n > 0 && pre[n - 1] == '/')
		n--;
	free(o->prefix);
	if (!(o->prefix = malloc(n + 2)))
		return -ENOMEM;
	memcpy(o->prefix, pre, n);
	o->prefix[n] = '\0';
	if (n) {
		/* Each component must be a usable name. */
		for (const char *c = o->prefix; c; ) {
			const char *slash = strchr(c, '/');
			size_t len = slash ? (size_t)(slash - c) : strlen(c);
			if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && !strncmp(c, "..", 2)))
				return fail(p, "bad prefix '%s' (empty, '.' or '..' path component)",
					    colon + 1);
			c = slash ? slash + 1 : NULL;
		}
		strcat(o->prefix, "/");
	}
	return 0;
}

static int set_mountpoint(struct parse *p, const char *arg)
{
	struct stat st;
	if (stat(arg, &st) != 0) {
		if (errno == ENOTCONN)
			return fail(p, "mountpoint %s: %s (a dead mount? fusermount3 -u %s)", arg,
				    strerror(errno), arg);
		return fail(p, "mountpoint %s: %s", arg, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return fail(p, "mountpoint %s is not a directory", arg);
	if (!(p->o->mountpoint = realpath(arg, NULL)))
		return fail(p, "mountpoint %s: %s", arg, strerror(errno));
	return 0;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

/* ~/.cache/bucketfs/HOST/BUCKET[:PREFIX], or /var/cache/bucketfs/HOST/BUCKET[:PREFIX] for root. HOST is the
 * endpoint's host (with "_PORT"), or AWS's regional endpoint. */
static int default_cache_dir(struct bfs_options *o)
{
	char *host = NULL;
	int rc = -ENOMEM;

	if (o->endpoint) {
		const char *h = strstr(o->endpoint, "://") + 3;
		host = strndup(h, strcspn(h, "/"));
	} else if (asprintf(&host, "s3.%s.amazonaws.com", o->region) < 0) {
		host = NULL;
	}
	if (!host)
		return -ENOMEM;
	for (char *c = host; *c; c++)
		*c = *c == ':' ? '_' : (char)tolower((unsigned char)*c);

	/* each BUCKET:PREFIX mount has a cache of its own ('/' in the prefix as %2F) */
	char *pfx = bfs_uri_encode(o->prefix, 0);
	if (!pfx) {
		free(host);
		return -ENOMEM;
	}
	const char *home = geteuid() == 0 ? NULL : home_dir();
	int n = home ? asprintf(&o->cache_dir, "%s/.cache/bucketfs/%s/%s%s%s", home, host,
				o->bucket, pfx[0] ? ":" : "", pfx)
		     : asprintf(&o->cache_dir, "/var/cache/bucketfs/%s/%s%s%s", host, o->bucket,
				pfx[0] ? ":" : "", pfx);
	free(pfx);
	if (n < 0)
		o->cache_dir = NULL;
	else
		rc = 0;
	free(host);
	return rc;
}

/* fsname=BUCKET[:PREFIX] with ',' and '\\' escaped for libfuse's option parser. */
static int default_fsname(struct bfs_options *o)
{
	size_t plen = strlen(o->prefix);
	char *s = malloc(strlen(o->bucket) + 2 * plen + 16), *q = s;
	if (!s)
		return -ENOMEM;
	q += sprintf(q, "fsname=%s", o->bucket);
	if (plen) {
		*q++ = ':';
		for (size_t i = 0; i + 1 < plen; i++) { /* without the trailing '/' */
			if (o->prefix[i] == ',' || o->prefix[i] == '\\')
				*q++ = '\\';
			*q++ = o->prefix[i];
		}
	}
	*q = '\0';
	int rc = fuse_opt_add(o, s);
	free(s);
	return rc;
}

static bool env_true(const char *name)
{
	const char *v = env(name);
	return v && strcasecmp(v, "true") == 0;
}

/* Endpoint, region and addressing style: -o > environment > the profile in the config file. */
static int config_fill(struct parse *p, const struct bfs_aws_profile *prof)
{
	struct bfs_options *o = p->o;
	bool ignore = env_true("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") || prof->ignore_endpoints;
	const char *e;
	int rc;

	if (!o->endpoint && !ignore) {
		char what[PATH_MAX + 64];
		const char *name = env("AWS_ENDPOINT_URL_S3") ? "AWS_ENDPOINT_URL_S3"
				 : env("AWS_ENDPOINT_URL") ? "AWS_ENDPOINT_URL" : NULL;
		const char *url = name ? env(name) : NULL;
		if (!url && (url = prof->s3_endpoint_url ? prof->s3_endpoint_url
						     : prof->endpoint_url)) {
			snprintf(what, sizeof(what), "endpoint_url in %s", prof->config_path);
			name = what;
		}
		if (url && (rc = set_endpoint(p, &o->endpoint, name, url)))
			return rc;
	}
	if (!o->region && (e = env("AWS_REGION") ? env("AWS_REGION") : env("AWS_DEFAULT_REGION")))
		if ((rc = set_str(&o->region, e)))
			return rc;
	if (!o->region && prof->region && (rc = set_str(&o->region, prof->region)))
		return rc;
	if (!o->region && (rc = set_str(&o->region, "us-east-1")))
		return rc;
	if (prof->path_style)
		o->path_style = true;
	return 0;
}

static int parse(struct parse *p, int argc, char **argv)
{
	struct bfs_options *o = p->o;
	const char *positional[2] = {NULL, NULL};
	int npos = 0, rc;
	bool opts_done = false;

	if ((rc = fuse_arg_add(o, argc > 0 && argv[0] ? argv[0] : "bucketfs")))
		return rc;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (opts_done || a[0] != '-' || a[1] == '\0') {
			if (npos == 2)
				return fail(p, "unexpected argument '%s' (usage: bucketfs "
					    "BUCKET[:PREFIX] MOUNTPOINT [-o options])", a);
			positional[npos++] = a;
		} else if (!strcmp(a, "--")) {
			opts_done = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_text, stdout);
			return 1;
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("bucketfs %s\n", BFS_VERSION);
			return 1;
		} else if (!strcmp(a, "-f")) {
			o->foreground = true;
		} else if (!strcmp(a, "-d")) {
			o->foreground = o->debug = true;
		} else if (!strcmp(a, "-o")) {
			if (++i == argc)
				return fail(p, "-o needs an argument");
			if ((rc = handle_opts(p, argv[i])))
				return rc;
		} else if (!strncmp(a, "-o", 2)) {
			if ((rc = handle_opts(p, a + 2)))
				return rc;
		} else {
			return fail(p, "unknown argument '%s' (see bucketfs --help)", a);
		}
	}
	if (npos < 1)
		return fail(p, "missing BUCKET (usage: bucketfs BUCKET[:PREFIX] MOUNTPOINT "
			    "[-o options])");
	if (npos < 2)
		return fail(p, "missing MOUNTPOINT (usage: bucketfs BUCKET[:PREFIX] MOUNTPOINT "
			    "[-o options])");
	if ((rc = set_bucket(p, positional[0])) || (rc = set_mountpoint(p, positional[1])))
		return rc;

	/* The environment, then the profile in ~/.aws/config, fill what the command line left
	 * open (the AWS CLI's order). */
	if (!o->profile && env("AWS_PROFILE")) {
		if ((rc = set_str(&o->profile, env("AWS_PROFILE"))))
			return rc;
		o->profile_named = true;
	}
	if (!o->profile && (rc = set_str(&o->profile, "default")))
		return rc;
	struct bfs_aws_profile prof;
	if ((rc = bfs_aws_profile_load(o->profile, false, &prof, p->err, p->errlen)))
		return rc;
	rc = config_fill(p, &prof);
	bfs_aws_profile_free(&prof);
	if (rc)
		return rc;
	if (!o->imds_endpoint && env("AWS_EC2_METADATA_SERVICE_ENDPOINT") &&
	    (rc = set_endpoint(p, &o->imds_endpoint, "AWS_EC2_METADATA_SERVICE_ENDPOINT",
			       env("AWS_EC2_METADATA_SERVICE_ENDPOINT"))))
		return rc;
	if (!o->log_level)
		o->log_level = o->debug ? BFS_LOG_DEBUG : BFS_LOG_INFO;
	if (o->neg_ttl < 0)
		o->neg_ttl = o->consistency == BFS_WRITEBACK ? o->stat_ttl : 1;
	if (!o->cache_dir && (rc = default_cache_dir(o)))
		return rc;
	if (!p->fsname_set && (rc = default_fsname(o)))
		return rc;
	if (!p->subtype_set && (rc = fuse_opt_add(o, "subtype=bucketfs")))
		return rc;
	return 0;
}

int bfs_options_parse(int argc, char **argv, struct bfs_options *o, char *err, size_t errlen)
{
	struct parse p = {.o = o, .err = err, .errlen = errlen};

	memset(o, 0, sizeof(*o));
	o->stat_ttl = 5;
	o->uid = geteuid();
	o->gid = getegid();
	o->umask = 022;
	o->upload_delay = 0.5;
	o->neg_ttl = -1;
	o->slow_ms = -1;
	o->lock_wait = 300;
	o->timeout = 30;
	o->server_wait = 60;
	o->block_size = 1u << 20;
	o->part_size = 8u << 20;
	o->copy_limit = 5ull << 30;
	o->readahead = 64u << 20;
	o->max_connections = 16;
	o->stream_budget = 4;
	if (errlen)
		err[0] = '\0';

	int rc = parse(&p, argc, argv);
	if (rc == -ENOMEM)
		fail(&p, "out of memory");
	if (rc != 0)
		bfs_options_free(o);
	return rc;
}

void bfs_options_free(struct bfs_options *o)
{
	free(o->bucket);
	free(o->prefix);
	free(o->mountpoint);
	free(o->endpoint);
	free(o->region);
	free(o->ca_file);
	free(o->profile);
	free(o->imds_endpoint);
	free(o->passwd_file);
	free(o->cache_dir);
	free(o->hmac_key_file);
	if (o->hmac_keys) /* wiped: they are secrets */
		explicit_bzero(o->hmac_keys, o->nhmac_keys * sizeof(*o->hmac_keys));
	free(o->hmac_keys);
	for (int i = 0; i < o->fuse_argc; i++)
		free(o->fuse_argv[i]);
	free(o->fuse_argv);
	memset(o, 0, sizeof(*o));
}
