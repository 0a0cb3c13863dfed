/* fs/integrity.c — content digests and HMAC signatures of objects (docs/integrity.md).
 *
 * Upload side: bfs_integrity_seal() hashes the staging file in 1 MiB blocks, records the
 * digests (header, or a content-addressed side object PREFIX.bucketfs/digests/<root>) and signs
 * key + POSIX metadata + digest root with the first HMAC key. Read side: the attribute loader
 * calls bfs_integrity_check_meta(); reads go through bfs_integrity_fetch(), which fetches
 * whole digest blocks and checks them before the cache stores them.
 *
 * Thread-safe: the only shared state is the digest-list LRU and the warned-once table, each
 * behind its own mutex, never held across S3 requests. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fs/fs_int.h"
#include "util/util.h"

#define H_DIGEST "bfs-digest"
#define H_BLOCKS "bfs-blocks"
#define H_MD5 "bfs-md5"
#define H_SIG "bfs-sig"
#define H_KEYID "bfs-keyid"
#define H_DLIST "bfs-dlist" /* key of the side object holding the digest list */
#define LIST_CACHE 64

/* ---- primitives ---- */

void bfs_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
		     unsigned char out[32])
{
	unsigned int n = 32;
	HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &n);
}

static void sha256(const void *p, size_t n, unsigned char out[32])
{
	EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL);
}

void bfs_integrity_root(uint64_t block_size, const unsigned char *list, size_t nblocks,
			unsigned char root[32])
{
	char head[48];
	int hl = snprintf(head, sizeof(head), "bfs-blocks-v1\n%" PRIu64 "\n", block_size);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (!c) { /* cannot happen short of OOM; make the root unmatchable */
		memset(root, 0, 32);
		return;
	}
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	EVP_DigestUpdate(c, head, (size_t)hl);
	if (nblocks)
		EVP_DigestUpdate(c, list, nblocks * 32);
	EVP_DigestFinal_ex(c, root, NULL);
	EVP_MD_CTX_free(c);
}

static void add_field(char **p, size_t *len, size_t *cap, const char *name, const char *v,
		      int *err)
{
	if (*err)
		return;
	if (!v)
		v = "";
	size_t vl = strlen(v), need = strlen(name) + vl + 32;
	if (*len + need > *cap) {
		size_t nc = (*cap + need) * 2;
		char *np = realloc(*p, nc);
		if (!np) {
			*err = -ENOMEM;
			return;
		}
		*p = np;
		*cap = nc;
	}
	*len += (size_t)sprintf(*p + *len, "%s=%zu:", name, vl);
	memcpy(*p + *len, v, vl);
	*len += vl;
	(*p)[(*len)++] = '\n';
	(*p)[*len] = '\0';
}

char *bfs_integrity_canonical(const char *key, const struct s3_meta *m, uint64_t size)
{
	size_t len = 0, cap = 0;
	char *p = NULL, sz[24];
	int err = 0;
	snprintf(sz, sizeof(sz), "%" PRIu64, size);
	add_field(&p, &len, &cap, "v", "bfs-sig-v1", &err);
	add_field(&p, &len, &cap, "key", key, &err);
	add_field(&p, &len, &cap, "mode", s3_meta_get(m, "mode"), &err);
	add_field(&p, &len, &cap, "uid", s3_meta_get(m, "uid"), &err);
	add_field(&p, &len, &cap, "gid", s3_meta_get(m, "gid"), &err);
	add_field(&p, &len, &cap, "size", sz, &err);
	add_field(&p, &len, &cap, "mtime", s3_meta_get(m, "mtime"), &err);
	add_field(&p, &len, &cap, "digest", s3_meta_get(m, H_DIGEST), &err);
	if (err) {
		free(p);
		return NULL;
	}
	return p;
}

/* ---- keys ---- */

static void key_id(const unsigned char *k, size_t n, char id[9])
{
	unsigned char h[32];
	sha256(k, n, h);
	bfs_hex(h, 4, id);
}

