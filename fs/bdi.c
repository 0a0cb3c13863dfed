/* fs/bdi.c — the kernel's readahead for the mount.
 *
 * The kernel caps a FUSE mount's readahead at 128 KiB when the connection starts, so a
 * sequential reader sends FUSE reads of 128 KiB, eight per cache block, and the daemon idles
 * between them. After the start, root may raise it in sysfs (the backing device "MAJOR:MINOR"
 * of the mount, found in /proc/self/mountinfo: stat of our own mount point would ask
 * ourselves). The first open does it, once: by then the kernel has applied its cap. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "util/util.h"

#define KERNEL_RA_KB 1024 /* one FUSE read per 1 MiB block: max_write (fs.c) allows it */

/* Undoes mountinfo's octal escapes (\040 for a space, ...) in place. */
static void unescape(char *s)
{
	char *d = s;
	for (; *s; s++, d++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*d = *s;
		}
	}
	*d = '\0';
}

/* "MAJOR:MINOR" of the mount at path (the last one listed there), or "" */
static void device_of(const char *path, char *dev, size_t len)
{
	dev[0] = '\0';
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		char mdev[64], mnt[4096];
		/* id parent MAJOR:MINOR root mountpoint ... */
		if (sscanf(line, "%*s %*s %63s %*s %4095s", mdev, mnt) != 2)
			continue;
		unescape(mnt);
		if (strcmp(mnt, path) == 0)
			snprintf(dev, len, "%s", mdev);
	}
	free(line);
	fclose(f);
}

void bfs_bdi_tune(struct bfs_fs *fs)
{
	static atomic_bool done;
	if (fs->opts->readahead == 0 || atomic_exchange(&done, true))
		return;
	char dev[64], path[128];
	device_of(fs->opts->mountpoint, dev, sizeof(dev));
	if (!dev[0])
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	FILE *f = fopen(path, "we");
	if (!f) {
		bfs_log(BFS_LOG_DEBUG, "kernel readahead stays at its default: %s: %s", path,
			strerror(errno));
		return;
	}
	bool ok = fprintf(f, "%d\n", KERNEL_RA_KB) > 0;
	ok = fclose(f) == 0 && ok;
	bfs_log(BFS_LOG_DEBUG, "kernel readahead %s %d KiB", ok ? "set to" : "not set to",
		KERNEL_RA_KB);
}
