/* tools/bucketfs-fsck.c — bin/bucketfs-fsck: checks every object of a bucket (docs/integrity.md).
 *
 *   bucketfs-fsck BUCKET[:PREFIX] [-o OPTIONS] [--json] [--no-progress] [--abort-uploads]
 *                 [--delete-orphans]
 *
 * Lists the keys, then HEADs and reads every object in parallel (-o parallel=N), checking
 * block digests, whole-content MD5 (ETag or bfs-md5) and, with a key, HMAC signatures; also
 * directory markers, internal objects and unfinished multipart uploads. Exit 0 clean, 1
 * problems found, 2 error. Reads only, unless a repair flag says otherwise. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "fs/fs_int.h"
#include "util/util.h"

#define CHUNK (8u << 20)          /* bytes per GET while reading objects (whole digest blocks) */
#define ORPHAN_AGE_S 3600         /* --delete-orphans spares younger side objects (uploads) */
#define INODES_DIR ".bucketfs/inodes/"

struct obj {
	char *key;
	uint64_t size;
	char etag[72];
	struct timespec mtime;
	bool internal;      /* under .bucketfs/ */
	bool referenced;    /* internal object some object points to */
	long nlink;         /* a hard link's content object: its bfs-nlink (0: none) */
};

struct problem {
	const char *kind;
	char *key;
	char *detail;
};

struct fsck {
	struct bfs_options o;
	struct bfs_options vo;   /* o with hmac off: content checks without the policy */
	struct s3_client *s3;
	struct obj *objs;
	size_t n, cap;
	char **roots;            /* digest roots referenced (hex), for orphan detection */
	size_t nroots, roots_cap;
	char **links;            /* bfs-link targets referenced */
	size_t nlinks, links_cap;
	struct problem *probs;
	size_t nprobs, probs_cap;
	pthread_mutex_t mu;      /* probs, roots, links */
	atomic_size_t next, done;
	atomic_uint_fast64_t bytes_done;
	uint64_t bytes_total;
	bool json, progress, abort_uploads, delete_orphans, tty, stop;
	bool uploads_unchecked;  /* ListMultipartUploads not implemented by the server */
	int64_t t0;
};

static const char usage_line[] =
	"usage: bucketfs-fsck BUCKET[:PREFIX] [-o OPTIONS] [--json] [--no-progress] "
	"[--abort-uploads] [--delete-orphans]\n";

static const char help_text[] =
	"\n"
	"Checks every object of a bucket (or of the part under PREFIX/): block digests, content\n"
	"MD5, HMAC signatures (with hmac_key_file=), directory markers, hard links, bucketfs's\n"
	"internal objects and unfinished multipart uploads. Reads only, unless --abort-uploads\n"
	"or --delete-orphans is given. Problems go to stdout, one per line, then a summary.\n"
	"\n"
	"  -o OPTIONS        bucketfs options (see bucketfs --help): endpoint=, region=,\n"
	"                    path_style, ca_file=, no_verify_ssl, profile=, passwd_file=,\n"
	"                    hmac_key_file=, hmac=, timeout=, and parallel=N: objects\n"
	"                    checked at once (default 16, at most 64)\n"
	"  --json            the report as one JSON object on stdout\n"
	"  --no-progress     no progress lines on stderr\n"
	"  --abort-uploads   abort the unfinished multipart uploads found\n"
	"  --delete-orphans  delete internal objects nothing refers to, if older than 1 hour\n"
	"  -h, --help        this help\n"
	"\n"
	"Exit status: 0 no problems, 1 problems found, 2 error.\n";

static void usage(void)
{
	fputs(usage_line, stderr);
}

