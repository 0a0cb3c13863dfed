/* cache/blocks.c — clean block files under <dir>/blocks/<xx>/ and their CRC32C.
 *
 * A block file holds exactly the bytes of one block; its name is the block file id the index
 * record points to. Files are written to "<name>.tmp" and renamed into place, so a file under
 * its final name is always complete unless the disk lied; the index checksum catches that.
 * Nothing here is fsync'd: clean blocks can always be fetched again, and every read is checked
 * against the CRC stored in the index. */
#include "cache/cache_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

/* ---- CRC32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-8 ---- */

static uint32_t crc_table[8][256]; /* written once under crc_once, read-only afterwards */
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t v = i;
		for (int k = 0; k < 8; k++)
			v = (v >> 1) ^ (0x82F63B78u & (0u - (v & 1)));
		crc_table[0][i] = v;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

/* Portable version; crc is the value returned for the preceding bytes (0 to start). */
uint32_t cache_crc32c_sw(uint32_t crc, const void *p, size_t n)
{
	const unsigned char *b = p;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (n >= 8) {
		uint32_t lo = crc ^ ((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
				     (uint32_t)b[3] << 24);
		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][b[4]] ^ crc_table[2][b[5]] ^ crc_table[1][b[6]] ^ crc_table[0][b[7]];
		b += 8;
		n -= 8;
	}
	while (n--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *b++) & 0xff];
	return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>

/* SSE4.2's crc32 instruction computes exactly CRC32C: 8 bytes per instruction, several
 * times faster than the tables; a warm read checks every block it reads, so this matters. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *p,
							     size_t n)
{
	const unsigned char *b = p;
	uint64_t c = ~crc & 0xffffffffu;

	for (; n > 0 && ((uintptr_t)b & 7); n--)
		c = _mm_crc32_u8((uint32_t)c, *b++);
	for (; n >= 8; n -= 8, b += 8) {
		uint64_t v;
		memcpy(&v, b, 8);
		c = _mm_crc32_u64(c, v);
	}
	for (; n > 0; n--)
		c = _mm_crc32_u8((uint32_t)c, *b++);
	return ~(uint32_t)c;
}

uint32_t cache_crc32c(uint32_t crc, const void *p, size_t n)
{
	static int hw = -1; /* benign race: every thread computes the same value */

	if (hw < 0)
		hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
	return hw ? crc32c_sse42(crc, p, n) : cache_crc32c_sw(crc, p, n);
}
#else
uint32_t cache_crc32c(uint32_t crc, const void *p, size_t n)
{
	return cache_crc32c_sw(crc, p, n);
}
#endif

/* ---- block files ---- */

void cache_blk_path(const struct cache *c, uint64_t fid, char *buf, size_t len)
{
	snprintf(buf, len, "%s/blocks/%02x/%016" PRIx64, c->dir, (unsigned)(fid & 0xff), fid);
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Returns 0, -ENOSPC/-EDQUOT when the disk is full, or another -errno. */
int cache_blk_write(struct cache *c, uint64_t fid, const void *data, size_t len)
{
	char path[4096], tmp[4200];
	int fd, rc;

	cache_blk_path(c, fid, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = write_all(fd, data, len);
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

/* Reads the whole block file fid into buf and checks it: 0 if it holds exactly len bytes
 * whose CRC32C is crc; -EBADMSG if shorter, longer or corrupt; -ENOENT if missing. */
int cache_blk_read(struct cache *c, uint64_t fid, void *buf, size_t len, uint32_t crc)
{
	char path[4096], extra;
	size_t got = 0;
	int fd, rc = 0;

	cache_blk_path(c, fid, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got != len || pread(fd, &extra, 1, (off_t)len) != 0 ||
	    cache_crc32c(0, buf, len) != crc)
		rc = -EBADMSG;
out:
	close(fd);
	return rc;
}

void cache_blk_unlink(struct cache *c, uint64_t fid)
{
	char path[4096];

	cache_blk_path(c, fid, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		bfs_log(BFS_LOG_WARN, "cache: unlink %s: %s", path, strerror(errno));
}

static bool fid_live(const uint64_t *live, size_t n, uint64_t fid)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (live[mid] == fid)
			return true;
		if (live[mid] < fid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Creates the 256 shard directories if needed and deletes every file in them that is not a
 * live block file: temporaries left by a crash, and blocks whose index record was never
 * committed or was deleted before the unlink. */
int cache_blk_sweep(struct cache *c, const uint64_t *live, size_t n)
{
	char path[4096];
	size_t removed = 0;

	for (unsigned shard = 0; shard < 256; shard++) {
		DIR *d;
		struct dirent *e;

		snprintf(path, sizeof(path), "%s/blocks/%02x", c->dir, shard);
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return -errno;
		d = opendir(path);
		if (!d)
			return -errno;
		while ((e = readdir(d))) {
			char *end;
			uint64_t fid;

			if (e->d_name[0] == '.')
				continue;
			errno = 0;
			fid = strtoull(e->d_name, &end, 16);
			if (errno == 0 && *end == '\0' && end - e->d_name == 16 &&
			    (fid & 0xff) == shard && fid_live(live, n, fid))
				continue;
			if (unlinkat(dirfd(d), e->d_name, 0) == 0)
				removed++;
		}
		closedir(d);
	}
	if (removed)
		bfs_log(BFS_LOG_INFO, "cache: removed %zu stray block files", removed);
	return 0;
}
