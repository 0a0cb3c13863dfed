/* tests/unit/test_cache_index.c — the read path: block index, fetch sharing, checksums, TTL,
 * invalidation, a full cache disk (cache/index.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cache/cache_int.h"
#include "tests/unit/cache_test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BS 4096
#define OBJ 10000 /* two whole blocks and a partial one */

static atomic_llong fake_now = 1000000;
static int64_t fake_clock(void) { return atomic_load(&fake_now); }

/* An object behind a counting fetch callback. */
struct src {
	unsigned char *data;
	size_t size;
	atomic_int calls;
	int delay_ms;
	ssize_t fail;                   /* if < 0, fetch returns it */
	uint64_t offs[64];
	size_t lens[64];
	atomic_int reval_calls;
	int reval_rc;
	int reval_delay_ms;
};

static ssize_t fetch(void *arg, uint64_t off, size_t len, void *buf)
{
	struct src *s = arg;
	int i = atomic_fetch_add(&s->calls, 1);

	if (i < 64) {
		s->offs[i] = off;
		s->lens[i] = len;
	}
	if (s->delay_ms) {
		struct timespec ts = { 0, s->delay_ms * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (s->fail < 0)
		return s->fail;
	if (off >= s->size)
		return 0;
	if (len > s->size - off)
		len = s->size - off;
	memcpy(buf, s->data + off, len);
	return (ssize_t)len;
}

static int revalidate(void *arg, const char *key, const char *etag)
{
	struct src *s = arg;

	(void)key;
	(void)etag;
	atomic_fetch_add(&s->reval_calls, 1);
	if (s->reval_delay_ms) {
		struct timespec ts = { 0, s->reval_delay_ms * 1000000L };
		nanosleep(&ts, NULL);
	}
	return s->reval_rc;
}

static void src_init(struct src *s, size_t size, unsigned seed)
{
	memset(s, 0, sizeof(*s));
	s->data = malloc(size);
	s->size = size;
	for (size_t i = 0; i < size; i++)
		s->data[i] = (unsigned char)(i * 131 + i / 251 + seed);
}

struct fixture {
	char dir[64];
	struct cache *c;
	unsigned ttl;
};

static void fx_open(struct fixture *fx)
{
	struct cache_config cfg = { .dir = fx->dir, .block_size = BS, .size_cap = 64 << 20,
				    .ttl_sec = fx->ttl };

	assert_int_equal(cache_open(&cfg, &fx->c), 0);
	fx->c->now = fake_clock;
}

static int setup_ttl(void **state, unsigned ttl)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	cache_test_mkdtemp(fx->dir, sizeof(fx->dir), "test_cache_index");
	fx->ttl = ttl;
	fx_open(fx);
	*state = fx;
	return 0;
}

static int setup(void **state) { return setup_ttl(state, 0); }
static int setup_ttl100(void **state) { return setup_ttl(state, 100); }

static int teardown(void **state)
{
	struct fixture *fx = *state;

	return cache_test_fixture_free(fx, fx->c, fx->dir);
}

/* Reads [off, off+len) through the cache and checks the bytes against the source. */
static ssize_t rd(struct cache *c, const char *key, const char *etag, struct src *s,
		  uint64_t off, size_t len)
{
	unsigned char *buf = malloc(len + 1);
	ssize_t n = cache_read(c, key, etag, s->size, off, len, buf, fetch, s);

	if (n > 0)
		assert_memory_equal(buf, s->data + off, (size_t)n);
	free(buf);
	return n;
}

/* Path of the only block file in the cache. */
static void only_block_file(struct fixture *fx, char *out, size_t len)
{
	int found = 0;

	for (int shard = 0; shard < 256; shard++) {
		char d[256];
		DIR *dir;
		struct dirent *e;

		snprintf(d, sizeof(d), "%s/blocks/%02x", fx->dir, shard);
		assert_non_null(dir = opendir(d));
		while ((e = readdir(dir)))
			if (e->d_name[0] != '.') {
				snprintf(out, len, "%s/%s", d, e->d_name);
				found++;
			}
		closedir(dir);
	}
	assert_int_equal(found, 1);
}

static void test_miss_then_hit(void **state)
{
	struct fixture *fx = *state;
	struct cache_stats st;
	struct src s;

	src_init(&s, OBJ, 1);
	assert_int_equal(rd(fx->c, "a/b", "\"e1\"", &s, 10, 100), 100);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.offs[0], 0);
	assert_int_equal(s.lens[0], BS); /* whole block fetched */
	assert_int_equal(rd(fx->c, "a/b", "\"e1\"", &s, 0, BS), BS);
	assert_int_equal(rd(fx->c, "a/b", "\"e1\"", &s, 4000, 96), 96);
	assert_int_equal(s.calls, 1);
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.blocks, 1);
	assert_int_equal(st.bytes, BS);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.hits, 2);
	/* another ETag is another version */
	assert_int_equal(rd(fx->c, "a/b", "\"e2\"", &s, 0, 10), 10);
	assert_int_equal(s.calls, 2);
	free(s.data);
}

