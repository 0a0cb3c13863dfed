/* tests/unit/test_cache_admin.c — maintenance for bucketfs-cache (cache/admin.c) and the
 * tool/read-only open modes (cache/cache.c): verify, prune, clear, the stats file, the lock
 * holder. A read-only open runs in a forked child: LMDB forbids opening one environment
 * twice in a process, and the tool is another process anyway. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cache/cache_int.h"
#include "tests/unit/cache_test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BS 4096
#define NBLK 8

static int64_t fake_now = 1000;
static int64_t fake_clock(void) { return fake_now; }

static unsigned char data[NBLK * BS];
static int fetches;

static ssize_t fetch(void *arg, uint64_t off, size_t len, void *buf)
{
	(void)arg;
	fetches++;
	memcpy(buf, data + off, len);
	return (ssize_t)len;
}

struct fixture {
	char dir[64];
	struct cache *c;
};

static void reopen(struct fixture *fx, unsigned flags)
{
	struct cache_config cfg = { .dir = fx->dir, .block_size = BS, .size_cap = 1 << 30,
				    .flags = flags };

	cache_close(fx->c);
	fx->c = NULL;
	assert_int_equal(cache_open(&cfg, &fx->c), 0);
	fx->c->now = fake_clock;
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	cache_test_mkdtemp(fx->dir, sizeof(fx->dir), "test_cache_admin");
	reopen(fx, 0);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 31 + i / BS);
	fetches = 0;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	return cache_test_fixture_free(fx, fx->c, fx->dir);
}

static void read_block(struct cache *c, int b)
{
	unsigned char buf[BS];

	assert_int_equal(cache_read(c, "obj", "e", sizeof(data), (uint64_t)b * BS, BS, buf, fetch,
				    NULL), BS);
	assert_memory_equal(buf, data + (size_t)b * BS, BS);
}

static void corrupt_block(struct cache *c, uint64_t fid)
{
	char path[4096];
	unsigned char b;
	int fd;

	cache_blk_path(c, fid, path, sizeof(path));
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, 7), 1);
	b ^= 0x10;
	assert_int_equal(pwrite(fd, &b, 1, 7), 1);
	close(fd);
}

struct bads {
	int n;
	bool dropped;
	uint64_t blkno;
};

static void on_bad(void *arg, const struct cache_bad *b)
{
	struct bads *x = arg;

	x->n++;
	x->dropped = b->dropped;
	x->blkno = b->blkno;
	assert_string_equal(b->key, "obj");
	assert_string_equal(b->etag, "e");
}

/* Read-only open in a child while the parent holds the cache: sees the counters, writes
 * nothing, refuses writes, verify reports without dropping. Exit status = failed check. */
static int child_rdonly(const char *dir)
{
	struct cache_config cfg = { .dir = dir, .flags = CACHE_OPEN_RDONLY };
	struct cache *c;
	struct cache_stats st;
	struct bads bad = { 0 };
	uint64_t checked, nbad, id;
	unsigned char buf[BS];
	int fd;

	if (cache_open(&cfg, &c))
		return 1;
	cache_stats_get(c, &st);
	if (st.blocks != NBLK || st.bytes != NBLK * BS || st.block_size != BS)
		return 2;
	if (cache_read(c, "obj", "e", sizeof(data), 0, BS, buf, fetch, NULL) != -EROFS ||
	    cache_dirty_create(c, &id, &fd) != -EROFS ||
	    cache_meta_put(c, "k", "e", (struct timespec){ 0 }, 1, "x", 1) != -EROFS ||
	    cache_prune(c, 0, INT64_MIN, NULL, NULL) != -EROFS || cache_clear(c, false) != -EROFS)
		return 3;
	if (cache_verify(c, on_bad, &bad, &checked, &nbad) || checked != NBLK || nbad != 1 ||
	    bad.n != 1 || bad.dropped || bad.blkno != 2)
		return 4;
	cache_close(c);
	return 0;
}

static int64_t mtime_of(const char *dir, const char *name)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (stat(path, &st) < 0)
		return -1;
	return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