int bfs_integrity_load_keys(struct bfs_options *o, char *err, size_t errlen)
{
	int rc = 0;
	FILE *f = NULL;
	char *line = NULL;
	size_t cap = 0;
	if (!o->hmac_key_file) {
		if (o->hmac_mode == BFS_HMAC_DEFAULT)
			o->hmac_mode = BFS_HMAC_OFF;
		if (o->hmac_mode != BFS_HMAC_OFF) {
			snprintf(err, errlen, "bucketfs: -o hmac=sign/verify/require needs "
				 "-o hmac_key_file=FILE");
			return -EINVAL;
		}
		return 0;
	}
	if (o->hmac_mode == BFS_HMAC_DEFAULT)
		o->hmac_mode = BFS_HMAC_VERIFY;
	int fd = open(o->hmac_key_file, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "bucketfs: cannot read hmac_key_file %s: %s", o->hmac_key_file,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & 077)) {
		close(fd);
		snprintf(err, errlen, "bucketfs: hmac_key_file %s is %s; it must be a regular file "
			 "only its owner can read (chmod 600)", o->hmac_key_file,
			 S_ISREG(st.st_mode) ? "accessible by group or others" : "not a regular file");
		return -EACCES;
	}
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	ssize_t n;
	while ((n = getline(&line, &cap, f)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
				 line[n - 1] == '\t'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if (n < 16 || (size_t)n > sizeof(o->hmac_keys[0].key)) {
			snprintf(err, errlen, "bucketfs: hmac_key_file %s: a key must be 16 to %zu "
				 "bytes long", o->hmac_key_file, sizeof(o->hmac_keys[0].key));
			rc = -EINVAL;
			goto out;
		}
		struct bfs_hmac_key *nk = realloc(o->hmac_keys, (o->nhmac_keys + 1) * sizeof(*nk));
		if (!nk) {
			rc = -ENOMEM;
			goto out;
		}
		o->hmac_keys = nk;
		struct bfs_hmac_key *k = &o->hmac_keys[o->nhmac_keys++];
		memcpy(k->key, line, (size_t)n);
		k->len = (size_t)n;
		key_id(k->key, k->len, k->id);
	}
	if (o->nhmac_keys == 0) {
		snprintf(err, errlen, "bucketfs: hmac_key_file %s holds no key", o->hmac_key_file);
		rc = -EINVAL;
	}
out:
	if (line) {
		OPENSSL_cleanse(line, cap);
		free(line);
	}
	fclose(f);
	if (rc)
		bfs_integrity_free_keys(o);
	return rc;
}

void bfs_integrity_free_keys(struct bfs_options *o)
{
	if (o->hmac_keys)
		OPENSSL_cleanse(o->hmac_keys, o->nhmac_keys * sizeof(*o->hmac_keys));
	free(o->hmac_keys);
	o->hmac_keys = NULL;
	o->nhmac_keys = 0;
}

/* ---- signatures ---- */

static void strip_sig(struct s3_meta *m)
{
	s3_meta_del(m, H_SIG);
	s3_meta_del(m, H_KEYID);
}

int bfs_integrity_sign(const struct bfs_options *o, const char *key, uint64_t size,
		       struct s3_meta *m)
{
	strip_sig(m);
	if (o->hmac_mode == BFS_HMAC_OFF || o->nhmac_keys == 0)
		return 0;
	char *c = bfs_integrity_canonical(key, m, size);
	if (!c)
		return -ENOMEM;
	unsigned char mac[32];
	char hex[65];
	bfs_hmac_sha256(o->hmac_keys[0].key, o->hmac_keys[0].len, c, strlen(c), mac);
	free(c);
	bfs_hex(mac, 32, hex);
	int rc = s3_meta_set(m, H_SIG, hex);
	if (rc == 0)
		rc = s3_meta_set(m, H_KEYID, o->hmac_keys[0].id);
	OPENSSL_cleanse(mac, sizeof(mac));
	return rc;
}

enum bfs_sig_status bfs_integrity_sig_status(const struct bfs_options *o, const char *key,
					     uint64_t size, const struct s3_meta *m)
{
	const char *sig = s3_meta_get(m, H_SIG), *id = s3_meta_get(m, H_KEYID);
	if (!sig)
		return BFS_SIG_NONE;
	unsigned char want[32], got[32];
	if (bfs_unhex(sig, got, 32) != 0)
		return BFS_SIG_BAD;
	const struct bfs_hmac_key *k = NULL;
	for (size_t i = 0; i < o->nhmac_keys && !k; i++)
		if (id && strcmp(id, o->hmac_keys[i].id) == 0)
			k = &o->hmac_keys[i];
	if (!k)
		return BFS_SIG_UNKNOWN_KEY;
	char *c = bfs_integrity_canonical(key, m, size);
	if (!c)
		return BFS_SIG_BAD;
	bfs_hmac_sha256(k->key, k->len, c, strlen(c), want);
	free(c);
	return CRYPTO_memcmp(want, got, 32) == 0 ? BFS_SIG_OK : BFS_SIG_BAD;
}

