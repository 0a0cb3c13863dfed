/* fs/meta.c — POSIX attributes <-> S3 user metadata, compatible with s3fs-fuse 1.90.
 *
 * Headers (docs/layout.md has the full description and what s3fs 1.90 was seen to write):
 *   x-amz-meta-mode   st_mode in decimal, with the file type bits ("33188" = S_IFREG|0644)
 *   x-amz-meta-uid    decimal
 *   x-amz-meta-gid    decimal
 *   x-amz-meta-mtime  "<sec>" when tv_nsec is 0, else "<sec>.<9 digits>"; also rclone's
 *   x-amz-meta-ctime    float seconds ("1609459200.5"), read as a decimal fraction
 *   x-amz-meta-atime
 * Read only: goog-reserved-posix-mode (octal), goog-reserved-posix-uid/gid (decimal),
 * goog-reserved-file-mtime (seconds), as GCS writes them. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs.h"

#define NSEC_PER_SEC 1000000000L

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int bfs_meta_parse_time(const char *s, struct timespec *ts)
{
	if (!s)
		return -EINVAL;
	while (is_space(*s))
		s++;
	bool neg = *s == '-';
	if (neg)
		s++;
	if (!is_digit(*s))
		return -EINVAL;

	long long sec = 0;
	for (; is_digit(*s); s++) {
		if (sec > (LLONG_MAX - (*s - '0')) / 10)
			return -EINVAL;
		sec = sec * 10 + (*s - '0');
	}

	/* The fraction is a decimal fraction of a second: s3fs always writes exactly 9 digits
	 * (so this equals its nanoseconds), rclone writes as many as the float needs.
	 * Digits past the ninth are below a nanosecond and dropped. */
	long nsec = 0;
	if (*s == '.') {
		s++;
		if (!is_digit(*s))
			return -EINVAL;
		long scale = NSEC_PER_SEC / 10;
		for (; is_digit(*s); s++) {
			nsec += (*s - '0') * scale;
			scale /= 10;
		}
	}
	while (is_space(*s))
		s++;
	if (*s != '\0')
		return -EINVAL;

	if (neg) {
		/* -S.F is -(S + F): the timespec is (-S - 1, 1e9 - F) when F > 0. */
		sec = -sec;
		if (nsec > 0) {
			sec -= 1;
			nsec = NSEC_PER_SEC - nsec;
		}
	}
	if ((long long)(time_t)sec != sec)
		return -EINVAL;
	ts->tv_sec = (time_t)sec;
	ts->tv_nsec = nsec;
	return 0;
}

/* Formats ts the way s3fs does; the inverse of bfs_meta_parse_time. buf holds 32 bytes. */
static void format_time(const struct timespec *ts, char *buf, size_t len)
{
	long long sec = ts->tv_sec;
	long nsec = ts->tv_nsec;
	if (nsec < 0 || nsec >= NSEC_PER_SEC)
		nsec = 0;
	if (nsec == 0)
		snprintf(buf, len, "%lld", sec);
	else if (sec >= 0)
		snprintf(buf, len, "%lld.%09ld", sec, nsec);
	else
		/* (sec, nsec) with sec < 0 is the value -(-sec - 1 + (1e9 - nsec)/1e9). */
		snprintf(buf, len, "-%lld.%09ld", -(sec + 1), NSEC_PER_SEC - nsec);
}

/* Parses an unsigned number as s3fs does for mode/uid/gid (strtol base 0: decimal, or
 * 0-prefixed octal, or 0x hex) or in the given base. Returns false if s is not one. */
static bool parse_ulong(const char *s, int base, unsigned long max, unsigned long *out)
{
	if (!s)
		return false;
	while (is_space(*s))
		s++;
	if (!is_digit(*s))
		return false;
	errno = 0;
	char *end;
	unsigned long v = strtoul(s, &end, base);
	while (is_space(*end))
		end++;
	if (errno || *end != '\0' || v > max)
		return false;
	*out = v;
	return true;
}

/* First header among names that holds a time; false if none does. s3fs writes "-1" for a
 * time it does not know (chmod of a directory that had no marker), so -1 counts as absent. */
static bool meta_time(const struct s3_meta *m, const char *const *names, struct timespec *ts)
{
	for (; *names; names++)
		if (bfs_meta_parse_time(s3_meta_get(m, *names), ts) == 0 &&
		    !(ts->tv_sec == -1 && ts->tv_nsec == 0))
			return true;
	return false;
}

static bool is_dir_content_type(const char *ct)
{
	size_t n = strcspn(ct, ";");
	while (n > 0 && is_space(ct[n - 1]))
		n--;
	return (n == 23 && strncmp(ct, "application/x-directory", n) == 0) ||
	       (n == 19 && strncmp(ct, "httpd/unix-directory", n) == 0);
}