static int push(void **arr, size_t *n, size_t *cap, size_t elem)
{
	if (*n < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 256;
	void *p = realloc(*arr, nc * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = nc;
	return 0;
}

static void problem(struct fsck *f, const char *kind, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void problem(struct fsck *f, const char *kind, const char *key, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&f->mu);
	if (push((void **)&f->probs, &f->nprobs, &f->probs_cap, sizeof(*f->probs)) == 0) {
		struct problem *p = &f->probs[f->nprobs++];
		p->kind = kind;
		p->key = strdup(key);
		p->detail = strdup(buf);
	}
	pthread_mutex_unlock(&f->mu);
}

static void remember(struct fsck *f, char ***arr, size_t *n, size_t *cap, const char *s)
{
	pthread_mutex_lock(&f->mu);
	if (push((void **)arr, n, cap, sizeof(char *)) == 0)
		(*arr)[(*n)++] = strdup(s);
	pthread_mutex_unlock(&f->mu);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_obj(const void *a, const void *b)
{
	return strcmp(((const struct obj *)a)->key, ((const struct obj *)b)->key);
}

/* ---- listing ---- */

static int list_all(struct fsck *f, const char *prefix)
{
	char *token = NULL;
	int rc;
	for (;;) {
		struct s3_list_page pg;
		rc = s3_list(f->s3, prefix, NULL, token, 1000, &pg);
		free(token);
		token = NULL;
		if (rc)
			return rc;
		for (size_t i = 0; i < pg.nobjects; i++) {
			if (push((void **)&f->objs, &f->n, &f->cap, sizeof(*f->objs))) {
				s3_list_page_free(&pg);
				return -ENOMEM;
			}
			struct obj *o = &f->objs[f->n++];
			memset(o, 0, sizeof(*o));
			o->key = strdup(pg.objects[i].key);
			o->size = pg.objects[i].size;
			snprintf(o->etag, sizeof(o->etag), "%s", pg.objects[i].etag);
			o->mtime = pg.objects[i].last_modified;
			f->bytes_total += o->size;
		}
		if (pg.next_token)
			token = strdup(pg.next_token);
		s3_list_page_free(&pg);
		if (!token)
			return 0;
	}
}

/* ---- one object ---- */

static void check_content(struct fsck *f, struct obj *ob, const struct s3_object *h)
{
	struct bfs_verify *v = NULL;
	int rc = bfs_integrity_prepare(&f->vo, ob->key, h->etag, h->size, &h->meta, &v);
	if (rc) {
		problem(f, "corrupt", ob->key, "digest headers unusable (%s)", strerror(-rc));
		return;
	}
	/* whole-content MD5 when known: bfs-md5, else a plain-MD5 ETag */
	unsigned char want_md5[16], got_md5[16];
	const char *m5 = s3_meta_get(&h->meta, "bfs-md5");
	const char *src = m5 ? m5 : (!strchr(h->etag, '-') ? h->etag : NULL);
	bool have_md5 = false;
	if (src && strlen(src) == 32) {
		have_md5 = true;
		for (int i = 0; i < 16 && have_md5; i++) {
			unsigned x;
			if (sscanf(src + 2 * i, "%2x", &x) != 1)
				have_md5 = false;
			want_md5[i] = (unsigned char)x;
		}
	}
	EVP_MD_CTX *md5 = EVP_MD_CTX_new();
	unsigned char *buf = malloc(CHUNK);
	if (!md5 || !buf) {
		problem(f, "unreadable", ob->key, "out of memory");
		goto out;
	}
	EVP_DigestInit_ex(md5, EVP_md5(), NULL);
	for (uint64_t off = 0; off < h->size;) {
		size_t want = h->size - off < CHUNK ? (size_t)(h->size - off) : CHUNK, got = 0;
		uint64_t bad = 0;
		int vrc = 0;
		for (int attempt = 0; attempt < 2; attempt++) { /* a wire error is not corruption */
			rc = s3_get_range(f->s3, ob->key, off, want, buf, &got, h->etag, NULL);
			if (rc == 0 && got != want)
				rc = -ESTALE;
			if (rc)
				break;
			vrc = bfs_verify_blocks(f->s3, v, ob->key, off, buf, want, &bad);
			if (vrc != -EIO)
				break;
		}
		if (rc) {
			problem(f, "unreadable", ob->key, "GET at %" PRIu64 ": %s", off,
				rc == -ESTALE ? "object changed during the check" : s3_last_error());
			goto out;
		}
		if (vrc == -EIO) {
			problem(f, "corrupt", ob->key, "block %" PRIu64 " does not match its digest",
				bad);
			goto out;
		}
		if (vrc) {
			problem(f, "corrupt", ob->key, "digest list unusable: %s", strerror(-vrc));
			goto out;
		}
		if (have_md5)
			EVP_DigestUpdate(md5, buf, want);
		off += want;
		atomic_fetch_add(&f->bytes_done, want);
	}
	if (have_md5) {
		EVP_DigestFinal_ex(md5, got_md5, NULL);
		if (CRYPTO_memcmp(got_md5, want_md5, 16) != 0)
			problem(f, "corrupt", ob->key, "content does not match its %s",
				m5 ? "bfs-md5" : "ETag (MD5)");
	}
out:
	EVP_MD_CTX_free(md5);
	free(buf);
	bfs_verify_free(v);
}

static void check_object(struct fsck *f, struct obj *ob)
{
	struct s3_object h;
	int rc = s3_head(f->s3, ob->key, &h);
	if (rc) {
		if (rc != -ENOENT) /* deleted since the listing: not a problem */
			problem(f, "unreadable", ob->key, "HEAD: %s", s3_last_error());
		atomic_fetch_add(&f->bytes_done, ob->size);
		return;
	}
	const char *dg = s3_meta_get(&h.meta, "bfs-digest");
	char root[65];
	if (dg && sscanf(dg, "sha256:%*u:%64[0-9a-fA-F]", root) == 1 && h.size > BFS_INTEGRITY_BLOCK)
		remember(f, &f->roots, &f->nroots, &f->roots_cap, root);
	const char *ln = s3_meta_get(&h.meta, "bfs-link");
	if (ln)
		remember(f, &f->links, &f->nlinks, &f->links_cap, ln);
	const char *nl = s3_meta_get(&h.meta, "bfs-nlink");
	ob->nlink = nl ? strtol(nl, NULL, 10) : 0;
	size_t kl = strlen(ob->key);
	if (kl && ob->key[kl - 1] == '/' && h.size > 0)
		problem(f, "marker-with-body", ob->key, "directory marker holds %" PRIu64 " bytes",
			h.size);
	if (f->o.nhmac_keys) {
		enum bfs_sig_status s = bfs_integrity_sig_status(&f->o, ob->key, h.size, &h.meta);
		if (s == BFS_SIG_NONE)
			problem(f, "unsigned", ob->key, "no bfs-sig header");
		else if (s == BFS_SIG_BAD)
			problem(f, "bad-signature", ob->key, "signature does not match the key, "
				"metadata or content digest");
		else if (s == BFS_SIG_UNKNOWN_KEY)
			problem(f, "unknown-key", ob->key, "signed with key id %s",
				s3_meta_get(&h.meta, "bfs-keyid") ? s3_meta_get(&h.meta, "bfs-keyid") : "?");
	}
	uint64_t before = atomic_load(&f->bytes_done);
	check_content(f, ob, &h);
	/* count the whole object as done even when the check stopped early */
	uint64_t counted = atomic_load(&f->bytes_done) - before;
	if (counted < ob->size)
		atomic_fetch_add(&f->bytes_done, ob->size - counted);
	s3_object_free(&h);
}

/* A side object .bucketfs/digests/<root>: its body must hash to its name. */
static void check_digest_object(struct fsck *f, struct obj *ob)
{
	const char *name = strrchr(ob->key, '/') + 1;
	size_t got = 0;
	unsigned char *buf = malloc(ob->size ? ob->size : 1);
	int rc = buf ? s3_get_range(f->s3, ob->key, 0, ob->size, buf, &got, NULL, NULL) : -ENOMEM;
	if (rc == 0) {
		unsigned char r[32];
		char hex[65];
		bfs_integrity_root(BFS_INTEGRITY_BLOCK, buf, got / 32, r);
		bfs_hex(r, 32, hex);
		if (got != ob->size || got % 32 || strcmp(hex, name) != 0)
			problem(f, "corrupt", ob->key, "digest list does not hash to its name");
	} else if (rc != -ENOENT) {
		problem(f, "unreadable", ob->key, "GET: %s", s3_last_error());
	}
	free(buf);
	atomic_fetch_add(&f->bytes_done, ob->size);
}

static void *worker(void *arg)
{
	struct fsck *f = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&f->next, 1);
		if (i >= f->n)
			break;
		struct obj *ob = &f->objs[i];
		size_t pl = strlen(f->o.prefix);
		if (strncmp(ob->key, f->o.prefix, pl) == 0 &&
		    strncmp(ob->key + pl, BFS_DIGEST_DIR, strlen(BFS_DIGEST_DIR)) == 0)
			check_digest_object(f, ob);
		else
			check_object(f, ob);
		atomic_fetch_add(&f->done, 1);
	}
	return NULL;
}

/* ---- progress ---- */

static void human(double b, char *out, size_t n)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int i = 0;
	while (b >= 1024 && i < 4) {
		b /= 1024;
		i++;
	}
	snprintf(out, n, "%.1f %s", b, u[i]);
}