const char *bfs_sig_status_name(enum bfs_sig_status s)
{
	switch (s) {
	case BFS_SIG_OK: return "ok";
	case BFS_SIG_NONE: return "unsigned";
	case BFS_SIG_BAD: return "bad-signature";
	case BFS_SIG_UNKNOWN_KEY: return "unknown-key";
	}
	return "?";
}

/* Unsigned objects under verify are logged once each (by key hash, 4096 slots). */
static pthread_mutex_t warned_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t warned[4096];

static bool first_warning(const char *key)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = key; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	h |= 1;
	pthread_mutex_lock(&warned_mu);
	bool first = warned[h % 4096] != h;
	warned[h % 4096] = h;
	pthread_mutex_unlock(&warned_mu);
	return first;
}

int bfs_integrity_policy(const struct bfs_options *o, const char *key, uint64_t size,
			 const struct s3_meta *m)
{
	if (o->hmac_mode == BFS_HMAC_OFF || o->hmac_mode == BFS_HMAC_SIGN ||
	    o->hmac_mode == BFS_HMAC_DEFAULT)
		return 0;
	enum bfs_sig_status s = bfs_integrity_sig_status(o, key, size, m);
	if (s == BFS_SIG_OK)
		return 0;
	if (s == BFS_SIG_NONE && o->hmac_mode == BFS_HMAC_VERIFY) {
		if (first_warning(key))
			bfs_log(BFS_LOG_WARN, "%s: object is not signed (served: hmac=verify)", key);
		return 0;
	}
	bfs_log(BFS_LOG_ERR, "%s: access refused: %s%s%s", key,
		s == BFS_SIG_NONE ? "object is not signed (hmac=require)"
		: s == BFS_SIG_UNKNOWN_KEY ? "signed with an unknown key, id "
		: "signature does not match the object's key, metadata or content digest",
		s == BFS_SIG_UNKNOWN_KEY ? (s3_meta_get(m, H_KEYID) ? s3_meta_get(m, H_KEYID) : "?") : "",
		"");
	return -EACCES;
}

int bfs_integrity_check_meta(struct bfs_fs *fs, const char *key, const struct s3_object *o)
{
	if (!o)
		return 0; /* implicit directory: nothing stored, nothing to sign */
	return bfs_integrity_policy(fs->opts, key, o->size, &o->meta);
}

int bfs_integrity_resign(const struct bfs_options *o, const char *old_key,
			 const struct s3_meta *old, uint64_t size, const char *new_key,
			 struct s3_meta *m)
{
	if (o->hmac_mode == BFS_HMAC_OFF || o->nhmac_keys == 0 || !s3_meta_get(m, H_DIGEST)) {
		strip_sig(m);
		return 0;
	}
	enum bfs_sig_status s = bfs_integrity_sig_status(o, old_key, size, old);
	if (s != BFS_SIG_OK) {
		/* never bless metadata or content we could not check */
		strip_sig(m);
		bfs_log(BFS_LOG_WARN, "%s: not re-signed: its current signature is %s", new_key,
			bfs_sig_status_name(s));
		return 0;
	}
	return bfs_integrity_sign(o, new_key, size, m);
}

int bfs_integrity_copy(struct s3_client *s3, const struct bfs_options *o, const char *src,
		       const char *dst)
{
	if (o->hmac_mode == BFS_HMAC_OFF || o->nhmac_keys == 0)
		return s3_copy(s3, src, dst, NULL, NULL, NULL, NULL);
	struct s3_object h;
	int rc = s3_head(s3, src, &h);
	if (rc)
		return rc;
	struct s3_meta m;
	rc = s3_meta_copy(&m, &h.meta);
	if (rc == 0) {
		rc = bfs_integrity_resign(o, src, &h.meta, h.size, dst, &m);
		if (rc == 0)
			rc = s3_copy(s3, src, dst, &m, h.content_type[0] ? h.content_type : NULL,
				     h.etag[0] ? h.etag : NULL, NULL);
		s3_meta_free(&m);
	}
	s3_object_free(&h);
	return rc;
}

/* ---- digests of content ---- */

struct bfs_digester {
	EVP_MD_CTX *blk, *md5;
	uint64_t bs, in_block;
	unsigned char *list;
	size_t n, cap;
};

