/* fs/creds.c — where the access key comes from, in the AWS CLI's order:
 *   1. $AWS_ACCESS_KEY_ID + $AWS_SECRET_ACCESS_KEY (+ $AWS_SESSION_TOKEN), unless -o profile=
 *      names a profile (as the CLI's --profile does)
 *   2. -o passwd_file=PATH (s3fs format), when given
 *   3. the profile (-o profile=, $AWS_PROFILE, "default"): keys in
 *      ${AWS_SHARED_CREDENTIALS_FILE:-~/.aws/credentials}, then its credential_process
 *      (fs/cred_process.c), then keys in ${AWS_CONFIG_FILE:-~/.aws/config}
 *      (fs/aws_config.c)
 *   4. s3fs's default passwd files: ~/.passwd-s3fs, then /etc/passwd-s3fs
 *   5. the EC2 instance role, from the instance metadata service (fs/imds.c), unless
 *      $AWS_EC2_METADATA_DISABLED is true
 * A profile named with -o profile= or $AWS_PROFILE must exist in one of the two files.
 * A secret file that is readable, writable or executable by group or others is refused.
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

#include "fs/fs_int.h"


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
	char msg[768];
	c->said = true;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return bfs_say(c->err, c->errlen, rc, "%s", msg);
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

/* Reads a secret file; -ENOENT (no message) if it does not exist. */
static int read_secret_file(struct creds_ctx *c, const char *path, char **out)
{
	int rc = bfs_file_read(path, true, out, NULL, c->err, c->errlen);
	if (rc && rc != -ENOENT)
		c->said = true;
	return rc;
}

/* Complete static keys from one file's profile: 0, -ENOENT if it has none, -EINVAL with a
 * message for half a pair. */
static int use_keys(struct creds_ctx *c, const struct bfs_aws_keys *k, const char *profile,
		    const char *path, struct bfs_creds *out)
{
	bool key = k->access_key && *k->access_key, secret = k->secret_key && *k->secret_key;
	if (!key && !secret)
		return -ENOENT;
	if (!key || !secret)
		return fail(c, -EINVAL, "profile [%s] in %s has %s but no %s", profile, path,
			    key ? "aws_access_key_id" : "aws_secret_access_key",
			    key ? "aws_secret_access_key" : "aws_access_key_id");
	const char *t = k->session_token;
	return set_creds(out, k->access_key, strlen(k->access_key), k->secret_key,
			 strlen(k->secret_key), t, t ? strlen(t) : 0);
}

struct bfs_cred_source {
	char *process;  /* credential_process command, or NULL: */
	char *imds;     /* the instance metadata service at this URL */
	char *profile;  /* for messages */
};

static void source_free(struct bfs_cred_source *s)
{
	if (!s)
		return;
	free(s->process);
	free(s->imds);
	free(s->profile);
	free(s);
}

/* s3_creds_fn: new keys from the source (called by the S3 client before expiry). */
static int source_fetch(void *arg, struct s3_creds *out, char *err, size_t errlen)
{
	struct bfs_cred_source *s = arg;
	char why[512] = "";
	if (s->imds) {
		int rc = bfs_imds_fetch(s->imds, out, why, sizeof(why));
		if (rc)
			snprintf(err, errlen, "EC2 instance metadata: %s", why);
		return rc;
	}
	int rc = bfs_cred_process_run(s->process, out, why, sizeof(why));
	if (rc)
		snprintf(err, errlen, "credential_process of profile [%s]: %s", s->profile, why);
	return rc;
}

/* The first keys from a source (a credential_process, or the instance metadata at imds),
 * which is kept to renew them. On failure, the reason in why. */
static int from_source(const char *cmd, const char *imds, const char *profile,
		       struct bfs_creds *out, char *why, size_t whylen)
{
	struct bfs_cred_source *src = calloc(1, sizeof(*src));
	struct s3_creds k = { 0 };
	int rc = -ENOMEM;
	if (!src || (cmd && !(src->process = strdup(cmd))) || (imds && !(src->imds = strdup(imds)))
	    || !(src->profile = strdup(profile))) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	if ((rc = source_fetch(src, &k, why, whylen)))
		goto out;
	out->access_key = k.access_key;
	out->secret_key = k.secret_key;
	out->session_token = k.session_token;
	out->expiration = k.expiration;
	out->source = src;
	src = NULL;
	memset(&k, 0, sizeof(k));
out:
	source_free(src);
	s3_creds_free(&k);
	return rc;
}

/* The profile's credentials in the CLI's order: keys in the credentials file, its
 * credential_process, keys in the config file. -ENOENT (no message) when it has none. */
static int from_profile(struct creds_ctx *c, const struct bfs_aws_profile *p,
			const char *profile, struct bfs_creds *out)
{
	int rc = use_keys(c, &p->file_keys, profile, p->credentials_path, out);
	if (rc != -ENOENT)
		return rc;
	const char *cmd = p->file_process ? p->file_process : p->config_process;
	if (cmd) {
		char why[600] = "";
		rc = from_source(cmd, NULL, profile, out, why, sizeof(why));
		return rc ? fail(c, rc, "%s", why) : 0;
	}
	rc = use_keys(c, &p->config_keys, profile, p->config_path, out);
	if (rc != -ENOENT)
		return rc;
	if (p->in_config || p->in_credentials)
		return fail(c, -ENOENT, "profile [%s] has no credentials (aws_access_key_id and "
			    "aws_secret_access_key, or credential_process) in %s or %s", profile,
			    p->credentials_path, p->config_path ? p->config_path : "~/.aws/config");
	return -ENOENT;
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
		const char *s = bfs_trim(line, &n);
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
	bfs_wipe_free(text);
	return rc;
}

