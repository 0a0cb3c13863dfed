/* fs/aws_config.c — the AWS shared files as the AWS CLI reads them:
 *   ${AWS_CONFIG_FILE:-~/.aws/config}: [default] or [profile NAME] with region, endpoint_url,
 *     a nested "s3 =" block (endpoint_url, addressing_style), services = NAME pointing at a
 *     [services NAME] section with its own nested "s3 =" block, credential_process and keys;
 *   ${AWS_SHARED_CREDENTIALS_FILE:-~/.aws/credentials}: [NAME] with keys (and
 *     credential_process); for the same setting it wins over the config file.
 * Keys are case-insensitive, section names are not. Values are taken verbatim (trimmed): no
 * inline comments, no continuation lines. A file that holds secrets must not be accessible by
 * group or others; a config file with credential_process must not be writable by them. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs_int.h"

#define MAX_CRED_FILE (1 << 20)

int bfs_say(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;
	if (!errlen)
		return rc;
	int n = snprintf(err, errlen, "bucketfs: ");
	if (n >= 0 && (size_t)n < errlen) {
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return rc;
}

void bfs_wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

int bfs_file_read(const char *path, bool secret, char **out, mode_t *mode, char *err,
		  size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	int rc = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*out = NULL;
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return -ENOENT;
		return bfs_say(err, errlen, -errno, "cannot open %s: %s", path, strerror(errno));
	}
	if (fstat(fd, &st) != 0) {
		rc = bfs_say(err, errlen, -errno, "cannot stat %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = bfs_say(err, errlen, -EINVAL, "%s is not a regular file", path);
		goto out;
	}
	if (secret && (st.st_mode & (S_IRWXG | S_IRWXO))) {
		rc = bfs_say(err, errlen, -EACCES, "refusing %s: it is accessible by group or "
			     "others (mode %03o); run chmod 600 %s", path, st.st_mode & 0777, path);
		goto out;
	}
	if (st.st_size > MAX_CRED_FILE) {
		rc = bfs_say(err, errlen, -EFBIG, "%s is too large for a credentials file", path);
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
			rc = bfs_say(err, errlen, -errno, "cannot read %s: %s", path,
				     strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	if (mode)
		*mode = st.st_mode;
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

/* ---- INI ---- */

/* One "key = value" line; sub is the nested block ("s3") or "". All strings owned. */
struct ini_entry {
	char *section, *sub, *key, *value;
	int line;
};
struct ini {
	struct ini_entry *e;
	size_t n, cap;
};

static void ini_free(struct ini *ini)
{
	for (size_t i = 0; i < ini->n; i++) {
		free(ini->e[i].section);
		free(ini->e[i].sub);
		free(ini->e[i].key);
		bfs_wipe_free(ini->e[i].value);
	}
	free(ini->e);
	memset(ini, 0, sizeof(*ini));
}