static int dg_init(struct bfs_digester *d, uint64_t bs, bool want_md5)
{
	memset(d, 0, sizeof(*d));
	d->bs = bs;
	d->blk = EVP_MD_CTX_new();
	d->md5 = want_md5 ? EVP_MD_CTX_new() : NULL;
	if (!d->blk || (want_md5 && !d->md5))
		return -ENOMEM;
	EVP_DigestInit_ex(d->blk, EVP_sha256(), NULL);
	if (d->md5)
		EVP_DigestInit_ex(d->md5, EVP_md5(), NULL);
	return 0;
}

static void dg_free(struct bfs_digester *d)
{
	EVP_MD_CTX_free(d->blk);
	EVP_MD_CTX_free(d->md5);
	free(d->list);
}

static int dg_close_block(struct bfs_digester *d)
{
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 64;
		unsigned char *nl = realloc(d->list, nc * 32);
		if (!nl)
			return -ENOMEM;
		d->list = nl;
		d->cap = nc;
	}
	EVP_DigestFinal_ex(d->blk, d->list + 32 * d->n++, NULL);
	EVP_DigestInit_ex(d->blk, EVP_sha256(), NULL);
	d->in_block = 0;
	return 0;
}

static int dg_update(struct bfs_digester *d, const unsigned char *p, size_t n)
{
	if (d->md5)
		EVP_DigestUpdate(d->md5, p, n);
	while (n) {
		size_t take = d->bs - d->in_block < n ? (size_t)(d->bs - d->in_block) : n;
		EVP_DigestUpdate(d->blk, p, take);
		d->in_block += take;
		p += take;
		n -= take;
		if (d->in_block == d->bs) {
			int rc = dg_close_block(d);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int dg_finish(struct bfs_digester *d, unsigned char md5[16])
{
	if (d->in_block) {
		int rc = dg_close_block(d);
		if (rc)
			return rc;
	}
	if (d->md5)
		EVP_DigestFinal_ex(d->md5, md5, NULL);
	return 0;
}

/* Writes digest headers into m for content whose digester is finished; PUTs the side
 * object for lists of more than one block. */
static int put_digests(struct s3_client *s3, const char *prefix, struct bfs_digester *d,
		       bool md5, const unsigned char md5sum[16], struct s3_meta *m)
{
	unsigned char root[32];
	char hex[65], val[96];
	bfs_integrity_root(d->bs, d->list, d->n, root);
	bfs_hex(root, 32, hex);
	snprintf(val, sizeof(val), "sha256:%" PRIu64 ":%s", d->bs, hex);
	int rc = s3_meta_set(m, H_DIGEST, val);
	if (rc == 0 && d->n == 1) {
		char bl[65];
		bfs_hex(d->list, 32, bl);
		rc = s3_meta_set(m, H_BLOCKS, bl);
	}
	if (rc == 0 && md5) {
		char mh[33];
		bfs_hex(md5sum, 16, mh);
		rc = s3_meta_set(m, H_MD5, mh);
	}
	if (rc == 0 && d->n > 1) {
		char side[1200];
		snprintf(side, sizeof(side), "%s" BFS_DIGEST_DIR "%s", prefix, hex);
		/* where it is goes in a header: mounts of other prefixes read it too (it is
		 * named by its hash, so it is checked, not trusted) */
		rc = s3_meta_set(m, H_DLIST, side);
		if (rc == 0)
			rc = s3_put_buf(s3, side, d->list, d->n * 32, "application/octet-stream",
					NULL, NULL);
		if (rc)
			bfs_log(BFS_LOG_ERR, "%s: cannot store the digest list: %s", side,
				s3_last_error());
	}
	return rc;
}

bool bfs_integrity_same_content(const struct s3_object *o, int fd, uint64_t size)
{
	unsigned char want[16], got[16];
	const char *mh = s3_meta_get(&o->meta, H_MD5);
	if (o->size != size)
		return false;
	if (!(mh && bfs_unhex(mh, want, 16) == 0) &&
	    (strchr(o->etag, '-') || bfs_unhex(o->etag, want, 16) != 0))
		return false; /* no whole-content MD5 to compare with */
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *buf = malloc(1 << 20);
	bool same = false;
	if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_md5(), NULL))
		goto out;
	for (uint64_t off = 0; off < size;) {
		size_t n = size - off < (1 << 20) ? (size_t)(size - off) : (size_t)1 << 20;
		ssize_t r = pread(fd, buf, n, (off_t)off);
		if (r <= 0)
			goto out;
		EVP_DigestUpdate(ctx, buf, (size_t)r);
		off += (uint64_t)r;
	}
	EVP_DigestFinal_ex(ctx, got, NULL);
	same = memcmp(got, want, 16) == 0;
out:
	free(buf);
	EVP_MD_CTX_free(ctx);
	return same;
}

static void strip_all(struct s3_meta *m)
{
	s3_meta_del(m, H_DLIST);
	s3_meta_del(m, H_DIGEST);
	s3_meta_del(m, H_BLOCKS);
	s3_meta_del(m, H_MD5);
	strip_sig(m);
}

int bfs_integrity_seal(struct s3_client *s3, const struct bfs_options *o, const char *key,
		       int fd, uint64_t size, struct s3_meta *m)
{
	strip_all(m);
	uint64_t part = o->part_size ? o->part_size : (8u << 20);
	bool want_md5 = size > part;
	struct bfs_digester d;
	unsigned char md5[16];
	size_t bufsz = BFS_INTEGRITY_BLOCK;
	unsigned char *buf = malloc(bufsz);
	int rc = dg_init(&d, BFS_INTEGRITY_BLOCK, want_md5);
	if (!buf && rc == 0)
		rc = -ENOMEM;
	for (uint64_t pos = 0; rc == 0 && pos < size;) {
		size_t want = size - pos < bufsz ? (size_t)(size - pos) : bufsz;
		ssize_t n = pread(fd, buf, want, (off_t)pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			bfs_log(BFS_LOG_ERR, "%s: cannot read the staging file to digest it: %s", key,
				n < 0 ? strerror(errno) : "file too short");
			break;
		}
		rc = dg_update(&d, buf, (size_t)n);
		pos += (uint64_t)n;
	}
	if (rc == 0)
		rc = dg_finish(&d, md5);
	if (rc == 0)
		rc = put_digests(s3, o->prefix, &d, want_md5, md5, m);
	if (rc == 0)
		rc = bfs_integrity_sign(o, key, size, m);
	dg_free(&d);
	free(buf);
	return rc;
}

int bfs_digester_new(struct bfs_digester **out)
{
	struct bfs_digester *d = malloc(sizeof(*d));
	*out = NULL;
	if (!d)
		return -ENOMEM;
	int rc = dg_init(d, BFS_INTEGRITY_BLOCK, true);
	if (rc) {
		dg_free(d);
		free(d);
		return rc;
	}
	*out = d;
	return 0;
}

int bfs_digester_update(struct bfs_digester *d, const void *p, size_t n)
{
	return dg_update(d, p, n);
}

void bfs_digester_free(struct bfs_digester *d)
{
	if (!d)
		return;
	dg_free(d);
	free(d);
}

int bfs_integrity_seal_digester(struct s3_client *s3, const struct bfs_options *o,
				const char *key, struct bfs_digester *d, uint64_t size,
				struct s3_meta *m)
{
	strip_all(m);
	uint64_t part = o->part_size ? o->part_size : (8u << 20);
	bool want_md5 = size > part; /* as bfs_integrity_seal: only multipart objects */
	unsigned char md5[16];
	int rc = dg_finish(d, md5);
	if (rc == 0)
		rc = put_digests(s3, o->prefix, d, want_md5, md5, m);
	if (rc == 0)
		rc = bfs_integrity_sign(o, key, size, m);
	return rc;
}

int bfs_integrity_seal_buf(struct s3_client *s3, const struct bfs_options *o, const char *key,
			   const void *body, size_t len, struct s3_meta *m)
{
	strip_all(m);
	struct bfs_digester d;
	int rc = dg_init(&d, BFS_INTEGRITY_BLOCK, false);
	if (rc == 0)
		rc = dg_update(&d, body, len);
	if (rc == 0)
		rc = dg_finish(&d, NULL);
	if (rc == 0)
		rc = put_digests(s3, o->prefix, &d, false, NULL, m);
	if (rc == 0)
		rc = bfs_integrity_sign(o, key, len, m);
	dg_free(&d);
	return rc;
}

/* ---- read side ---- */

/* A digest list, shared by readers; refcounted, found by root. */
struct dlist {
	unsigned char root[32];
	unsigned char *list; /* n * 32 */
	size_t n;
	unsigned refs;
	uint64_t used;
};
static pthread_mutex_t lru_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dlist *lru[LIST_CACHE];
static uint64_t lru_tick;

static void dlist_put(struct dlist *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&lru_mu);
	bool dead = --l->refs == 0;
	pthread_mutex_unlock(&lru_mu);
	if (dead) {
		free(l->list);
		free(l);
	}
}