void bfs_meta_to_stat(const struct s3_object *o, bool is_dir_hint, const struct bfs_defaults *d,
		      struct stat *st)
{
	static const char *const mtime_names[] = {"mtime", "goog-reserved-file-mtime", NULL};
	static const char *const ctime_names[] = {"ctime", NULL};
	static const char *const atime_names[] = {"atime", NULL};
	const struct s3_meta *m = o ? &o->meta : NULL;
	unsigned long v;

	memset(st, 0, sizeof(*st));
	st->st_nlink = 1;
	st->st_blksize = 4096;
	st->st_uid = d->uid;
	st->st_gid = d->gid;

	mode_t mode;
	bool have_mode = false;
	if (m && parse_ulong(s3_meta_get(m, "mode"), 0, UINT32_MAX, &v)) {
		mode = (mode_t)v;
		have_mode = true;
	} else if (m && parse_ulong(s3_meta_get(m, "goog-reserved-posix-mode"), 8, S_IFMT | 07777,
					 &v)) {
		mode = (mode_t)v;
		have_mode = true;
	} else {
		mode = (is_dir_hint ? 0777 : 0666) & ~d->umask;
	}
	mode &= S_IFMT | 07777;
	if (is_dir_hint) {
		/* A "dir/" marker or a bare prefix is a directory whatever its mode says. */
		mode = S_IFDIR | (mode & 07777);
	} else if ((mode & S_IFMT) == 0) {
		if (o && is_dir_content_type(o->content_type))
			mode |= S_IFDIR;
		else
			mode |= S_IFREG;
		if (!have_mode && S_ISDIR(mode))
			mode = S_IFDIR | (0777 & ~d->umask);
	}
	st->st_mode = mode;
	if ((S_ISCHR(mode) || S_ISBLK(mode)) && m &&
	    parse_ulong(s3_meta_get(m, "rdev"), 0, UINT32_MAX, &v))
		st->st_rdev = (dev_t)v;

	if (m && (parse_ulong(s3_meta_get(m, "uid"), 0, UINT32_MAX - 1, &v) ||
		  parse_ulong(s3_meta_get(m, "goog-reserved-posix-uid"), 10, UINT32_MAX - 1, &v)))
		st->st_uid = (uid_t)v;
	if (m && (parse_ulong(s3_meta_get(m, "gid"), 0, UINT32_MAX - 1, &v) ||
		  parse_ulong(s3_meta_get(m, "goog-reserved-posix-gid"), 10, UINT32_MAX - 1, &v)))
		st->st_gid = (gid_t)v;

	if (!o)
		return; /* implicit directory: no object, times stay at 0 */

	/* A size no off_t holds (S3's limit is 5 TiB) is a broken or hostile server's: shown
	 * as the largest one rather than as a negative size. */
	uint64_t size = S_ISDIR(mode) ? 0 : o->size < INT64_MAX ? o->size : INT64_MAX;
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);

	/* Without headers: mtime and ctime are the object's Last-Modified, atime follows mtime
	 * (so an rclone upload, which sets only mtime, gets atime = mtime). */
	if (!meta_time(m, mtime_names, &st->st_mtim))
		st->st_mtim = o->last_modified;
	if (!meta_time(m, ctime_names, &st->st_ctim))
		st->st_ctim = o->last_modified;
	if (!meta_time(m, atime_names, &st->st_atim))
		st->st_atim = st->st_mtim;
}

int bfs_meta_set_time(struct s3_meta *m, const char *name, const struct timespec *t)
{
	char buf[32];
	format_time(t, buf, sizeof(buf));
	return s3_meta_set(m, name, buf);
}

int bfs_meta_from_stat(const struct stat *st, struct s3_meta *m)
{
	char buf[32];
	int rc;

	snprintf(buf, sizeof(buf), "%lu", (unsigned long)st->st_mode);
	if ((rc = s3_meta_set(m, "mode", buf)))
		return rc;
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
		snprintf(buf, sizeof(buf), "%lu", (unsigned long)st->st_rdev);
		if ((rc = s3_meta_set(m, "rdev", buf)))
			return rc;
	}
	snprintf(buf, sizeof(buf), "%lu", (unsigned long)st->st_uid);
	if ((rc = s3_meta_set(m, "uid", buf)))
		return rc;
	snprintf(buf, sizeof(buf), "%lu", (unsigned long)st->st_gid);
	if ((rc = s3_meta_set(m, "gid", buf)))
		return rc;
	format_time(&st->st_mtim, buf, sizeof(buf));
	if ((rc = s3_meta_set(m, "mtime", buf)))
		return rc;
	format_time(&st->st_ctim, buf, sizeof(buf));
	if ((rc = s3_meta_set(m, "ctime", buf)))
		return rc;
	format_time(&st->st_atim, buf, sizeof(buf));
	return s3_meta_set(m, "atime", buf);
}