static void test_rdonly_while_held(void **state)
{
	struct fixture *fx = *state;
	struct cache_blkrec r;
	int status;
	pid_t pid;
	int64_t before;

	for (int b = 0; b < NBLK; b++)
		read_block(fx->c, b);
	/* corrupt block 2: find its file through the index */
	{
		MDB_txn *txn;
		MDB_cursor *cur;
		MDB_val k, v;
		int i = 0;
		assert_int_equal(mdb_txn_begin(fx->c->env, NULL, MDB_RDONLY, &txn), 0);
		assert_int_equal(mdb_cursor_open(txn, fx->c->db_blocks, &cur), 0);
		for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && i < 2;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
			i++;
		assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT), 0);
		memcpy(&r, v.mv_data, sizeof(r));
		mdb_cursor_close(cur);
		mdb_txn_abort(txn);
	}
	corrupt_block(fx->c, r.fid);
	assert_int_equal(cache_lock_holder(fx->dir), (long)getpid());
	before = mtime_of(fx->dir, "index/data.mdb");
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_rdonly(fx->dir));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(mtime_of(fx->dir, "index/data.mdb") == before); /* nothing written */

	/* a normal open is refused meanwhile, and a tool open too */
	struct cache_config cfg = { .dir = fx->dir, .flags = CACHE_OPEN_TOOL };
	struct cache *c2;
	assert_int_equal(cache_open(&cfg, &c2), -EBUSY);
}

static void test_tool_open(void **state)
{
	struct fixture *fx = *state;
	struct cache_config cfg = { .dir = "/tmp/test_cache_admin_no_such_dir",
				    .flags = CACHE_OPEN_TOOL };
	struct cache *c;
	struct cache_stats st;
	struct stat sb;

	assert_int_equal(cache_open(&cfg, &c), -ENOENT);
	assert_int_equal(stat(cfg.dir, &sb), -1); /* not created */
	cfg.flags = CACHE_OPEN_RDONLY;
	assert_int_equal(cache_open(&cfg, &c), -ENOENT);

	for (int b = 0; b < NBLK; b++)
		read_block(fx->c, b);
	cache_close(fx->c);
	fx->c = NULL;
	assert_int_equal(cache_lock_holder(fx->dir), 0);
	/* a tool open knows nothing of the block size: it must keep the stored one */
	cfg.dir = fx->dir;
	cfg.flags = CACHE_OPEN_TOOL;
	cfg.block_size = 0;
	cfg.size_cap = 1; /* ignored: a tool never evicts on its own */
	assert_int_equal(cache_open(&cfg, &fx->c), 0);
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.block_size, BS);
	assert_int_equal(st.blocks, NBLK);
	assert_int_equal(st.bytes, NBLK * BS);
	fx->c->now = fake_clock;
	reopen(fx, 0);
	fetches = 0;
	read_block(fx->c, 3);
	assert_int_equal(fetches, 0);
}

static void test_stats_file(void **state)
{
	struct fixture *fx = *state;
	struct cache_live_stats ls;

	assert_int_equal(cache_live_stats_read(fx->dir, &ls), 0); /* written at open */
	assert_int_equal(ls.pid, (long)getpid());
	assert_int_equal(ls.hits, 0);
	assert_int_equal(ls.misses, 0);
	read_block(fx->c, 0);
	read_block(fx->c, 0);
	read_block(fx->c, 1);
	/* the evictor thread rewrites it within CACHE_STATS_PERIOD_S */
	for (int i = 0; i < 50 && (cache_live_stats_read(fx->dir, &ls) || ls.misses < 2); i++)
		usleep(100000);
	assert_int_equal(ls.hits, 1);
	assert_int_equal(ls.misses, 2);
	read_block(fx->c, 1);
	cache_close(fx->c); /* and at close */
	fx->c = NULL;
	assert_int_equal(cache_live_stats_read(fx->dir, &ls), 0);
	assert_int_equal(ls.hits, 2);
	assert_int_equal(ls.misses, 2);
	reopen(fx, 0);
}

