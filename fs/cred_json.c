/* fs/cred_json.c — the JSON documents temporary credentials come in:
 *   credential_process: {"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken",
 *                        "Expiration": ISO 8601}
 *   EC2 instance metadata: {"Code": "Success", "AccessKeyId", "SecretAccessKey", "Token",
 *                           "Expiration", ...}
 * A small parser for one object: string, number, true/false/null values; nested objects and
 * arrays are skipped. Error messages name fields, never their values. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/fs_int.h"

#define MAX_DEPTH 32

struct json {
	const char *p, *end;
};

static void ws(struct json *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int hex4(const char *s, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		int d = bfs_hexval(s[i]);
		if (d < 0)
			return -1;
		v = v << 4 | (unsigned)d;
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* A string at j->p (the opening quote); *out malloc'd (NULL: just skip). 0 or -EINVAL/-ENOMEM. */
static int string(struct json *j, char **out)
{
	if (out)
		*out = NULL;
	if (j->p >= j->end || *j->p != '"')
		return -EINVAL;
	j->p++;
	/* decoded text is never longer than the escaped text */
	char *buf = NULL, *o = NULL;
	if (out) {
		if (!(buf = malloc((size_t)(j->end - j->p) + 1)))
			return -ENOMEM;
		o = buf;
	}
	while (j->p < j->end && *j->p != '"') {
		unsigned char c = (unsigned char)*j->p++;
		if (c < 0x20)
			goto bad;
		if (c != '\\') {
			if (o)
				*o++ = (char)c;
			continue;
		}
		if (j->p >= j->end)
			goto bad;
		char e = *j->p++;
		char lit = e == '"' ? '"' : e == '\\' ? '\\' : e == '/' ? '/' : e == 'b' ? '\b'
			 : e == 'f' ? '\f' : e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : 0;
		if (lit) {
			if (o)
				*o++ = lit;
			continue;
		}
		if (e != 'u' || j->end - j->p < 4)
			goto bad;
		unsigned cp, lo;
		if (hex4(j->p, &cp))
			goto bad;
		j->p += 4;
		if (cp >= 0xd800 && cp < 0xdc00) { /* a surrogate pair */
			if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' ||
			    hex4(j->p + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
				goto bad;
			j->p += 6;
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		} else if (cp >= 0xdc00 && cp < 0xe000) {
			goto bad;
		}
		if (o)
			o += put_utf8(o, cp);
	}
	if (j->p >= j->end)
		goto bad;
	j->p++;
	if (out) {
		*o = '\0';
		*out = buf;
	}
	return 0;
bad:
	if (buf) {
		*o = '\0';
		bfs_wipe_free(buf);
	}
	return -EINVAL;
}

/* Any value (skipped); numbers and literals are checked loosely. */
static int skip_value(struct json *j, int depth)
{
	ws(j);
	if (j->p >= j->end || depth > MAX_DEPTH)
		return -EINVAL;
	char c = *j->p;
	if (c == '"')
		return string(j, NULL);
	if (c == '{' || c == '[') {
		char close = c == '{' ? '}' : ']';
		j->p++;
		ws(j);
		if (j->p < j->end && *j->p == close) {
			j->p++;
			return 0;
		}
		for (;;) {
			if (c == '{') {
				ws(j);
				if (string(j, NULL))
					return -EINVAL;
				ws(j);
				if (j->p >= j->end || *j->p++ != ':')
					return -EINVAL;
			}
			if (skip_value(j, depth + 1))
				return -EINVAL;
			ws(j);
			if (j->p >= j->end)
				return -EINVAL;
			if (*j->p == ',') {
				j->p++;
				continue;
			}
			if (*j->p++ != close)
				return -EINVAL;
			return 0;
		}
	}
	const char *start = j->p;
	while (j->p < j->end && strchr("0123456789+-.eEtruefalsn", *j->p))
		j->p++;
	size_t n = (size_t)(j->p - start);
	if (n == 0)
		return -EINVAL;
	if ((n == 4 && !strncmp(start, "true", 4)) || (n == 5 && !strncmp(start, "false", 5)) ||
	    (n == 4 && !strncmp(start, "null", 4)))
		return 0;
	char *endp, num[64];
	if (n >= sizeof(num))
		return -EINVAL;
	memcpy(num, start, n);
	num[n] = '\0';
	strtod(num, &endp);
	return *endp ? -EINVAL : 0;
}

/* Whether s starts with shape, where 'd' is a digit: sscanf's %2d alone would also take
 * "-1", "+2" or " 3". */
static bool shaped(const char *s, const char *shape)
{
	for (; *shape; s++, shape++)
		if (*shape == 'd' ? !(*s >= '0' && *s <= '9') : *s != *shape)
			return false;
	return true;
}

int bfs_iso8601_parse(const char *s, time_t *out)
{
	int y, mo, d, h, mi, sec, used = 0;
	if (!shaped(s, "dddd-dd-ddTdd:dd:dd") ||
	    sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &used) != 6 ||
	    used != 19)
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
		return -EINVAL;
	const char *p = s + used;
	if (*p == '.') /* fraction of a second: ignored */
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	long offset = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om = 0, n = 0;
		if (shaped(p + 1, "dd:dd") && sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) == 2 &&
		    n == 5)
			;
		else if (shaped(p + 1, "dddd") && sscanf(p + 1, "%2d%2d%n", &oh, &om, &n) == 2 &&
			 n == 4)
			;
		else
			return -EINVAL;
		if (oh > 23 || om > 59)
			return -EINVAL;
		offset = (*p == '+' ? 1 : -1) * (oh * 3600L + om * 60L);
		p += 1 + n;
	} else {
		return -EINVAL; /* no zone: ambiguous */
	}
	if (*p)
		return -EINVAL;
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
			 .tm_min = mi, .tm_sec = sec };
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*out = t - offset;
	return 0;
}

