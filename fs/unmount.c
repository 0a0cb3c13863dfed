/* fs/unmount.c — unmount and mount again without a race against the journal.
 *
 * `fusermount3 -u` returns as soon as the kernel lets go; the daemon then finishes its
 * uploads, holding cache_dir until it exits. So:
 *  - the daemon says what it does in its cache lock file (cache_set_owner): "mounted PATH"
 *    while it serves, "unmounting PATH" once the kernel let go;
 *  - a new mount whose cache_dir is held by a daemon that is unmounting waits for it, saying
 *    so on stderr with what is left to upload, for at most lock_wait seconds; one held by a
 *    daemon that still serves a mount is refused at once;
 *  - `bucketfs -u MOUNTPOINT` unmounts and waits until the daemon has uploaded everything,
 *    with progress, and says whether anything stayed in the journal. */
#include <dirent.h>
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/util.h"

extern char **environ;

#define SAY_MOUNTED "mounted "
#define SAY_UNMOUNTING "unmounting "

void bfs_owner_say(struct cache *c, bool mounted, const char *mountpoint)
{
	char text[4200];
	snprintf(text, sizeof(text), "%s%s\n", mounted ? SAY_MOUNTED : SAY_UNMOUNTING,
		 mountpoint);
	int rc = cache_set_owner(c, text);
	if (rc)
		bfs_log(BFS_LOG_WARN, "cannot note the mount state in cache_dir: %s", strerror(-rc));
}

/* The path after "mounted " / "unmounting " in the lock file of dir (trailing newline
 * dropped) into path, and which of the two it says: 1 mounted, 0 unmounting, -1 neither. */
static int owner_state(const char *dir, char *path, size_t len)
{
	char buf[4200];
	path[0] = '\0';
	if (cache_owner_read(dir, buf, sizeof(buf)) != 0)
		return -1;
	buf[strcspn(buf, "\n")] = '\0';
	int state = strncmp(buf, SAY_MOUNTED, strlen(SAY_MOUNTED)) == 0 ? 1
		    : strncmp(buf, SAY_UNMOUNTING, strlen(SAY_UNMOUNTING)) == 0 ? 0 : -1;
	if (state >= 0)
		snprintf(path, len, "%s", buf + (state ? strlen(SAY_MOUNTED) : strlen(SAY_UNMOUNTING)));
	return state;
}

/* What the journal in dir still holds: files (entries) and bytes. -1 if unknown. */
static void journal_left(const char *dir, long long *files, double *mib)
{
	struct cache_config cc = { .dir = dir, .flags = CACHE_OPEN_RDONLY };
	struct cache *c = NULL;
	*files = -1;
	*mib = 0;
	if (cache_open(&cc, &c) != 0)
		return;
	struct cache_stats st;
	cache_stats_get(c, &st);
	*files = (long long)st.dirty_entries;
	*mib = (double)st.dirty_bytes / (1 << 20);
	cache_close(c);
}

static void say_left(const char *what, const char *dir, bool tty)
{
	long long files;
	double mib;
	journal_left(dir, &files, &mib);
	if (files < 0)
		fprintf(stderr, "%sbucketfs: %s%s", tty ? "\r" : "", what, tty ? "\033[K" : "\n");
	else
		fprintf(stderr, "%sbucketfs: %s: %lld file%s (%.1f MiB) left to upload%s",
			tty ? "\r" : "", what, files, files == 1 ? "" : "s", mib,
			tty ? "\033[K" : "\n");
}