static struct dlist *lru_find(const unsigned char root[32])
{
	struct dlist *r = NULL;
	pthread_mutex_lock(&lru_mu);
	for (int i = 0; i < LIST_CACHE && !r; i++)
		if (lru[i] && memcmp(lru[i]->root, root, 32) == 0) {
			r = lru[i];
			r->refs++;
			r->used = ++lru_tick;
		}
	pthread_mutex_unlock(&lru_mu);
	return r;
}

static void lru_add(struct dlist *l)
{
	struct dlist *old = NULL;
	pthread_mutex_lock(&lru_mu);
	int slot = 0;
	for (int i = 0; i < LIST_CACHE; i++) {
		if (!lru[i]) {
			slot = i;
			break;
		}
		if (lru[i]->used < lru[slot]->used)
			slot = i;
	}
	old = lru[slot];
	l->refs++;
	l->used = ++lru_tick;
	lru[slot] = l;
	pthread_mutex_unlock(&lru_mu);
	dlist_put(old);
}

struct bfs_verify {
	bool has_digest;
	uint64_t bs, size;
	unsigned char root[32];
	size_t nblocks;
	unsigned char one[32];   /* the list of a one-block object */
	struct dlist *list;      /* list of a multi-block object, loaded on first use */
	pthread_mutex_t mu;      /* protects list */
	bool have_md5;
	unsigned char md5[16];   /* whole-content MD5: plain ETag or bfs-md5 */
	char *side;              /* key of the side object with the list (bfs-dlist); owned */
};