static void print_progress(struct fsck *f, bool final)
{
	double el = (double)(bfs_mono_ns() - f->t0) / 1e9;
	uint64_t bd = atomic_load(&f->bytes_done);
	double rate = el > 0 ? (double)bd / el : 0;
	char a[32], b[32], r[32], eta[32] = "--:--";
	human((double)bd, a, sizeof(a));
	human((double)f->bytes_total, b, sizeof(b));
	human(rate, r, sizeof(r));
	if (rate > 0 && f->bytes_total >= bd) {
		long s = (long)((double)(f->bytes_total - bd) / rate);
		snprintf(eta, sizeof(eta), "%ld:%02ld", s / 60, s % 60);
	}
	size_t d = atomic_load(&f->done);
	if (f->tty) {
		int pct = f->bytes_total ? (int)(100.0 * (double)bd / (double)f->bytes_total) : 100;
		char bar[21];
		for (int i = 0; i < 20; i++)
			bar[i] = i < pct / 5 ? '#' : '.';
		bar[20] = '\0';
		fprintf(stderr, "\r[%s] %zu/%zu objects  %s/%s  %s/s  ETA %s   %s", bar, d, f->n, a,
			b, r, eta, final ? "\n" : "");
	} else {
		fprintf(stderr, "progress: %zu/%zu objects, %s/%s, %s/s, ETA %s\n", d, f->n, a, b, r,
			eta);
	}
	fflush(stderr);
}