static void test_span_and_partial_last_block(void **state)
{
	struct fixture *fx = *state;
	struct cache_stats st;
	struct src s;

	src_init(&s, OBJ, 2);
	assert_int_equal(rd(fx->c, "k", "e", &s, 4000, 5000), 5000);
	assert_int_equal(s.calls, 3);
	assert_int_equal(s.offs[0], 0);
	assert_int_equal(s.offs[1], BS);
	assert_int_equal(s.offs[2], 2 * BS);
	assert_int_equal(s.lens[2], OBJ - 2 * BS); /* only what the object has */
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.bytes, OBJ);
	/* whole object, and reads past the end, from cache */
	assert_int_equal(rd(fx->c, "k", "e", &s, 0, OBJ), OBJ);
	assert_int_equal(rd(fx->c, "k", "e", &s, OBJ - 10, 100), 10);
	assert_int_equal(rd(fx->c, "k", "e", &s, OBJ, 100), 0);
	assert_int_equal(rd(fx->c, "k", "e", &s, OBJ + 5, 100), 0);
	assert_int_equal(s.calls, 3);
	/* a read of only the middle block fetches only it */
	assert_int_equal(rd(fx->c, "k2", "e", &s, BS + 1, 10), 10);
	assert_int_equal(s.calls, 4);
	assert_int_equal(s.offs[3], BS);
	free(s.data);
}

static void corrupt_and_reread(struct fixture *fx, void (*damage)(const char *path))
{
	struct src s;
	char path[512];

	src_init(&s, BS, 3);
	assert_int_equal(rd(fx->c, "x", "e", &s, 0, BS), BS);
	only_block_file(fx, path, sizeof(path));
	damage(path);
	/* the verified copy kept in memory is still good and would be served: the damage is
	 * found when the block is next read from disk (after a remount, or once the copy has
	 * made room for other blocks); forget the copy to get there now */
	cache_mem_free(fx->c);
	assert_int_equal(rd(fx->c, "x", "e", &s, 0, BS), BS); /* bytes checked by rd() */
	assert_int_equal(s.calls, 2);
	assert_int_equal(rd(fx->c, "x", "e", &s, 0, BS), BS); /* stored again, good now */
	assert_int_equal(s.calls, 2);
	free(s.data);
}

static void flip_byte(const char *path)
{
	int fd = open(path, O_RDWR);
	unsigned char b;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, 777), 1);
	b ^= 0x20;
	assert_int_equal(pwrite(fd, &b, 1, 777), 1);
	close(fd);
}
static void truncate_it(const char *path) { assert_int_equal(truncate(path, BS / 2), 0); }
static void extend_it(const char *path) { assert_int_equal(truncate(path, BS + 1), 0); }
static void delete_it(const char *path) { assert_int_equal(unlink(path), 0); }

static void test_corrupt_flip(void **state) { corrupt_and_reread(*state, flip_byte); }

/* Reads inside one block after the first come from the verified copy in memory: the file is
 * not read again, so damage done to it meanwhile is not served either; once the copy is gone
 * the file is read, checked, and the damage found. */
