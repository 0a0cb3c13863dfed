/* tests/unit/cache_test_util.h — what the cache/ unit tests share: a fresh temporary directory
 * to open a cache in, and removing it afterwards. Include after <cmocka.h>. */
#ifndef BFS_CACHE_TEST_UTIL_H
#define BFS_CACHE_TEST_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "cache/cache.h"

static inline int cache_test_rm_one(const char *p, const struct stat *st, int flag,
				    struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(p);
}

/* Deletes dir and everything under it (a test's cache directory). */
static inline void cache_test_rmtree(const char *dir)
{
	nftw(dir, cache_test_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The end of a test's fixture fx (malloc'd) holding cache c open in directory dir: closes c,
 * deletes dir, frees fx. Returns 0, for a cmocka teardown to return. */
static inline int cache_test_fixture_free(void *fx, struct cache *c, const char *dir)
{
	cache_close(c);
	cache_test_rmtree(dir);
	free(fx);
	return 0;
}

/* Creates a new empty directory /tmp/<name>.XXXXXX; its path goes into dir (size bytes). */
static inline void cache_test_mkdtemp(char *dir, size_t size, const char *name)
{
	snprintf(dir, size, "/tmp/%s.XXXXXX", name);
	assert_non_null(mkdtemp(dir));
}

#endif