static void test_verify_drops_bad(void **state)
{
	struct fixture *fx = *state;
	struct bads bad = { 0 };
	uint64_t checked, nbad;
	char path[4096];

	for (int b = 0; b < NBLK; b++)
		read_block(fx->c, b);
	assert_int_equal(cache_verify(fx->c, on_bad, &bad, &checked, &nbad), 0);
	assert_int_equal(checked, NBLK);
	assert_int_equal(nbad, 0);
	/* every block has fid 1..NBLK in read order: corrupt block 5's, delete block 6's */
	corrupt_block(fx->c, 6);
	cache_blk_path(fx->c, 7, path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(cache_verify(fx->c, on_bad, &bad, &checked, &nbad), 0);
	assert_int_equal(nbad, 2);
	assert_int_equal(bad.n, 2);
	assert_true(bad.dropped);
	assert_int_equal(cache_verify(fx->c, NULL, NULL, &checked, &nbad), 0);
	assert_int_equal(checked, NBLK - 2);
	assert_int_equal(nbad, 0);
	fetches = 0;
	read_block(fx->c, 5);
	read_block(fx->c, 6);
	assert_int_equal(fetches, 2);
}

struct prog {
	int calls;
	uint64_t last_done, last_total;
	char what[16];
};

static void on_progress(void *arg, const char *what, uint64_t done, uint64_t total)
{
	struct prog *p = arg;
	p->calls++;
	p->last_done = done;
	p->last_total = total;
	snprintf(p->what, sizeof(p->what), "%s", what);
}

static void test_progress(void **state)
{
	struct fixture *fx = *state;
	struct prog p = { 0 };
	uint64_t checked, nbad;

	for (int b = 0; b < NBLK; b++)
		read_block(fx->c, b);
	cache_set_progress(fx->c, on_progress, &p);
	assert_int_equal(cache_verify(fx->c, NULL, NULL, &checked, &nbad), 0);
	/* NBLK < CACHE_PROGRESS_STEP: the start (0) and the end */
	assert_int_equal(p.calls, 2);
	assert_string_equal(p.what, "verify");
	assert_int_equal(p.last_done, NBLK);
	assert_int_equal(p.last_total, NBLK);
	p = (struct prog){ 0 };
	assert_int_equal(cache_prune(fx->c, 0, INT64_MIN, NULL, NULL), 0);
	assert_int_equal(p.calls, 2);
	assert_string_equal(p.what, "prune");
	assert_int_equal(p.last_done, NBLK);
	cache_set_progress(fx->c, NULL, NULL);
	p = (struct prog){ 0 };
	assert_int_equal(cache_verify(fx->c, NULL, NULL, &checked, &nbad), 0);
	assert_int_equal(p.calls, 0);
}

static void test_prune(void **state)
{
	struct fixture *fx = *state;
	uint64_t nb = 0, nbytes = 0;
	struct cache_stats st;

	for (int b = 0; b < NBLK; b++) {
		fake_now = 1000 + 100 * b; /* block b last used at 1000 + 100 b */
		read_block(fx->c, b);
	}
	/* older than 1250: blocks 0, 1, 2 */
	assert_int_equal(cache_prune(fx->c, UINT64_MAX, 1250, &nb, &nbytes), 0);
	assert_int_equal(nb, 3);
	assert_int_equal(nbytes, 3 * BS);
	/* down to 2 blocks: the least recently used go (3, 4, 5) */
	nb = nbytes = 0;
	assert_int_equal(cache_prune(fx->c, 2 * BS, INT64_MIN, &nb, &nbytes), 0);
	assert_int_equal(nb, 3);
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.blocks, 2);
	fetches = 0;
	read_block(fx->c, 6);
	read_block(fx->c, 7);
	assert_int_equal(fetches, 0);
	read_block(fx->c, 5);
	assert_int_equal(fetches, 1);
}

static void test_clear_keeps_dirty(void **state)
{
	struct fixture *fx = *state;
	struct cache_dirty d = { .key = "k", .size = 5 };
	struct cache_stats st;
	char path[4096];
	int fd;

	for (int b = 0; b < NBLK; b++)
		read_block(fx->c, b);
	assert_int_equal(cache_meta_put(fx->c, "obj", "e", (struct timespec){ 1, 2 }, 3, "m", 1), 0);
	assert_int_equal(cache_dirty_create(fx->c, &d.id, &fd), 0);
	assert_int_equal(write(fd, "hello", 5), 5);
	close(fd);
	assert_int_equal(cache_dirty_commit(fx->c, &d), 0);

	assert_int_equal(cache_clear(fx->c, false), 0);
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.blocks, 0);
	assert_int_equal(st.bytes, 0);
	assert_int_equal(st.meta_entries, 0);
	assert_int_equal(st.dirty_entries, 1);
	assert_int_equal(st.dirty_bytes, 5);
	cache_blk_path(fx->c, 1, path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);

	assert_int_equal(cache_clear(fx->c, true), 0);
	cache_stats_get(fx->c, &st);
	assert_int_equal(st.dirty_entries, 0);
	cache_dirty_path(fx->c, d.id, path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);
	fetches = 0;
	read_block(fx->c, 0);
	assert_int_equal(fetches, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rdonly_while_held, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tool_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stats_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_drops_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clear_keeps_dirty, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