int bfs_cache_wait(const char *dir, int timeout_s)
{
	int64_t start = bfs_mono_ns(), next_note = 0;
	bool tty = isatty(2), waited = false;
	for (;;) {
		long holder = cache_lock_holder(dir);
		if (holder == 0) {
			if (waited && tty)
				fputc('\n', stderr);
			return 0;
		}
		char mnt[4096];
		int state = owner_state(dir, mnt, sizeof(mnt));
		if (state == 1) {
			fprintf(stderr, "bucketfs: cache_dir %s is in use by the bucketfs mount on %s "
				"(pid %ld)\n", dir, mnt, holder);
			return -EBUSY;
		}
		int64_t now = bfs_mono_ns();
		if (now - start >= (int64_t)timeout_s * 1000000000) {
			fprintf(stderr, "%sbucketfs: cache_dir %s is still held by pid %ld after %d s "
				"(lock_wait=%d); not mounted\n", tty ? "\n" : "", dir, holder, timeout_s,
				timeout_s);
			return -EBUSY;
		}
		if (now >= next_note) {
			char what[4400];
			snprintf(what, sizeof(what), "waiting for bucketfs pid %ld%s%s to finish "
				 "(it holds cache_dir %s)", holder, state == 0 ? ", unmounted from " : "",
				 state == 0 ? mnt : "", dir);
			say_left(what, dir, tty);
			next_note = now + (tty ? 1 : 5) * (int64_t)1000000000;
		}
		waited = true;
		usleep(100000);
	}
}

/* ---- bucketfs -u MOUNTPOINT ---- */

static bool alive(long pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] != 'Z';
}

/* Finds the daemon serving mnt (a realpath): a process that holds a cache lock file saying
 * "mounted mnt". Its pid, and its cache_dir into dir. 0 if none. */
static long find_daemon(const char *mnt, char *dir, size_t len)
{
	DIR *proc = opendir("/proc");
	long found = 0;
	if (!proc)
		return 0;
	struct dirent *e;
	while (!found && (e = readdir(proc))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		char path[128];
		snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
		DIR *fds = opendir(path);
		if (!fds)
			continue;
		struct dirent *fe;
		while (!found && (fe = readdir(fds))) {
			char link[512], target[4096];
			snprintf(link, sizeof(link), "%s/%s", path, fe->d_name);
			ssize_t n = readlink(link, target, sizeof(target) - 1);
			if (n <= 5)
				continue;
			target[n] = '\0';
			if (strcmp(target + n - 5, "/lock") != 0)
				continue;
			target[n - 5] = '\0';
			char owner[4096];
			if (owner_state(target, owner, sizeof(owner)) == 1 && strcmp(owner, mnt) == 0 &&
			    cache_lock_holder(target) == pid) {
				found = pid;
				snprintf(dir, len, "%s", target);
			}
		}
		closedir(fds);
	}
	closedir(proc);
	return found;
}

int bfs_unmount_main(const char *arg)
{
	char *mnt = realpath(arg, NULL);
	if (!mnt) {
		fprintf(stderr, "bucketfs: %s: %s\n", arg, strerror(errno));
		return 1;
	}
	char dir[4096];
	long pid = find_daemon(mnt, dir, sizeof(dir));
	if (!pid) {
		fprintf(stderr, "bucketfs: no bucketfs daemon serves %s (not a bucketfs mount, or "
			"not yours)\n", mnt);
		free(mnt);
		return 1;
	}
	char *argv[] = { "fusermount3", "-u", mnt, NULL };
	pid_t child;
	int status = 0;
	if (posix_spawnp(&child, "fusermount3", NULL, NULL, argv, environ) != 0 ||
	    waitpid(child, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "bucketfs: fusermount3 -u %s failed (busy? see fuser -m %s)\n", mnt,
			mnt);
		free(mnt);
		return 1;
	}
	bool tty = isatty(2);
	int64_t next_note = 0;
	while (alive(pid)) {
		int64_t now = bfs_mono_ns();
		if (now >= next_note) {
			char what[4200];
			snprintf(what, sizeof(what), "%s unmounted; pid %ld is uploading", mnt, pid);
			say_left(what, dir, tty);
			next_note = now + (tty ? 1 : 5) * (int64_t)1000000000;
		}
		usleep(100000);
	}
	if (tty)
		fputc('\n', stderr);
	long long files;
	double mib;
	journal_left(dir, &files, &mib);
	int rc = 0;
	if (files > 0) {
		fprintf(stderr, "bucketfs: %lld file%s (%.1f MiB) could not be uploaded; kept in %s "
			"for the next mount\n", files, files == 1 ? "" : "s", mib, dir);
		rc = 1;
	} else {
		fprintf(stderr, "bucketfs: %s unmounted; everything is in S3\n", mnt);
	}
	free(mnt);
	return rc;
}