static void *progress_thread(void *arg)
{
	struct fsck *f = arg;
	int ticks = 0;
	while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
		usleep(100000);
		if (++ticks % (f->tty ? 3 : 50) == 0)
			print_progress(f, false);
	}
	return NULL;
}

/* ---- structure (from the listing alone) ---- */

/* Hard links (docs/hardlinks.md): every name's content object exists and counts at least
 * its names, or removing one name deletes data another still shows. A count above the
 * names (an interrupted link or unlink) only keeps the content from being freed. */
static void check_links(struct fsck *f)
{
	for (size_t i = 0, j; i < f->nlinks; i = j) {
		for (j = i + 1; j < f->nlinks && strcmp(f->links[j], f->links[i]) == 0; j++)
			;
		size_t refs = j - i;
		struct obj want = { .key = f->links[i] };
		struct obj *c = f->n ? bsearch(&want, f->objs, f->n, sizeof(*f->objs), cmp_obj)
				     : NULL;
		if (!c)
			problem(f, "dangling-link", f->links[i], "%zu name(s) point to this content "
				"object, which is missing", refs);
		else if (c->nlink < (long)refs)
			problem(f, "link-count", c->key, "counts %ld name(s) but %zu point to it: "
				"removing one would delete data the others show", c->nlink, refs);
		else if (c->nlink > (long)refs)
			problem(f, "link-count", c->key, "counts %ld name(s) but %zu point to it: "
				"it is never freed", c->nlink, refs);
	}
}