int bfs_integrity_prepare(const struct bfs_options *o, const char *key, const char *etag,
			  uint64_t size, const struct s3_meta *m, struct bfs_verify **out)
{
	*out = NULL;
	int rc = bfs_integrity_policy(o, key, size, m);
	if (rc)
		return rc;
	struct bfs_verify *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	pthread_mutex_init(&v->mu, NULL);
	v->size = size;
	const char *dg = s3_meta_get(m, H_DIGEST), *md5 = s3_meta_get(m, H_MD5);
	if (md5 && bfs_unhex(md5, v->md5, 16) == 0)
		v->have_md5 = true;
	else if (etag && !strchr(etag, '-') && bfs_unhex(etag, v->md5, 16) == 0)
		v->have_md5 = true;
	if (dg) {
		char rhex[65];
		unsigned long long bs;
		if (sscanf(dg, "sha256:%llu:%64[0-9a-fA-F]", &bs, rhex) != 2 || bs < 4096 ||
		    bs > (64ull << 20) || (bs & (bs - 1)) || bfs_unhex(rhex, v->root, 32) != 0) {
			bfs_log(BFS_LOG_ERR, "%s: unreadable %s header; reads refused", key, H_DIGEST);
			rc = -EIO;
			goto fail;
		}
		v->has_digest = true;
		const char *side = s3_meta_get(m, H_DLIST);
		if (side && !(v->side = strdup(side))) {
			rc = -ENOMEM;
			goto fail;
		}
		v->bs = bs;
		v->nblocks = (size_t)((size + bs - 1) / bs);
		unsigned char r[32];
		if (v->nblocks == 0) {
			bfs_integrity_root(bs, NULL, 0, r);
		} else if (v->nblocks == 1) {
			if (bfs_unhex(s3_meta_get(m, H_BLOCKS), v->one, 32) != 0)
				memset(v->one, 0, 32);
			bfs_integrity_root(bs, v->one, 1, r);
		}
		if (v->nblocks <= 1 && CRYPTO_memcmp(r, v->root, 32) != 0) {
			bfs_log(BFS_LOG_ERR, "%s: block digest header does not match the digest "
				"root; reads refused", key);
			rc = -EIO;
			goto fail;
		}
	}
	*out = v;
	return 0;
fail:
	bfs_verify_free(v);
	return rc;
}

void bfs_verify_free(struct bfs_verify *v)
{
	if (!v)
		return;
	dlist_put(v->list);
	pthread_mutex_destroy(&v->mu);
	free(v->side);
	free(v);
}

