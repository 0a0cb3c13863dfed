/* fs/mime.c — the Content-Type of a new object, guessed from its name's extension with the
 * table of /etc/mime.types (lines "type/subtype ext1 ext2 ...", '#' comments), the way web
 * servers and s3fs do. The system table is read once, on first use; a missing file leaves
 * every guess application/octet-stream. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fs/fs_int.h"

#define BFS_MIME_DEFAULT "application/octet-stream"

struct mime_ent {
	char *ext;  /* lowercase, without the dot; owned */
	char *type; /* owned */
	size_t line; /* order in the file: the first line naming an extension wins */
};

struct bfs_mime {
	struct mime_ent *e; /* sorted by ext after load */
	size_t n, cap;
};

static int cmp_ent(const void *a, const void *b)
{
	const struct mime_ent *x = a, *y = b;
	int c = strcmp(x->ext, y->ext);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int add(struct bfs_mime *m, const char *ext, const char *type)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 256;
		struct mime_ent *e = realloc(m->e, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		m->e = e;
		m->cap = cap;
	}
	char *x = strdup(ext), *t = strdup(type);
	if (!x || !t) {
		free(x);
		free(t);
		return -ENOMEM;
	}
	for (char *p = x; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	m->e[m->n].ext = x;
	m->e[m->n].type = t;
	m->e[m->n].line = m->n;
	m->n++;
	return 0;
}

void bfs_mime_free(struct bfs_mime *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->e[i].ext);
		free(m->e[i].type);
	}
	free(m->e);
	free(m);
}

int bfs_mime_parse(FILE *f, struct bfs_mime **out)
{
	int rc = 0;
	char *line = NULL;
	size_t cap = 0;
	struct bfs_mime *m = calloc(1, sizeof(*m));
	*out = NULL;
	if (!m)
		return -ENOMEM;
	while (rc == 0 && getline(&line, &cap, f) >= 0) {
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *save = NULL, *type = strtok_r(line, " \t\r\n", &save);
		if (!type || !strchr(type, '/'))
			continue;
		for (char *ext; rc == 0 && (ext = strtok_r(NULL, " \t\r\n", &save));)
			rc = add(m, ext, type);
	}
	free(line);
	if (rc) {
		bfs_mime_free(m);
		return rc;
	}
	if (m->n > 1)
		qsort(m->e, m->n, sizeof(*m->e), cmp_ent);
	/* keep the first of equal extensions */
	size_t k = 0;
	for (size_t i = 0; i < m->n; i++) {
		if (k && strcmp(m->e[k - 1].ext, m->e[i].ext) == 0) {
			free(m->e[i].ext);
			free(m->e[i].type);
		} else {
			m->e[k++] = m->e[i];
		}
	}
	m->n = k;
	*out = m;
	return 0;
}

const char *bfs_mime_lookup(const struct bfs_mime *m, const char *name)
{
	const char *slash = strrchr(name, '/');
	const char *base = slash ? slash + 1 : name;
	const char *dot = strrchr(base, '.');
	if (!m || !dot || dot == base || !dot[1])
		return BFS_MIME_DEFAULT; /* no extension (".profile" has none either) */
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcasecmp(dot + 1, m->e[mid].ext);
		if (c == 0)
			return m->e[mid].type;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return BFS_MIME_DEFAULT;
}

/* the system table: written once under sys_once, read-only after */
static pthread_once_t sys_once = PTHREAD_ONCE_INIT;
static struct bfs_mime *sys_table;

static void sys_load(void)
{
	FILE *f = fopen(BFS_MIME_TYPES, "re");
	if (!f) {
		bfs_log(BFS_LOG_DEBUG, "%s: %s; new files get Content-Type " BFS_MIME_DEFAULT,
			BFS_MIME_TYPES, strerror(errno));
		return;
	}
	if (bfs_mime_parse(f, &sys_table))
		bfs_log(BFS_LOG_WARN, "%s: out of memory while reading it", BFS_MIME_TYPES);
	fclose(f);
}

const char *bfs_mime_type(const char *name)
{
	pthread_once(&sys_once, sys_load);
	return bfs_mime_lookup(sys_table, name);
}