static void test_memory_copy(void **state)
{
	struct fixture *fx = *state;
	struct src s;
	char path[512];

	src_init(&s, BS, 3);
	assert_int_equal(rd(fx->c, "x", "e", &s, 0, 100), 100);
	only_block_file(fx, path, sizeof(path));
	flip_byte(path);
	for (size_t off = 0; off < BS; off += 512)
		assert_int_equal(rd(fx->c, "x", "e", &s, off, 512), 512); /* good bytes */
	assert_int_equal(s.calls, 1);
	cache_mem_free(fx->c);
	assert_int_equal(rd(fx->c, "x", "e", &s, 1000, 10), 10);
	assert_int_equal(s.calls, 2);
	free(s.data);
}
static void test_corrupt_truncate(void **state) { corrupt_and_reread(*state, truncate_it); }
static void test_corrupt_extend(void **state) { corrupt_and_reread(*state, extend_it); }
static void test_corrupt_missing(void **state) { corrupt_and_reread(*state, delete_it); }

struct reader {
	struct cache *c;
	struct src *s;
	ssize_t n;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	unsigned char buf[BS];

	r->n = cache_read(r->c, "shared", "e", r->s->size, 0, BS, buf, fetch, r->s);
	if (r->n == BS && memcmp(buf, r->s->data, BS) != 0)
		r->n = -EBADMSG;
	return NULL;
}

static void test_concurrent_readers_one_fetch(void **state)
{
	struct fixture *fx = *state;
	pthread_t t[8];
	struct reader r[8];
	struct src s;

	src_init(&s, OBJ, 4);
	s.delay_ms = 200; /* every reader arrives while the first fetch is in flight */
	for (int i = 0; i < 8; i++) {
		r[i] = (struct reader){ fx->c, &s, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, reader_main, &r[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(r[i].n, BS);
	}
	assert_int_equal(s.calls, 1);
	free(s.data);
}

static void test_fetch_error_not_cached(void **state)
{
	struct fixture *fx = *state;
	unsigned char buf[100];
	struct cache_stats st;
	struct src s;

	src_init(&s, OBJ, 5);
	s.fail = -EIO;
	assert_int_equal(cache_read(fx->c, "f", "e", OBJ, 0, 100, buf, fetch, &s), -EIO);
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.blocks, 0);
	s.fail = 0;
	assert_int_equal(rd(fx->c, "f", "e", &s, 0, 100), 100);
	assert_int_equal(s.calls, 2);
	free(s.data);
}

/* The caller believed the object was longer than it is: serve what exists, cache nothing. */
static void test_object_shorter_than_claimed(void **state)
{
	struct fixture *fx = *state;
	unsigned char buf[OBJ];
	struct cache_stats st;
	struct src s;

	src_init(&s, 5000, 6);
	assert_int_equal(cache_read(fx->c, "short", "e", OBJ, 0, OBJ, buf, fetch, &s), 5000);
	assert_memory_equal(buf, s.data, 5000);
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.blocks, 1); /* block 0 was whole; block 1 came back short */
	free(s.data);
}

static void test_invalidate(void **state)
{
	struct fixture *fx = *state;
	struct cache_stats st;
	struct src s;

	src_init(&s, OBJ, 7);
	rd(fx->c, "a", "e1", &s, 0, OBJ);
	rd(fx->c, "a", "e2", &s, 0, 10);
	rd(fx->c, "ab", "e1", &s, 0, 10);  /* shares the prefix "a" but not "a\0" */
	rd(fx->c, "a/b", "e1", &s, 0, 10);
	assert_int_equal(s.calls, 6);
	cache_invalidate(fx->c, "a");
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.blocks, 2);
	rd(fx->c, "ab", "e1", &s, 0, 10);
	rd(fx->c, "a/b", "e1", &s, 0, 10);
	assert_int_equal(s.calls, 6);
	rd(fx->c, "a", "e1", &s, 0, 10);
	rd(fx->c, "a", "e2", &s, 0, 10);
	assert_int_equal(s.calls, 8);
	cache_invalidate(fx->c, "does-not-exist");
	free(s.data);
}

