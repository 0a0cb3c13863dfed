/* fs/creds.c — where the access key comes from, in this order:
 *   1. $AWS_ACCESS_KEY_ID + $AWS_SECRET_ACCESS_KEY (+ $AWS_SESSION_TOKEN)
 *   2. -o passwd_file=PATH (s3fs format), when given
 *   3. ${AWS_SHARED_CREDENTIALS_FILE:-~/.aws/credentials}, section [profile]
 *   4. s3fs's default passwd files: ~/.passwd-s3fs, then /etc/passwd-s3fs
 * A file that is readable, writable or executable by group or others is refused.
 * Secrets read from files are wiped from our buffers once copied. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs.h"

#define MAX_CRED_FILE (1 << 20)

struct creds_ctx {
	char *err;
	size_t errlen;
	bool said; /* err holds a message */
};

static int fail(struct creds_ctx *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct creds_ctx *c, int rc, const char *fmt, ...)
{
	va_list ap;
	c->said = true;
	if (!c->errlen)
		return rc;
	int n = snprintf(c->err, c->errlen, "bucketfs: ");
	if (n >= 0 && (size_t)n < c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static int set_creds(struct bfs_creds *out, const char *key, size_t klen, const char *secret,
		     size_t slen, const char *token, size_t tlen)
{
	out->access_key = strndup(key, klen);
	out->secret_key = strndup(secret, slen);
	out->session_token = token && tlen ? strndup(token, tlen) : NULL;
	if (!out->access_key || !out->secret_key || (token && tlen && !out->session_token)) {
		bfs_creds_free(out);
		return -ENOMEM;
	}
	return 0;
}

/* Reads path into a malloc'd NUL-terminated buffer (wipe it with wipe_free). -ENOENT if the
 * file does not exist, -EACCES (with a message) if group/other may access it. */
static int read_secret_file(struct creds_ctx *c, const char *path, char **out)
{
	struct stat st;
	char *buf = NULL;
	int rc = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*out = NULL;
	if (fd < 0) {
		if (errno == ENOENT)
			return -ENOENT;
		return fail(c, -errno, "cannot open %s: %s", path, strerror(errno));
	}
	if (fstat(fd, &st) != 0) {
		rc = fail(c, -errno, "cannot stat %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = fail(c, -EINVAL, "%s is not a regular file", path);
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		rc = fail(c, -EACCES, "refusing %s: it is accessible by group or others "
			  "(mode %03o); run chmod 600 %s", path, st.st_mode & 0777, path);
		goto out;
	}
	if (st.st_size > MAX_CRED_FILE) {
		rc = fail(c, -EFBIG, "%s is too large for a credentials file", path);
		goto out;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		rc = -ENOMEM;
		goto out;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = fail(c, -errno, "cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*out = buf;
	buf = NULL;
out:
	if (buf) {
		explicit_bzero(buf, (size_t)st.st_size);
		free(buf);
	}
	close(fd);
	return rc;
}

/* Trims blanks (and a CR) from both ends of [s, s+*n). */
static const char *trim(const char *s, size_t *n)
{
	while (*n && (*s == ' ' || *s == '\t'))
		s++, (*n)--;
	while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t' || s[*n - 1] == '\r'))
		(*n)--;
	return s;
}

/* Finds [profile] in an AWS shared credentials file (INI). */
static int parse_credentials(struct creds_ctx *c, const char *path, const char *text,
			     const char *profile, struct bfs_creds *out)
{
	const char *key = NULL, *secret = NULL, *token = NULL;
	size_t klen = 0, slen = 0, tlen = 0;
	bool in_profile = false, found = false;

	for (const char *line = text; *line; ) {
		size_t n = strcspn(line, "\n");
		const char *next = line[n] ? line + n + 1 : line + n;
		const char *s = trim(line, &n);
		line = next;
		if (n == 0 || s[0] == '#' || s[0] == ';')
			continue;
		if (s[0] == '[') {
			if (s[n - 1] != ']')
				continue;
			size_t pn = n - 2;
			const char *name = trim(s + 1, &pn);
			in_profile = pn == strlen(profile) && strncmp(name, profile, pn) == 0;
			found = found || in_profile;
			continue;
		}
		const char *eq = memchr(s, '=', n);
		if (!in_profile || !eq)
			continue;
		size_t kn = (size_t)(eq - s), vn = n - kn - 1;
		const char *k = trim(s, &kn), *v = trim(eq + 1, &vn);
		if (kn == 17 && strncasecmp(k, "aws_access_key_id", kn) == 0)
			key = v, klen = vn;
		else if (kn == 21 && strncasecmp(k, "aws_secret_access_key", kn) == 0)
			secret = v, slen = vn;
		else if (kn == 17 && strncasecmp(k, "aws_session_token", kn) == 0)
			token = v, tlen = vn;
	}
	if (!found)
		return -ENOENT;
	if (!key || !klen || !secret || !slen)
		return fail(c, -ENOENT, "profile [%s] in %s has no aws_access_key_id and "
			    "aws_secret_access_key", profile, path);
	return set_creds(out, key, klen, secret, slen, token, tlen);
}

/* s3fs's passwd file: "KEY:SECRET" lines, or "BUCKET:KEY:SECRET" for one bucket, which wins
 * over the plain line. '#' starts a comment line. */
static int parse_passwd(struct creds_ctx *c, const char *path, const char *text,
			const char *bucket, struct bfs_creds *out)
{
	const char *best = NULL;
	size_t best_len = 0;
	bool best_is_bucket = false;
	int lineno = 0;

	for (const char *line = text; *line; ) {
		size_t n = strcspn(line, "\n");
		const char *next = line[n] ? line + n + 1 : line + n;
		const char *s = trim(line, &n);
		line = next;
		lineno++;
		if (n == 0 || s[0] == '#')
			continue;
		/* Split at ':' into 2 or 3 non-empty fields. */
		const char *field[4];
		size_t flen[4], nf = 0;
		for (const char *f = s, *end = s + n; nf < 4; nf++) {
			const char *colon = memchr(f, ':', (size_t)(end - f));
			field[nf] = f;
			flen[nf] = colon ? (size_t)(colon - f) : (size_t)(end - f);
			if (!colon) {
				nf++;
				break;
			}
			f = colon + 1;
		}
		bool ok = nf == 2 || nf == 3;
		for (size_t i = 0; ok && i < nf; i++)
			ok = flen[i] > 0;
		if (!ok)
			return fail(c, -EINVAL, "%s:%d: want KEY:SECRET or BUCKET:KEY:SECRET", path,
				    lineno);
		if (nf == 3 && flen[0] == strlen(bucket) && !strncmp(field[0], bucket, flen[0])) {
			if (!best_is_bucket) {
				best = field[1];
				best_len = n - flen[0] - 1;
				best_is_bucket = true;
			}
		} else if (nf == 2 && !best) {
			best = s;
			best_len = n;
		}
	}
	if (!best)
		return fail(c, -ENOENT, "%s has no KEY:SECRET line for bucket %s", path, bucket);
	const char *colon = memchr(best, ':', best_len);
	return set_creds(out, best, (size_t)(colon - best), colon + 1,
			 best_len - (size_t)(colon - best) - 1, NULL, 0);
}

/* Tries one passwd file. -ENOENT (no message) if it does not exist. */
static int try_passwd(struct creds_ctx *c, const char *path, const char *bucket,
		      struct bfs_creds *out)
{
	char *text;
	int rc = read_secret_file(c, path, &text);
	if (rc)
		return rc;
	rc = parse_passwd(c, path, text, bucket, out);
	wipe_free(text);
	return rc;
}

int bfs_creds_load(const struct bfs_options *o, struct bfs_creds *out, char *err, size_t errlen)
{
	struct creds_ctx c = {.err = err, .errlen = errlen};
	const char *home = getenv("HOME");
	char *path = NULL, *text = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (errlen)
		err[0] = '\0';

	/* 1. The environment. */
	const char *k = getenv("AWS_ACCESS_KEY_ID"), *s = getenv("AWS_SECRET_ACCESS_KEY");
	const char *t = getenv("AWS_SESSION_TOKEN");
	if (k && *k && s && *s)
		return set_creds(out, k, strlen(k), s, strlen(s), t, t ? strlen(t) : 0);
	if ((k && *k) || (s && *s))
		return fail(&c, -ENOENT, "%s is set but %s is not", k && *k ? "AWS_ACCESS_KEY_ID"
			    : "AWS_SECRET_ACCESS_KEY", k && *k ? "AWS_SECRET_ACCESS_KEY"
			    : "AWS_ACCESS_KEY_ID");

	/* 2. An explicit passwd file must work. */
	if (o->passwd_file) {
		rc = try_passwd(&c, o->passwd_file, o->bucket, out);
		if (rc == -ENOENT && !c.said)
			return fail(&c, -ENOENT, "passwd_file %s does not exist", o->passwd_file);
		return rc;
	}

	/* 3. The shared credentials file. */
	const char *cred = getenv("AWS_SHARED_CREDENTIALS_FILE");
	const char *profile = o->profile ? o->profile : "default";
	if (cred && *cred)
		path = strdup(cred);
	else if (home && asprintf(&path, "%s/.aws/credentials", home) < 0)
		path = NULL;
	if ((cred && *cred) || home) {
		if (!path)
			return -ENOMEM;
		rc = read_secret_file(&c, path, &text);
		if (rc == 0) {
			rc = parse_credentials(&c, path, text, profile, out);
			wipe_free(text);
			if (rc == -ENOENT && !c.said && strcmp(profile, "default") != 0)
				rc = fail(&c, -ENOENT, "no profile [%s] in %s", profile, path);
		}
		if (rc != -ENOENT || c.said) {
			free(path);
			return rc;
		}
		free(path);
		path = NULL;
	}

	/* 4. s3fs's defaults. */
	if (home) {
		if (asprintf(&path, "%s/.passwd-s3fs", home) < 0)
			return -ENOMEM;
		rc = try_passwd(&c, path, o->bucket, out);
		free(path);
		if (rc != -ENOENT || c.said)
			return rc;
	}
	rc = try_passwd(&c, "/etc/passwd-s3fs", o->bucket, out);
	if (rc != -ENOENT || c.said)
		return rc;

	return fail(&c, -ENOENT, "no credentials: set AWS_ACCESS_KEY_ID and "
		    "AWS_SECRET_ACCESS_KEY, or use ~/.aws/credentials or -o passwd_file=");
}

void bfs_s3_config(const struct bfs_options *o, const struct bfs_creds *cr,
		   struct s3_config *cfg)
{
	*cfg = (struct s3_config){
		.endpoint = o->endpoint,
		.region = o->region,
		.bucket = o->bucket,
		.path_style = o->path_style,
		.insecure = o->insecure,
		.ca_file = o->ca_file,
		.access_key = cr->access_key,
		.secret_key = cr->secret_key,
		.session_token = cr->session_token,
		.max_connections = o->max_connections,
		.part_size = o->part_size,
		.copy_limit = o->copy_limit,
		.low_speed_timeout_s = (long)o->timeout,
		.unreachable_wait_s = (long)o->server_wait,
	};
}

void bfs_creds_free(struct bfs_creds *c)
{
	wipe_free(c->access_key);
	wipe_free(c->secret_key);
	wipe_free(c->session_token);
	memset(c, 0, sizeof(*c));
}
