/* tests/fuzz/driver.c — runs a fuzz target without libFuzzer: make unit builds each
 * tests/fuzz/fuzz_*.c with this main() and the normal compiler, and feeds it the seed corpus
 * and the inputs that once crashed (tests/fuzz/corpus/T, tests/fuzz/regress/T).
 *
 * usage: fuzz_T FILE|DIR...   Every regular file named (or in a directory named, not
 * recursively, names starting with '.' skipped) is one input, passed in a malloc'd buffer of
 * exactly its size so that ASan builds (make test-asan) catch reads past its end. A target
 * reports a broken invariant by aborting; this driver fails on unreadable paths. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT_BYTES (16u << 20)

/* Reads path and runs the target on it: 0, or -errno (with a message on stderr). */
static int run_file(const char *path)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t got = 0;
	int rc = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) != 0) {
		rc = -errno;
		goto out;
	}
	if (st.st_size > MAX_INPUT_BYTES) {
		rc = -EFBIG;
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			goto out;
		}
		got += (size_t)n;
	}
	LLVMFuzzerTestOneInput(buf, got);
out:
	if (rc)
		fprintf(stderr, "fuzz driver: %s: %s\n", path, strerror(-rc));
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every input in dir, in name order; *count grows by the inputs run. 0 or -errno. */
static int run_dir(const char *dir, size_t *count)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	if (!d) {
		rc = -errno;
		fprintf(stderr, "fuzz driver: %s: %s\n", dir, strerror(errno));
		return rc;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **nn = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof(*nn));
			if (!nn) {
				rc = -ENOMEM;
				goto out;
			}
			names = nn;
		}
		if (asprintf(&names[n], "%s/%s", dir, e->d_name) < 0) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
	}
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n && rc == 0; i++)
		if ((rc = run_file(names[i])) == 0)
			(*count)++;
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}

int main(int argc, char **argv)
{
	size_t count = 0;
	int rc = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc && rc == 0; i++) {
		struct stat st;
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
			rc = run_dir(argv[i], &count);
		else if ((rc = run_file(argv[i])) == 0)
			count++;
	}
	if (rc)
		return 1;
	printf("%s: %zu inputs ok\n", argv[0], count);
	return 0;
}