struct racing_src {
	struct src s;
	struct cache *c;
};

static ssize_t fetch_then_invalidate(void *arg, uint64_t off, size_t len, void *buf)
{
	struct racing_src *r = arg;
	ssize_t n = fetch(&r->s, off, len, buf);

	cache_invalidate(r->c, "race"); /* e.g. an overwrite landed while we were fetching */
	return n;
}

/* A fetch that started before an invalidation is served but not stored. */
static void test_invalidate_during_fetch(void **state)
{
	struct fixture *fx = *state;
	struct racing_src r = { .c = fx->c };
	unsigned char buf[100];
	struct cache_stats st;

	src_init(&r.s, OBJ, 14);
	assert_int_equal(cache_read(fx->c, "race", "e", OBJ, 0, 100, buf, fetch_then_invalidate, &r),
			 100);
	assert_memory_equal(buf, r.s.data, 100);
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.blocks, 0);
	free(r.s.data);
}

static void test_long_key_hashed(void **state)
{
	struct fixture *fx = *state;
	char key[1025], key2[1025];
	struct src s;

	memset(key, 'k', 1024);
	key[1024] = '\0';
	strcpy(key2, key);
	key2[1023] = 'j'; /* same 256-byte prefix, different key */
	src_init(&s, OBJ, 8);
	rd(fx->c, key, "e", &s, 0, 10);
	rd(fx->c, key, "e", &s, 0, 10);
	assert_int_equal(s.calls, 1);
	rd(fx->c, key2, "e", &s, 0, 10);
	assert_int_equal(s.calls, 2);
	cache_invalidate(fx->c, key);
	rd(fx->c, key2, "e", &s, 0, 10);
	assert_int_equal(s.calls, 2);
	rd(fx->c, key, "e", &s, 0, 10);
	assert_int_equal(s.calls, 3);
	free(s.data);
}

static void test_persists_across_reopen(void **state)
{
	struct fixture *fx = *state;
	struct cache_stats st;
	struct src s;

	src_init(&s, OBJ, 9);
	rd(fx->c, "p", "e", &s, 0, OBJ);
	cache_close(fx->c);
	fx_open(fx);
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.blocks, 3);
	assert_int_equal(st.bytes, OBJ);
	rd(fx->c, "p", "e", &s, 0, OBJ);
	assert_int_equal(s.calls, 3);
	free(s.data);
}

/* What a crash leaves in blocks/ (a temporary, a renamed file never indexed) is deleted at
 * open; a record whose file vanished is refetched. */
static void test_open_sweeps_strays(void **state)
{
	struct fixture *fx = *state;
	char stray[256], tmp[256], path[512];
	struct src s;
	int fd;

	src_init(&s, BS, 15);
	rd(fx->c, "p", "e", &s, 0, BS);
	snprintf(stray, sizeof(stray), "%s/blocks/ab/00000000000099ab", fx->dir);
	snprintf(tmp, sizeof(tmp), "%s/blocks/07/0000000000000107.tmp", fx->dir);
	assert_true((fd = open(stray, O_CREAT | O_WRONLY, 0600)) >= 0);
	close(fd);
	assert_true((fd = open(tmp, O_CREAT | O_WRONLY, 0600)) >= 0);
	close(fd);
	cache_close(fx->c);
	fx_open(fx);
	assert_int_equal(access(stray, F_OK), -1);
	assert_int_equal(access(tmp, F_OK), -1);
	only_block_file(fx, path, sizeof(path)); /* the real block survived */
	rd(fx->c, "p", "e", &s, 0, BS);
	assert_int_equal(s.calls, 1);
	free(s.data);
}

static void test_expiry_arithmetic(void **state)
{
	(void)state;
	assert_false(cache_expired(1000, 1000, 0));   /* ttl 0: never */
	assert_false(cache_expired(1 << 30, 0, 0));
	assert_false(cache_expired(1000, 1000, 100));
	assert_false(cache_expired(1099, 1000, 100));
	assert_true(cache_expired(1100, 1000, 100));  /* expires exactly ttl seconds later */
	assert_true(cache_expired(5000, 1000, 100));
	assert_false(cache_expired(999, 1000, 1));    /* clock stepped back: not expired */
}