bool bfs_verify_has_digest(const struct bfs_verify *v)
{
	return v && v->has_digest;
}

/* Loads (once) the digest list of a multi-block object and checks it against the root. */
static int load_list(struct s3_client *s3, struct bfs_verify *v, const char *key)
{
	pthread_mutex_lock(&v->mu);
	bool have = v->list != NULL;
	pthread_mutex_unlock(&v->mu);
	if (have)
		return 0;
	struct dlist *l = lru_find(v->root);
	if (!l) {
		char hex[65], side[1200];
		bfs_hex(v->root, 32, hex);
		snprintf(side, sizeof(side), "%s", v->side ? v->side : "");
		if (!v->side)
			snprintf(side, sizeof(side), BFS_DIGEST_DIR "%s", hex);
		size_t want = v->nblocks * 32, got = 0;
		unsigned char *buf = malloc(want ? want : 1);
		if (!buf)
			return -ENOMEM;
		int rc = -EIO;
		for (int attempt = 0; attempt < 2 && rc; attempt++) {
			rc = s3_get_range(s3, side, 0, want, buf, &got, NULL, NULL);
			if (rc) {
				bfs_log(BFS_LOG_ERR, "%s: cannot read its digest list %s: %s", key, side,
					s3_last_error());
				free(buf);
				return rc == -ENOENT ? -EIO : rc;
			}
			unsigned char r[32];
			bfs_integrity_root(v->bs, buf, got / 32, r);
			if (got != want || CRYPTO_memcmp(r, v->root, 32) != 0) {
				bfs_log(attempt ? BFS_LOG_ERR : BFS_LOG_WARN, "%s: digest list %s is "
					"corrupt%s", key, side, attempt ? "; reads fail" : ", fetching again");
				rc = -EIO;
			}
		}
		if (rc) {
			free(buf);
			return rc;
		}
		l = calloc(1, sizeof(*l));
		if (!l) {
			free(buf);
			return -ENOMEM;
		}
		memcpy(l->root, v->root, 32);
		l->list = buf;
		l->n = v->nblocks;
		l->refs = 1;
		lru_add(l);
	}
	pthread_mutex_lock(&v->mu);
	if (!v->list) {
		v->list = l;
		l = NULL;
	}
	pthread_mutex_unlock(&v->mu);
	dlist_put(l);
	return 0;
}

int bfs_verify_blocks(struct s3_client *s3, struct bfs_verify *v, const char *key, uint64_t off,
		      const unsigned char *buf, size_t len, uint64_t *bad_block)
{
	if (!v->has_digest)
		return 0;
	if (off % v->bs || (len % v->bs && off + len != v->size))
		return -EINVAL;
	if (v->nblocks > 1) {
		int rc = load_list(s3, v, key);
		if (rc)
			return rc;
	}
	for (size_t done = 0; done < len;) {
		size_t n = len - done < v->bs ? len - done : (size_t)v->bs;
		uint64_t blk = (off + done) / v->bs;
		unsigned char h[32];
		if (blk >= v->nblocks) {
			*bad_block = blk;
			return -EIO;
		}
		sha256(buf + done, n, h);
		const unsigned char *want = v->nblocks == 1 ? v->one : v->list->list + 32 * blk;
		if (CRYPTO_memcmp(h, want, 32) != 0) {
			*bad_block = blk;
			return -EIO;
		}
		done += n;
	}
	return 0;
}

bool bfs_verify_md5(const struct bfs_verify *v, const unsigned char *buf, size_t len)
{
	if (!v->have_md5 || len != v->size)
		return true;
	unsigned char h[16];
	EVP_Digest(buf, len, h, NULL, EVP_md5(), NULL);
	return CRYPTO_memcmp(h, v->md5, 16) == 0;
}