static int ini_add(struct ini *ini, const char *section, const char *sub, const char *k,
		   size_t kn, const char *v, size_t vn, int line)
{
	if (ini->n == ini->cap) {
		size_t cap = ini->cap ? ini->cap * 2 : 16;
		struct ini_entry *e = realloc(ini->e, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		ini->e = e;
		ini->cap = cap;
	}
	struct ini_entry *e = &ini->e[ini->n];
	e->section = strdup(section);
	e->sub = strdup(sub);
	e->key = strndup(k, kn);
	e->value = strndup(v, vn);
	e->line = line;
	if (!e->section || !e->sub || !e->key || !e->value) {
		free(e->section);
		free(e->sub);
		free(e->key);
		bfs_wipe_free(e->value);
		return -ENOMEM;
	}
	for (char *p = e->key; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	ini->n++;
	return 0;
}

/* Sections "[ name ]" (name trimmed, inner runs of blanks as one space), "key = value" lines;
 * a key with an empty value opens a nested block of the indented lines that follow it. Lines
 * outside a section, and lines without '=', are ignored. */
static int ini_parse(const char *text, struct ini *ini)
{
	char section[256] = "", sub[64] = "";
	bool in_section = false;
	int lineno = 0, rc;
	size_t key_indent = SIZE_MAX; /* indentation of the last top-level key; MAX: none yet */

	memset(ini, 0, sizeof(*ini));
	for (const char *line = text; *line; ) {
		size_t n = strcspn(line, "\n");
		const char *next = line[n] ? line + n + 1 : line + n;
		size_t indent = strspn(line, " \t");
		const char *s = bfs_trim(line, &n);
		line = next;
		lineno++;
		if (n == 0 || s[0] == '#' || s[0] == ';')
			continue;
		if (s[0] == '[') {
			in_section = false;
			sub[0] = '\0';
			key_indent = SIZE_MAX;
			if (s[n - 1] != ']' || n < 3)
				continue;
			size_t pn = n - 2, o = 0;
			const char *name = bfs_trim(s + 1, &pn);
			for (size_t i = 0; i < pn && o + 1 < sizeof(section); i++) {
				bool blank = name[i] == ' ' || name[i] == '\t';
				if (blank && (o == 0 || section[o - 1] == ' '))
					continue;
				section[o++] = blank ? ' ' : name[i];
			}
			section[o] = '\0';
			in_section = o > 0;
			/* the header itself, as an entry with an empty key */
			if (in_section && (rc = ini_add(ini, section, "", "", 0, "", 0, lineno)))
				goto fail;
			continue;
		}
		if (!in_section)
			continue;
		/* indented deeper than the key before it: part of that key */
		bool nested = key_indent != SIZE_MAX && indent > key_indent;
		if (nested && !sub[0])
			continue; /* a continuation line of a value: not supported, ignored */
		const char *eq = memchr(s, '=', n);
		if (!eq)
			continue;
		size_t kn = (size_t)(eq - s), vn = n - kn - 1;
		const char *k = bfs_trim(s, &kn), *v = bfs_trim(eq + 1, &vn);
		if (!kn)
			continue;
		if (!nested) {
			key_indent = indent;
			sub[0] = '\0';
			if (vn == 0) { /* "s3 =": a nested block follows */
				snprintf(sub, sizeof(sub), "%.*s", (int)kn, k);
				for (char *p = sub; *p; p++)
					*p = (char)tolower((unsigned char)*p);
				continue;
			}
		}
		if ((rc = ini_add(ini, section, nested ? sub : "", k, kn, v, vn, lineno)))
			goto fail;
	}
	return 0;
fail:
	ini_free(ini);
	return rc;
}

/* The last value of key in section/sub ("" = top level), or NULL. */
static const char *ini_get(const struct ini *ini, const char *section, const char *sub,
			   const char *key)
{
	const char *v = NULL;
	for (size_t i = 0; i < ini->n; i++)
		if (!strcmp(ini->e[i].section, section) && !strcmp(ini->e[i].sub, sub) &&
		    !strcmp(ini->e[i].key, key))
			v = ini->e[i].value;
	return v;
}

/* Whether the file has a section named exactly name (with entries or not). */
static bool has_section(const struct ini *ini, const char *name)
{
	for (size_t i = 0; i < ini->n; i++)
		if (!ini->e[i].key[0] && !strcmp(ini->e[i].section, name))
			return true;
	return false;
}

/* The config file's section name for profile: "default" may be [default] or
 * [profile default]; others are [profile NAME]. Returns the one present (or NULL). */
static const char *config_section(const struct ini *ini, const char *profile, char *buf,
				  size_t len)
{
	snprintf(buf, len, "profile %s", profile);
	if (has_section(ini, buf))
		return buf;
	if (!strcmp(profile, "default") && has_section(ini, "default"))
		return "default";
	return NULL;
}

static int dup_value(char **dst, const char *v)
{
	if (!v || !*v || *dst)
		return 0;
	return (*dst = strdup(v)) ? 0 : -ENOMEM;
}

/* Secrets in any section of a config file readable by others; a credential_process in one
 * writable by others (anyone who may edit it chooses what we run). */
static int check_config_mode(const char *path, const struct ini *ini, mode_t mode, char *err,
			     size_t errlen)
{
	for (size_t i = 0; i < ini->n; i++) {
		const char *k = ini->e[i].key;
		bool secret = !strcmp(k, "aws_secret_access_key") || !strcmp(k, "aws_session_token");
		if (secret && (mode & (S_IRWXG | S_IRWXO)))
			return bfs_say(err, errlen, -EACCES, "refusing %s: it holds %s (line %d) and "
				       "is accessible by group or others (mode %03o); run chmod "
				       "600 %s", path, k, ini->e[i].line, mode & 0777, path);
		if (!strcmp(k, "credential_process") && (mode & (S_IWGRP | S_IWOTH)))
			return bfs_say(err, errlen, -EACCES, "refusing %s: it has a "
				       "credential_process (line %d) and is writable by group or "
				       "others (mode %03o); run chmod go-w %s", path,
				       ini->e[i].line, mode & 0777, path);
	}
	return 0;
}

/* ${var:-~/.aws/name}, malloc'd; NULL without HOME (-ENOMEM in *rc if out of memory). */
static char *shared_path(const char *var, const char *name, int *rc)
{
	const char *v = getenv(var), *home = getenv("HOME");
	char *p = NULL;
	*rc = 0;
	if (v && *v)
		p = strdup(v);
	else if (home && *home && asprintf(&p, "%s/.aws/%s", home, name) < 0)
		p = NULL;
	else if (!home || !*home)
		return NULL;
	if (!p)
		*rc = -ENOMEM;
	return p;
}

static int load_config(const char *name, struct bfs_aws_profile *out, char *err, size_t errlen)
{
	struct ini ini = {0};
	char *text = NULL, buf[300];
	mode_t mode = 0;
	int rc = bfs_file_read(out->config_path, false, &text, &mode, err, errlen);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	if ((rc = ini_parse(text, &ini)) ||
	    (rc = check_config_mode(out->config_path, &ini, mode, err, errlen)))
		goto out;
	const char *sec = config_section(&ini, name, buf, sizeof(buf));
	if (!sec)
		goto out;
	out->in_config = true;
	struct bfs_aws_keys *k = &out->config_keys;
	if ((rc = dup_value(&out->region, ini_get(&ini, sec, "", "region"))) ||
	    (rc = dup_value(&out->endpoint_url, ini_get(&ini, sec, "", "endpoint_url"))) ||
	    (rc = dup_value(&k->access_key, ini_get(&ini, sec, "", "aws_access_key_id"))) ||
	    (rc = dup_value(&k->secret_key, ini_get(&ini, sec, "", "aws_secret_access_key"))) ||
	    (rc = dup_value(&k->session_token, ini_get(&ini, sec, "", "aws_session_token"))) ||
	    (rc = dup_value(&out->config_process, ini_get(&ini, sec, "", "credential_process"))))
		goto out;
	/* services = NAME: [services NAME] s3 = endpoint_url wins over the profile's own */
	const char *svc = ini_get(&ini, sec, "", "services");
	if (svc && *svc) {
		char ssec[300];
		snprintf(ssec, sizeof(ssec), "services %s", svc);
		if ((rc = dup_value(&out->s3_endpoint_url, ini_get(&ini, ssec, "s3", "endpoint_url"))))
			goto out;
	}
	if ((rc = dup_value(&out->s3_endpoint_url, ini_get(&ini, sec, "s3", "endpoint_url"))))
		goto out;
	const char *style = ini_get(&ini, sec, "s3", "addressing_style");
	if (style && !strcasecmp(style, "path"))
		out->path_style = true;
	const char *ignore = ini_get(&ini, sec, "", "ignore_configured_endpoint_urls");
	if (ignore && !strcasecmp(ignore, "true"))
		out->ignore_endpoints = true;
out:
	ini_free(&ini);
	bfs_wipe_free(text);
	return rc;
}

static int load_credentials(const char *name, struct bfs_aws_profile *out, char *err,
			    size_t errlen)
{
	struct ini ini = {0};
	char *text = NULL;
	int rc = bfs_file_read(out->credentials_path, true, &text, NULL, err, errlen);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	if ((rc = ini_parse(text, &ini)) || !has_section(&ini, name))
		goto out;
	out->in_credentials = true;
	struct bfs_aws_keys *k = &out->file_keys;
	if ((rc = dup_value(&k->access_key, ini_get(&ini, name, "", "aws_access_key_id"))) ||
	    (rc = dup_value(&k->secret_key, ini_get(&ini, name, "", "aws_secret_access_key"))) ||
	    (rc = dup_value(&k->session_token, ini_get(&ini, name, "", "aws_session_token"))) ||
	    (rc = dup_value(&out->file_process, ini_get(&ini, name, "", "credential_process"))))
		goto out;
out:
	ini_free(&ini);
	bfs_wipe_free(text);
	return rc;
}

int bfs_aws_profile_load(const char *name, bool with_credentials, struct bfs_aws_profile *out,
			 char *err, size_t errlen)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (errlen)
		err[0] = '\0';
	out->config_path = shared_path("AWS_CONFIG_FILE", "config", &rc);
	if (rc)
		goto fail;
	out->credentials_path = shared_path("AWS_SHARED_CREDENTIALS_FILE", "credentials", &rc);
	if (rc)
		goto fail;
	if (out->config_path && (rc = load_config(name, out, err, errlen)))
		goto fail;
	if (with_credentials && out->credentials_path &&
	    (rc = load_credentials(name, out, err, errlen)))
		goto fail;
	return 0;
fail:
	if (rc == -ENOMEM)
		bfs_say(err, errlen, rc, "out of memory");
	bfs_aws_profile_free(out);
	return rc;
}

static void keys_free(struct bfs_aws_keys *k)
{
	bfs_wipe_free(k->access_key);
	bfs_wipe_free(k->secret_key);
	bfs_wipe_free(k->session_token);
}

void bfs_aws_profile_free(struct bfs_aws_profile *p)
{
	free(p->config_path);
	free(p->credentials_path);
	free(p->region);
	free(p->endpoint_url);
	free(p->s3_endpoint_url);
	free(p->config_process);
	free(p->file_process);
	keys_free(&p->config_keys);
	keys_free(&p->file_keys);
	memset(p, 0, sizeof(*p));
}