int bfs_creds_load(const struct bfs_options *o, struct bfs_creds *out, char *err, size_t errlen)
{
	struct creds_ctx c = {.err = err, .errlen = errlen};
	struct bfs_aws_profile prof;
	const char *home = getenv("HOME");
	const char *profile = o->profile ? o->profile : "default";
	bool named = o->profile_named || strcmp(profile, "default") != 0;
	char *path = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (errlen)
		err[0] = '\0';

	/* A profile asked for by name must exist, whatever supplies the keys. */
	rc = bfs_aws_profile_load(profile, true, &prof, err, errlen);
	if (rc)
		return rc;
	if (named && !prof.in_config && !prof.in_credentials) {
		rc = fail(&c, -ENOENT, "profile [%s] not found in %s or %s", profile,
			  prof.config_path ? prof.config_path : "~/.aws/config",
			  prof.credentials_path ? prof.credentials_path : "~/.aws/credentials");
		goto out;
	}

	/* 1. The environment, unless -o profile= chose a profile. */
	const char *k = getenv("AWS_ACCESS_KEY_ID"), *s = getenv("AWS_SECRET_ACCESS_KEY");
	const char *t = getenv("AWS_SESSION_TOKEN");
	if (!o->profile_option && k && *k && s && *s) {
		rc = set_creds(out, k, strlen(k), s, strlen(s), t, t ? strlen(t) : 0);
		goto out;
	}
	if (!o->profile_option && ((k && *k) || (s && *s))) {
		rc = fail(&c, -ENOENT, "%s is set but %s is not", k && *k ? "AWS_ACCESS_KEY_ID"
			  : "AWS_SECRET_ACCESS_KEY", k && *k ? "AWS_SECRET_ACCESS_KEY"
			  : "AWS_ACCESS_KEY_ID");
		goto out;
	}

	/* 2. An explicit passwd file must work. */
	if (o->passwd_file) {
		rc = try_passwd(&c, o->passwd_file, o->bucket, out);
		if (rc == -ENOENT && !c.said)
			rc = fail(&c, -ENOENT, "passwd_file %s does not exist", o->passwd_file);
		goto out;
	}

	/* 3. The profile in the shared files. */
	rc = from_profile(&c, &prof, profile, out);
	if (rc != -ENOENT || c.said)
		goto out;

	/* 4. s3fs's defaults. */
	if (home) {
		if (asprintf(&path, "%s/.passwd-s3fs", home) < 0) {
			rc = -ENOMEM;
			goto out;
		}
		rc = try_passwd(&c, path, o->bucket, out);
		free(path);
		if (rc != -ENOENT || c.said)
			goto out;
	}
	rc = try_passwd(&c, "/etc/passwd-s3fs", o->bucket, out);
	if (rc != -ENOENT || c.said)
		goto out;

	/* 5. The EC2 instance's role. */
	char imds[512];
	const char *off = getenv("AWS_EC2_METADATA_DISABLED");
	const char *url = o->imds_endpoint ? o->imds_endpoint : BFS_IMDS_DEFAULT;
	if (off && strcasecmp(off, "true") == 0) {
		snprintf(imds, sizeof(imds), "EC2 instance metadata: off, AWS_EC2_METADATA_DISABLED "
			 "is true");
	} else {
		char why[400] = "";
		rc = from_source(NULL, url, profile, out, why, sizeof(why));
		if (rc != -ENOMEM && rc != 0)
			snprintf(imds, sizeof(imds), "%s", why);
		if (rc == 0 || rc == -ENOMEM)
			goto out;
	}

	rc = fail(&c, -ENOENT, "no credentials found (looked in: $AWS_ACCESS_KEY_ID, %s [%s], "
		  "%s [%s], ~/.passwd-s3fs, /etc/passwd-s3fs, %s); set AWS_ACCESS_KEY_ID and "
		  "AWS_SECRET_ACCESS_KEY, or use -o profile= or -o passwd_file=",
		  prof.credentials_path ? prof.credentials_path : "~/.aws/credentials", profile,
		  prof.config_path ? prof.config_path : "~/.aws/config", profile, imds);
out:
	if (rc == -ENOMEM && !c.said)
		fail(&c, rc, "out of memory");
	bfs_aws_profile_free(&prof);
	return rc;
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
		.creds_expiration = cr->expiration,
		.creds_fn = cr->source ? source_fetch : NULL,
		.creds_arg = cr->source,
		.max_connections = o->max_connections,
		.part_size = o->part_size,
		.copy_limit = o->copy_limit,
		.low_speed_timeout_s = (long)o->timeout,
		.unreachable_wait_s = (long)o->server_wait,
	};
}

void bfs_creds_free(struct bfs_creds *c)
{
	bfs_wipe_free(c->access_key);
	bfs_wipe_free(c->secret_key);
	bfs_wipe_free(c->session_token);
	source_free(c->source);
	memset(c, 0, sizeof(*c));
}