ssize_t bfs_integrity_fetch(struct s3_client *s3, struct bfs_verify *v, const char *key,
			    const char *if_match, uint64_t off, size_t len, void *buf)
{
	if (off >= v->size)
		return 0;
	if (len > v->size - off)
		len = (size_t)(v->size - off);
	/* the digest blocks covering [off, off+len) */
	uint64_t a = off, e = off + len;
	if (v->has_digest) {
		a = off / v->bs * v->bs;
		e = (off + len + v->bs - 1) / v->bs * v->bs;
		if (e > v->size)
			e = v->size;
	}
	size_t alen = (size_t)(e - a);
	unsigned char *tmp = (a == off && alen == len) ? buf : malloc(alen);
	if (!tmp)
		return -ENOMEM;
	ssize_t res = -EIO;
	for (int attempt = 0; attempt < 2; attempt++) {
		size_t got = 0;
		int rc = s3_get_range(s3, key, a, alen, tmp, &got, if_match, NULL);
		if (rc) {
			bfs_log(BFS_LOG_ERR, "%s: read failed: %s", key, s3_last_error());
			res = rc;
			break;
		}
		if (got != alen) {
			/* the object is shorter than its attributes say: changed under us */
			res = -ESTALE;
			break;
		}
		uint64_t bad = 0;
		rc = v->has_digest ? bfs_verify_blocks(s3, v, key, a, tmp, alen, &bad)
				   : (a == 0 && alen == v->size && !bfs_verify_md5(v, tmp, alen) ? -EIO
											  : 0);
		if (rc == 0) {
			if (tmp != buf)
				memcpy(buf, tmp + (off - a), len);
			res = (ssize_t)len;
			break;
		}
		if (rc != -EIO) {
			res = rc;
			break;
		}
		if (v->has_digest)
			bfs_log(attempt ? BFS_LOG_ERR : BFS_LOG_WARN, "%s: block %" PRIu64 " (bytes %"
				PRIu64 "..%" PRIu64 ") does not match its digest%s", key, bad,
				bad * v->bs, (bad + 1) * v->bs < v->size ? (bad + 1) * v->bs : v->size,
				attempt ? "; read fails with EIO" : ", fetching again");
		else
			bfs_log(attempt ? BFS_LOG_ERR : BFS_LOG_WARN, "%s: content does not match "
				"its MD5%s", key, attempt ? "; read fails with EIO" : ", fetching again");
		res = -EIO;
	}
	if (tmp != buf)
		free(tmp);
	return res;
}

int bfs_integrity_check_body(struct bfs_fs *fs, const char *key, const char *etag,
			     const struct s3_meta *m, const void *body, size_t len)
{
	struct bfs_verify *v;
	int rc = bfs_integrity_prepare(fs->opts, key, etag, len, m, &v);
	if (rc)
		return rc;
	uint64_t bad;
	if (v->has_digest)
		rc = bfs_verify_blocks(fs->s3, v, key, 0, body, len, &bad);
	else
		rc = bfs_verify_md5(v, body, len) ? 0 : -EIO;
	if (rc == -EIO)
		bfs_log(BFS_LOG_ERR, "%s: content does not match its digest", key);
	bfs_verify_free(v);
	return rc;
}

int bfs_integrity_verify_fd(struct bfs_fs *fs, const char *key, const char *etag,
			    const struct s3_meta *m, int fd, uint64_t size)
{
	struct bfs_verify *v;
	int rc = bfs_integrity_prepare(fs->opts, key, etag, size, m, &v);
	if (rc)
		return rc;
	size_t chunk = v->has_digest ? (size_t)v->bs : 8u << 20;
	unsigned char *buf = malloc(chunk);
	EVP_MD_CTX *md5 = v->have_md5 && !v->has_digest ? EVP_MD_CTX_new() : NULL;
	if (!buf || (v->have_md5 && !v->has_digest && !md5)) {
		rc = -ENOMEM;
		goto out;
	}
	if (md5)
		EVP_DigestInit_ex(md5, EVP_md5(), NULL);
	for (uint64_t off = 0; off < size && rc == 0;) {
		size_t want = size - off < chunk ? (size_t)(size - off) : chunk;
		ssize_t n = pread(fd, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)want) {
			rc = n < 0 ? -errno : -EIO;
			break;
		}
		uint64_t bad;
		if (v->has_digest && (rc = bfs_verify_blocks(fs->s3, v, key, off, buf, want, &bad)))
			bfs_log(BFS_LOG_ERR, "%s: downloaded block %" PRIu64 " does not match its "
				"digest", key, bad);
		if (md5)
			EVP_DigestUpdate(md5, buf, want);
		off += want;
	}
	if (rc == 0 && md5) {
		unsigned char h[16];
		EVP_DigestFinal_ex(md5, h, NULL);
		if (CRYPTO_memcmp(h, v->md5, 16) != 0) {
			bfs_log(BFS_LOG_ERR, "%s: downloaded content does not match its MD5", key);
			rc = -EIO;
		}
	}
out:
	EVP_MD_CTX_free(md5);
	free(buf);
	bfs_verify_free(v);
	return rc;
}
