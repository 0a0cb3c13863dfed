/* fs/record.c — a small line format for what fs/ keeps on local disk (journal records, the
 * metadata index): a magic line, then "tag\tvalue\n" fields and "m\tname\tvalue\n" user
 * metadata, every value percent-encoded so any byte survives. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "util/util.h"

struct sbuf {
	char *p;
	size_t len, cap;
	int err;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->err)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t ncap = (b->cap + n + 1) * 2;
		char *np = realloc(b->p, ncap);
		if (!np) {
			b->err = -ENOMEM;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* Appends "tag[\ta][\tb]\n" with a and b percent-encoded. */
static void sb_line(struct sbuf *b, const char *tag, const char *a, const char *c)
{
	sb_put(b, tag, strlen(tag));
	const char *v[2] = { a, c };
	for (int i = 0; i < 2 && v[i]; i++) {
		char *enc = bfs_uri_encode(v[i], 1);
		if (!enc) {
			b->err = -ENOMEM;
			return;
		}
		sb_put(b, "\t", 1);
		sb_put(b, enc, strlen(enc));
		free(enc);
	}
	sb_put(b, "\n", 1);
}

char *bfs_record_encode(const char *magic, const struct bfs_field *fields, size_t n,
			const struct s3_meta *m)
{
	struct sbuf b = { 0 };
	sb_line(&b, magic, NULL, NULL);
	for (size_t i = 0; i < n; i++)
		if (fields[i].value)
			sb_line(&b, fields[i].tag, fields[i].value, NULL);
	for (size_t i = 0; m && i < m->n; i++)
		sb_line(&b, "m", m->kv[i].name, m->kv[i].value);
	if (b.err) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

int bfs_record_decode(const char *rec, size_t len, const char *magic, struct bfs_field *fields,
		      size_t n, struct s3_meta *m)
{
	for (size_t i = 0; i < n; i++)
		fields[i].value = NULL;
	s3_meta_init(m);
	char *copy = strndup(rec ? rec : "", len);
	if (!copy)
		return -ENOMEM;
	int rc = -EINVAL;
	char *save = NULL;
	char *line = strtok_r(copy, "\n", &save);
	if (!line || strcmp(line, magic) != 0)
		goto out;
	rc = 0;
	while (rc == 0 && (line = strtok_r(NULL, "\n", &save))) {
		char *f[3] = { line, NULL, NULL };
		for (int i = 1; i < 3; i++) {
			char *t = f[i - 1] ? strchr(f[i - 1], '\t') : NULL;
			if (t) {
				*t = '\0';
				f[i] = t + 1;
			}
		}
		char *d[3] = { NULL, NULL, NULL };
		for (int i = 1; i < 3; i++)
			if (f[i] && !(d[i] = bfs_uri_decode(f[i], 0)))
				rc = -ENOMEM;
		if (rc == 0 && strcmp(f[0], "m") == 0 && d[1] && d[2]) {
			rc = s3_meta_set(m, d[1], d[2]);
		} else {
			for (size_t i = 0; rc == 0 && i < n && d[1]; i++) {
				if (strcmp(f[0], fields[i].tag) == 0 && !fields[i].value) {
					fields[i].value = d[1];
					d[1] = NULL;
				}
			}
		}
		free(d[1]);
		free(d[2]);
	}
out:
	free(copy);
	if (rc) {
		bfs_record_fields_free(fields, n);
		s3_meta_free(m);
	}
	return rc;
}

void bfs_record_fields_free(struct bfs_field *fields, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)fields[i].value);
		fields[i].value = NULL;
	}
}