static void check_structure(struct fsck *f)
{
	if (f->nroots)
		qsort(f->roots, f->nroots, sizeof(char *), cmp_str);
	if (f->nlinks)
		qsort(f->links, f->nlinks, sizeof(char *), cmp_str);
	check_links(f);
	for (size_t i = 0; i < f->n; i++) {
		struct obj *ob = &f->objs[i];
		size_t kl = strlen(ob->key);
		if (kl && ob->key[kl - 1] != '/' && i + 1 < f->n &&
		    strncmp(f->objs[i + 1].key, ob->key, kl) == 0) {
			/* the next keys sort right after ob->key: is one of them under "key/"? */
			for (size_t j = i + 1; j < f->n && strncmp(f->objs[j].key, ob->key, kl) == 0; j++)
				if (f->objs[j].key[kl] == '/') {
					problem(f, "file-and-directory", ob->key, "a file and a directory "
						"prefix (%s) share this name", f->objs[j].key);
					break;
				}
		}
		const char *ik = strstr(ob->key, ".bucketfs/");
		if (!ik || (ik != ob->key && ik[-1] != '/'))
			continue;
		if (ik == ob->key + strlen(f->o.prefix) &&
		    strncmp(ik, BFS_DIGEST_DIR, strlen(BFS_DIGEST_DIR)) == 0) {
			const char *name = ik + strlen(BFS_DIGEST_DIR);
			ob->referenced = f->nroots &&
					 bsearch(&name, f->roots, f->nroots, sizeof(char *), cmp_str);
		} else if (strstr(ik, INODES_DIR) == ik) {
			const char *name = ob->key;
			ob->referenced = f->nlinks &&
					 bsearch(&name, f->links, f->nlinks, sizeof(char *), cmp_str);
		} else {
			ob->referenced = false;
		}
		if (!ob->referenced) {
			int64_t age = bfs_now_ns() / 1000000000 - ob->mtime.tv_sec;
			problem(f, "orphan", ob->key, "internal object no object refers to (%lld s old)",
				(long long)age);
			if (f->delete_orphans && age >= ORPHAN_AGE_S) {
				int rc = s3_delete(f->s3, ob->key);
				fprintf(stderr, "%s orphan %s\n", rc ? "could not delete" : "deleted",
					ob->key);
			}
		}
	}
}

static int check_uploads(struct fsck *f, const char *prefix)
{
	char *km = NULL, *um = NULL;
	int rc;
	for (;;) {
		struct s3_upload_list l;
		rc = s3_multipart_list(f->s3, prefix[0] ? prefix : NULL, km, um, &l);
		free(km);
		free(um);
		km = um = NULL;
		if (rc)
			return rc;
		for (size_t i = 0; i < l.n; i++) {
			problem(f, "incomplete-upload", l.uploads[i].key, "upload %s started %lld",
				l.uploads[i].upload_id, (long long)l.uploads[i].initiated.tv_sec);
			if (f->abort_uploads) {
				int a = s3_multipart_abort(f->s3, l.uploads[i].key, l.uploads[i].upload_id);
				fprintf(stderr, "%s upload %s of %s\n", a ? "could not abort" : "aborted",
					l.uploads[i].upload_id, l.uploads[i].key);
			}
		}
		if (l.next_key_marker) {
			km = strdup(l.next_key_marker);
			um = l.next_upload_id_marker ? strdup(l.next_upload_id_marker) : NULL;
		}
		s3_upload_list_free(&l);
		if (!km)
			return 0;
	}
}