/* The fields we look at, as found (malloc'd; secrets wiped when freed). */
struct fields {
	char *version, *key, *secret, *token, *expiration, *code;
};

static void fields_free(struct fields *f)
{
	free(f->version);
	bfs_wipe_free(f->key);
	bfs_wipe_free(f->secret);
	bfs_wipe_free(f->token);
	free(f->expiration);
	free(f->code);
}

/* A number's text (for Version), malloc'd. */
static int number_text(struct json *j, char **out)
{
	const char *start = j->p;
	if (skip_value(j, 0))
		return -EINVAL;
	*out = strndup(start, (size_t)(j->p - start));
	return *out ? 0 : -ENOMEM;
}

static int parse_object(struct json *j, enum bfs_cred_json kind, struct fields *f)
{
	ws(j);
	if (j->p >= j->end || *j->p++ != '{')
		return -EINVAL;
	ws(j);
	if (j->p < j->end && *j->p == '}') {
		j->p++;
		return 0;
	}
	for (;;) {
		char *name = NULL;
		int rc;
		ws(j);
		if ((rc = string(j, &name)))
			return rc;
		ws(j);
		if (j->p >= j->end || *j->p++ != ':') {
			free(name);
			return -EINVAL;
		}
		ws(j);
		const char *tok = kind == BFS_CRED_JSON_IMDS ? "Token" : "SessionToken";
		char **dst = !strcmp(name, "AccessKeyId") ? &f->key
			   : !strcmp(name, "SecretAccessKey") ? &f->secret
			   : !strcmp(name, tok) ? &f->token
			   : !strcmp(name, "Expiration") ? &f->expiration
			   : !strcmp(name, "Code") ? &f->code : NULL;
		bool version = !strcmp(name, "Version");
		free(name);
		if (version) {
			free(f->version);
			f->version = NULL;
			rc = j->p < j->end && *j->p == '"' ? string(j, &f->version)
							   : number_text(j, &f->version);
		} else if (dst && j->p < j->end && *j->p == '"') {
			bfs_wipe_free(*dst);
			*dst = NULL;
			rc = string(j, dst);
		} else {
			rc = skip_value(j, 1); /* null, numbers, objects... of other fields */
		}
		if (rc)
			return rc;
		ws(j);
		if (j->p >= j->end)
			return -EINVAL;
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p++ != '}')
			return -EINVAL;
		return 0;
	}
}

int bfs_cred_json_parse(const char *text, size_t len, enum bfs_cred_json kind,
			struct s3_creds *out, char *err, size_t errlen)
{
	struct json j = { text, text + len };
	struct fields f = { 0 };
	int rc;

	memset(out, 0, sizeof(*out));
	rc = parse_object(&j, kind, &f);
	if (rc == 0) {
		ws(&j);
		if (j.p != j.end)
			rc = -EINVAL;
	}
	if (rc == -ENOMEM)
		goto out;
	if (rc) {
		snprintf(err, errlen, "not a JSON object");
		goto out;
	}
	rc = -EINVAL;
	if (kind == BFS_CRED_JSON_PROCESS && (!f.version || strcmp(f.version, "1") != 0)) {
		snprintf(err, errlen, f.version ? "unsupported Version (want 1)" : "no Version");
		goto out;
	}
	if (kind == BFS_CRED_JSON_IMDS && f.code && strcmp(f.code, "Success") != 0) {
		snprintf(err, errlen, "Code is %.64s, not Success", f.code);
		goto out;
	}
	if (!f.key || !*f.key || !f.secret || !*f.secret) {
		snprintf(err, errlen, "no %s", !f.key || !*f.key ? "AccessKeyId" : "SecretAccessKey");
		goto out;
	}
	if (kind == BFS_CRED_JSON_IMDS && (!f.token || !*f.token)) {
		snprintf(err, errlen, "no Token");
		goto out;
	}
	if (kind == BFS_CRED_JSON_IMDS && !f.expiration) {
		snprintf(err, errlen, "no Expiration");
		goto out;
	}
	if (f.expiration && bfs_iso8601_parse(f.expiration, &out->expiration)) {
		snprintf(err, errlen, "Expiration '%.64s' is not an ISO 8601 time", f.expiration);
		goto out;
	}
	out->access_key = f.key;
	out->secret_key = f.secret;
	out->session_token = f.token && *f.token ? f.token : NULL;
	if (!out->session_token)
		bfs_wipe_free(f.token);
	f.key = f.secret = f.token = NULL;
	rc = 0;
out:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	fields_free(&f);
	return rc;
}