static void test_ttl_revalidate(void **state)
{
	struct fixture *fx = *state;
	struct cache_source cs = { fetch, revalidate, NULL };
	unsigned char buf[OBJ];
	struct cache_stats st;
	struct src s;

	src_init(&s, OBJ, 10);
	cs.arg = &s;
	atomic_store(&fake_now, 1000);
	assert_int_equal(cache_read_src(fx->c, "t", "e", OBJ, 0, OBJ, buf, &cs), OBJ);
	assert_int_equal(s.calls, 3);
	atomic_store(&fake_now, 1099);
	assert_int_equal(cache_read_src(fx->c, "t", "e", OBJ, 0, OBJ, buf, &cs), OBJ);
	assert_int_equal(s.reval_calls, 0);
	/* expired: one revalidation for the version confirms all three blocks */
	atomic_store(&fake_now, 1100);
	assert_int_equal(cache_read_src(fx->c, "t", "e", OBJ, 0, OBJ, buf, &cs), OBJ);
	assert_memory_equal(buf, s.data, OBJ);
	assert_int_equal(s.reval_calls, 1);
	assert_int_equal(s.calls, 3);
	atomic_store(&fake_now, 1199);
	assert_int_equal(cache_read_src(fx->c, "t", "e", OBJ, 0, OBJ, buf, &cs), OBJ);
	assert_int_equal(s.reval_calls, 1);
	/* changed upstream: dropped, -ESTALE */
	atomic_store(&fake_now, 1200);
	s.reval_rc = -ESTALE;
	assert_int_equal(cache_read_src(fx->c, "t", "e", OBJ, 0, 10, buf, &cs), -ESTALE);
	assert_int_equal(s.reval_calls, 2);
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.blocks, 0);
	/* revalidation failing for another reason is returned, block kept */
	s.reval_rc = -EIO;
	assert_int_equal(cache_read_src(fx->c, "t", "e", OBJ, 0, 10, buf, &cs), 10);
	atomic_store(&fake_now, 1300);
	assert_int_equal(cache_read_src(fx->c, "t", "e", OBJ, 0, 10, buf, &cs), -EIO);
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.blocks, 1);
	free(s.data);
}

struct revalidator {
	struct cache *c;
	struct src *s;
	ssize_t n;
	int blk;
};

static void *revalidator_main(void *arg)
{
	struct revalidator *r = arg;
	struct cache_source cs = { fetch, revalidate, r->s };
	unsigned char buf[BS];

	r->n = cache_read_src(r->c, "t", "e", r->s->size, (uint64_t)r->blk * BS, 100, buf, &cs);
	if (r->n == 100 && memcmp(buf, r->s->data + r->blk * BS, 100) != 0)
		r->n = -EBADMSG;
	return NULL;
}