/* ---- output ---- */

static void json_str(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static int cmp_prob(const void *a, const void *b)
{
	const struct problem *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : strcmp(x->kind, y->kind);
}

static void report(struct fsck *f, double secs)
{
	if (f->nprobs)
		qsort(f->probs, f->nprobs, sizeof(*f->probs), cmp_prob);
	if (f->json) {
		printf("{\"bucket\":");
		json_str(f->o.bucket);
		printf(",\"prefix\":");
		json_str(f->o.prefix);
		printf(",\"objects\":%zu,\"bytes\":%" PRIu64 ",\"seconds\":%.3f,\"hmac\":%s,"
		       "\"uploads_checked\":%s,\"problems\":[", f->n, f->bytes_total, secs,
		       f->o.nhmac_keys ? "true" : "false", f->uploads_unchecked ? "false" : "true");
		for (size_t i = 0; i < f->nprobs; i++) {
			printf("%s{\"kind\":", i ? "," : "");
			json_str(f->probs[i].kind);
			printf(",\"key\":");
			json_str(f->probs[i].key);
			printf(",\"detail\":");
			json_str(f->probs[i].detail);
			printf("}");
		}
		printf("]}\n");
		return;
	}
	for (size_t i = 0; i < f->nprobs; i++)
		printf("%-18s %s: %s\n", f->probs[i].kind, f->probs[i].key, f->probs[i].detail);
	char b[32];
	human((double)f->bytes_total, b, sizeof(b));
	printf("%zu objects, %s checked in %.1f s%s: %zu problem%s\n", f->n, b, secs,
	       f->o.nhmac_keys ? "" : " (no hmac_key_file: signatures not checked)", f->nprobs,
	       f->nprobs == 1 ? "" : "s");
}

int main(int argc, char **argv)
{
	struct bfs_creds cr = { 0 }; /* freed at out:, after the client that may use it */
	struct fsck f;
	memset(&f, 0, sizeof(f));
	pthread_mutex_init(&f.mu, NULL);
	f.progress = true;
	/* our flags out, the rest to the bucketfs option parser (with "/" as a dummy mountpoint) */
	char **pargv = calloc((size_t)argc + 2, sizeof(char *));
	int pargc = 0;
	if (!pargv)
		return 2;
	pargv[pargc++] = argv[0];
	const char *spec = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			f.json = true;
		else if (!strcmp(argv[i], "--no-progress"))
			f.progress = false;
		else if (!strcmp(argv[i], "--abort-uploads"))
			f.abort_uploads = true;
		else if (!strcmp(argv[i], "--delete-orphans"))
			f.delete_orphans = true;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			printf("%s%s", usage_line, help_text);
			free(pargv);
			return 0;
		} else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
			pargv[pargc++] = argv[i++];
			pargv[pargc++] = argv[i];
		} else if (argv[i][0] == '-' && strncmp(argv[i], "-o", 2) != 0) {
			fprintf(stderr, "bucketfs-fsck: unknown argument '%s'\n", argv[i]);
			usage();
			free(pargv);
			return 2;
		} else if (!strncmp(argv[i], "-o", 2)) {
			pargv[pargc++] = argv[i];
		} else if (!spec) {
			spec = argv[i];
		} else {
			fprintf(stderr, "bucketfs-fsck: unexpected argument '%s'\n", argv[i]);
			free(pargv);
			return 2;
		}
	}
	if (!spec) {
		usage();
		free(pargv);
		return 2;
	}
	/* BUCKET[:PREFIX] then the dummy mountpoint, before the options */
	memmove(pargv + 3, pargv + 1, (size_t)(pargc - 1) * sizeof(char *));
	pargv[1] = (char *)spec;
	pargv[2] = (char *)"/";
	pargc += 2;
	char err[1024] = "";
	int rc = bfs_options_parse(pargc, pargv, &f.o, err, sizeof(err));
	free(pargv);
	if (rc) {
		if (rc != 1)
			fprintf(stderr, "%s\n", err[0] ? err : "bucketfs-fsck: bad options");
		bfs_options_free(&f.o);
		return rc == 1 ? 0 : 2;
	}
	bfs_log_setup(0, BFS_LOG_ERR);
	int status = 2;
	if (bfs_creds_load(&f.o, &cr, err, sizeof(err)) ||
	    bfs_integrity_load_keys(&f.o, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	f.vo = f.o;
	f.vo.hmac_mode = BFS_HMAC_OFF;
	struct s3_config cfg;
	bfs_s3_config(&f.o, &cr, &cfg);
	cfg.unreachable_wait_s = 0; /* a tool run by hand: an unreachable server fails at once */
	rc = s3_client_new(&cfg, &f.s3);
	if (rc || (rc = s3_bucket_check(f.s3))) {
		fprintf(stderr, "bucketfs-fsck: cannot use bucket %s: %s\n", f.o.bucket,
			rc == -ENXIO ? "no such bucket" : s3_last_error());
		goto out;
	}
	f.t0 = bfs_mono_ns();
	rc = list_all(&f, f.o.prefix); /* side objects live under the prefix too */
	if (rc) {
		fprintf(stderr, "bucketfs-fsck: cannot list %s: %s\n", f.o.bucket, s3_last_error());
		goto out;
	}
	if (f.n)
		qsort(f.objs, f.n, sizeof(*f.objs), cmp_obj);
	f.tty = isatty(2);
	pthread_t prog;
	bool prog_on = f.progress && pthread_create(&prog, NULL, progress_thread, &f) == 0;
	int nth = f.o.max_connections > 0 ? f.o.max_connections : 16;
	if (nth > 64)
		nth = 64;
	pthread_t *th = calloc((size_t)nth, sizeof(*th));
	int started = 0;
	for (; th && started < nth; started++)
		if (pthread_create(&th[started], NULL, worker, &f))
			break;
	if (started == 0)
		worker(&f);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	free(th);
	__atomic_store_n(&f.stop, true, __ATOMIC_RELEASE);
	if (prog_on) {
		pthread_join(prog, NULL);
		print_progress(&f, true);
	}
	check_structure(&f);
	rc = check_uploads(&f, f.o.prefix);
	if (rc == -ENOSYS) { /* e.g. s3rver: the server cannot list them; not the bucket's fault */
		fprintf(stderr, "bucketfs-fsck: warning: the server cannot list multipart uploads; "
			"unfinished uploads not checked\n");
		f.uploads_unchecked = true;
		rc = 0;
	}
	if (rc) {
		fprintf(stderr, "bucketfs-fsck: cannot list multipart uploads: %s\n", s3_last_error());
		goto out;
	}
	report(&f, (double)(bfs_mono_ns() - f.t0) / 1e9);
	status = f.nprobs ? 1 : 0;
out:
	for (size_t i = 0; i < f.n; i++)
		free(f.objs[i].key);
	free(f.objs);
	for (size_t i = 0; i < f.nprobs; i++) {
		free(f.probs[i].key);
		free(f.probs[i].detail);
	}
	free(f.probs);
	for (size_t i = 0; i < f.nroots; i++)
		free(f.roots[i]);
	free(f.roots);
	for (size_t i = 0; i < f.nlinks; i++)
		free(f.links[i]);
	free(f.links);
	s3_client_free(f.s3);
	bfs_creds_free(&cr); /* after the client: it may ask cr's source for new keys */
	bfs_options_free(&f.o);
	return status;
}