/* Readers of an expired version, on any of its blocks, share one revalidation. */
static void test_ttl_concurrent_revalidation(void **state)
{
	struct fixture *fx = *state;
	pthread_t t[6];
	struct revalidator r[6];
	struct src s;

	src_init(&s, OBJ, 13);
	atomic_store(&fake_now, 2000);
	rd(fx->c, "t", "e", &s, 0, OBJ);
	atomic_store(&fake_now, 2100);
	s.reval_delay_ms = 200;
	for (int i = 0; i < 6; i++) {
		r[i] = (struct revalidator){ fx->c, &s, 0, i % 3 };
		assert_int_equal(pthread_create(&t[i], NULL, revalidator_main, &r[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(r[i].n, 100);
	}
	assert_int_equal(s.reval_calls, 1);
	assert_int_equal(s.calls, 3);
	free(s.data);
}

static void test_ttl_without_hook_refetches(void **state)
{
	struct fixture *fx = *state;
	struct src s;

	src_init(&s, OBJ, 11);
	atomic_store(&fake_now, 5000);
	rd(fx->c, "t", "e", &s, 0, 10);
	atomic_store(&fake_now, 5099);
	rd(fx->c, "t", "e", &s, 0, 10);
	assert_int_equal(s.calls, 1);
	atomic_store(&fake_now, 5100);
	rd(fx->c, "t", "e", &s, 0, 10);
	assert_int_equal(s.calls, 2);
	rd(fx->c, "t", "e", &s, 0, 10); /* fresh again */
	assert_int_equal(s.calls, 2);
	free(s.data);
}

/* Runs in a child with its own mount namespace and a 256 KiB tmpfs as cache disk: reads
 * must succeed (evicting, then without caching) when the disk fills. Exit 0 = pass,
 * 77 = cannot mount here. */
static int enospc_child(void)
{
	char dir[] = "/tmp/test_cache_enospc.XXXXXX", cdir[128], fill[128];
	struct cache_config cfg = { .block_size = BS, .size_cap = 1 << 30 };
	struct cache *c;
	struct cache_stats st;
	struct src s;
	unsigned char *buf;
	int rc = 1, fd;

	if (!mkdtemp(dir))
		return 77;
	if (unshare(CLONE_NEWNS) < 0 && unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
		return 77;
	if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", dir, "tmpfs", 0, "size=256k") < 0)
		return 77;
	snprintf(cdir, sizeof(cdir), "%s/cache", dir);
	cfg.dir = cdir;
	if (cache_open(&cfg, &c))
		goto out;
	src_init(&s, 100 * BS, 12);
	buf = malloc(s.size);
	/* 400 KiB through a 256 KiB disk: the cache must evict to keep storing */
	if (cache_read(c, "big", "e", s.size, 0, s.size, buf, fetch, &s) != (ssize_t)s.size ||
	    memcmp(buf, s.data, s.size) != 0)
		goto out_close;
	cache_stats_get(c, &st);
	if (st.blocks == 0 || st.bytes > 256 * 1024)
		goto out_close;
	/* the newest blocks got in: older ones were evicted to make room */
	s.calls = 0;
	if (cache_read(c, "big", "e", s.size, s.size - BS, BS, buf, fetch, &s) != BS ||
	    s.calls != 0)
		goto out_close;
	/* now leave no room at all: reads are still served, from the fetched bytes */
	cache_invalidate(c, "big");
	snprintf(fill, sizeof(fill), "%s/fill", dir);
	fd = open(fill, O_CREAT | O_WRONLY, 0600);
	while (fd >= 0 && write(fd, buf, BS) == BS)
		;
	s.calls = 0;
	if (cache_read(c, "other", "e", s.size, 0, s.size, buf, fetch, &s) != (ssize_t)s.size ||
	    memcmp(buf, s.data, s.size) != 0 || s.calls != 100)
		goto out_close;
	rc = 0;
out_close:
	cache_close(c);
	free(buf);
	free(s.data);
out:
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	return rc;
}

static void test_enospc_reads_still_served(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(enospc_child());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77) {
		print_message("skipped: cannot mount a small tmpfs here (needs a mount namespace)\n");
		skip();
	}
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* A run of blocks is one fetch; cached blocks at its start are skipped and one in the
 * middle ends it; the blocks are then served without fetching; a reader of a block of a
 * run in flight joins it. */
static void test_prefetch_run(void **state)
{
	struct fixture *fx = *state;
	struct src s;
	struct cache_source cs = { .fetch = fetch };
	size_t size = 10 * BS + 100;

	src_init(&s, size, 7);
	cs.arg = &s;
	/* the caller's run buffer: used when the run fits (the first two), else one of its own */
	size_t runlen = 4 * BS + 100;
	unsigned char *runbuf = malloc(runlen);
	assert_non_null(runbuf);
	assert_int_equal(rd(fx->c, "k", "\"e\"", &s, 0, 10), 10); /* block 0 cached */
	assert_int_equal(rd(fx->c, "k", "\"e\"", &s, 5 * BS, 10), 10); /* and block 5 */
	atomic_store(&s.calls, 0);
	/* blocks 0..7 asked: 0 is skipped, 1..4 fetched in one go, 5 ends the run */
	assert_int_equal(cache_prefetch_run(fx->c, "k", "\"e\"", size, 0, 8, &cs, runbuf, runlen), 4);
	assert_int_equal(atomic_load(&s.calls), 1);
	assert_int_equal(s.offs[0], BS);
	assert_int_equal(s.lens[0], 4 * BS);
	/* the rest up to the end of the object, partial last block included */
	assert_int_equal(cache_prefetch_run(fx->c, "k", "\"e\"", size, 5, 64, &cs, runbuf, runlen), 5);
	assert_int_equal(atomic_load(&s.calls), 2);
	assert_int_equal(s.offs[1], 6 * BS);
	assert_int_equal(s.lens[1], 4 * BS + 100);
	assert_int_equal(cache_prefetch_run(fx->c, "k", "\"e\"", size, 0, 64, &cs, runbuf, BS), 0);
	assert_int_equal(cache_prefetch_run(fx->c, "k", "\"e\"", size, 11, 4, &cs, NULL, 0), 0);
	assert_int_equal(rd(fx->c, "k", "\"e\"", &s, 0, size), (ssize_t)size);
	assert_int_equal(atomic_load(&s.calls), 2);

	/* a failed fetch is returned and caches nothing */
	s.fail = -EIO;
	assert_int_equal(cache_prefetch_run(fx->c, "k", "\"e2\"", size, 0, 4, &cs, runbuf, BS), -EIO);
	s.fail = 0;
	atomic_store(&s.calls, 0);
	assert_int_equal(rd(fx->c, "k", "\"e2\"", &s, 0, 10), 10);
	assert_int_equal(atomic_load(&s.calls), 1);
	free(runbuf);
	free(s.data);
}

struct run_arg {
	struct cache *c;
	struct src *s;
	size_t size;
	int rc;
};

static void *run_main(void *arg)
{
	struct run_arg *a = arg;
	struct cache_source cs = { .fetch = fetch, .arg = a->s };

	a->rc = cache_prefetch_run(a->c, "k", "\"e\"", a->size, 0, 8, &cs, NULL, 0);
	return NULL;
}

static void test_prefetch_run_shared_with_reader(void **state)
{
	struct fixture *fx = *state;
	struct src s;
	size_t size = 8 * BS;
	pthread_t t;

	src_init(&s, size, 9);
	s.delay_ms = 300;
	struct run_arg a = { .c = fx->c, .s = &s, .size = size };
	assert_int_equal(pthread_create(&t, NULL, run_main, &a), 0);
	struct timespec ts = { 0, 100 * 1000000L };
	nanosleep(&ts, NULL);
	/* block 6 is in the run's flight: the reader waits for it, no second fetch */
	assert_int_equal(rd(fx->c, "k", "\"e\"", &s, 6 * BS + 1, 100), 100);
	pthread_join(t, NULL);
	assert_int_equal(a.rc, 8);
	assert_int_equal(atomic_load(&s.calls), 1);
	free(s.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_miss_then_hit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_span_and_partial_last_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memory_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_flip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_truncate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_extend, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_readers_one_fetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_error_not_cached, setup, teardown),
		cmocka_unit_test_setup_teardown(test_object_shorter_than_claimed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalidate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalidate_during_fetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_key_hashed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_sweeps_strays, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persists_across_reopen, setup, teardown),
		cmocka_unit_test(test_expiry_arithmetic),
		cmocka_unit_test_setup_teardown(test_ttl_revalidate, setup_ttl100, teardown),
		cmocka_unit_test_setup_teardown(test_ttl_concurrent_revalidation, setup_ttl100, teardown),
		cmocka_unit_test_setup_teardown(test_ttl_without_hook_refetches, setup_ttl100, teardown),
		cmocka_unit_test(test_enospc_reads_still_served),
		cmocka_unit_test_setup_teardown(test_prefetch_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefetch_run_shared_with_reader, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
