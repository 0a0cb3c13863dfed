/* tests/mpi/scratch.c — an MPI job using a bucketfs mount as shared scratch, the way cluster
 * jobs do, with every byte checked.
 *
 *   mpiexec -n N scratch SIZE DIR_0 ... DIR_{N-1}
 *
 * DIR_r is where rank r sees the bucket (ranks on different mounts stand in for different
 * nodes). SIZE is the bytes each rank writes (suffixes K and M). Phases, each ending in a
 * barrier:
 *   a. every rank writes its own file a.R; then reads a.P of its partner P = (R + N/2) % N,
 *      which a rank on the other mount wrote;
 *   b. rank 0 makes directory b; every rank creates b/R in it; every rank stats and reads
 *      every b/K;
 *   c. rank 0 writes c.big (N * SIZE bytes); every rank reads its own slice of it;
 *   d. every rank removes its partner's a.P and b/P.
 * Prints one line per phase with its time (rank 0), exits 0 only if every check held. */
#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (1u << 20)

static int rank, nranks;

static void die(const char *what, const char *path)
{
	fprintf(stderr, "rank %d: %s %s: %s\n", rank, what, path, strerror(errno));
	MPI_Abort(MPI_COMM_WORLD, 1);
}

/* Byte off of the file identified by seed: a xorshift stream, so no two files agree. */
static void fill(unsigned char *buf, size_t len, uint64_t seed, uint64_t off)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t x = seed * 0x9E3779B97F4A7C15ull + ((off + i) >> 3) + 1;
		x ^= x >> 33;
		x *= 0xff51afd7ed558ccdull;
		x ^= x >> 33;
		buf[i] = (unsigned char)(x >> (((off + i) & 7) * 8));
	}
}

static void write_file(const char *path, uint64_t seed, uint64_t size)
{
	unsigned char *buf = malloc(CHUNK);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (!buf || fd < 0)
		die("cannot create", path);
	for (uint64_t off = 0; off < size; off += CHUNK) {
		size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
		fill(buf, n, seed, off);
		if (write(fd, buf, n) != (ssize_t)n)
			die("cannot write", path);
	}
	if (close(fd) != 0) /* close-to-open: S3 has it when this returns */
		die("close failed for", path);
	free(buf);
}

/* Reads [off, off+len) of path and checks it against seed's stream; size: the whole file's. */
static void check_file(const char *path, uint64_t seed, uint64_t size, uint64_t off, uint64_t len)
{
	struct stat st;
	if (stat(path, &st) != 0)
		die("cannot stat", path);
	if ((uint64_t)st.st_size != size) {
		fprintf(stderr, "rank %d: %s has %lld bytes, want %llu\n", rank, path,
			(long long)st.st_size, (unsigned long long)size);
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	unsigned char *buf = malloc(CHUNK), *want = malloc(CHUNK);
	int fd = open(path, O_RDONLY);
	if (!buf || !want || fd < 0)
		die("cannot open", path);
	for (uint64_t at = off; at < off + len; at += CHUNK) {
		size_t n = off + len - at < CHUNK ? (size_t)(off + len - at) : CHUNK;
		ssize_t got = pread(fd, buf, n, (off_t)at);
		if (got < 0)
			die("cannot read", path);
		fill(want, n, seed, at);
		if ((size_t)got != n || memcmp(buf, want, n) != 0) {
			fprintf(stderr, "rank %d: %s differs in [%llu, %llu) (read %zd bytes)\n",
				rank, path, (unsigned long long)at, (unsigned long long)(at + n),
				got);
			MPI_Abort(MPI_COMM_WORLD, 1);
		}
	}
	close(fd);
	free(buf);
	free(want);
}

static double phase_start;

static void phase_end(const char *name, uint64_t bytes)
{
	MPI_Barrier(MPI_COMM_WORLD);
	double t = MPI_Wtime() - phase_start;
	if (rank == 0 && bytes)
		printf("phase %s: %.3f s, %.1f MB/s\n", name, t, (double)bytes / t / 1e6);
	else if (rank == 0)
		printf("phase %s: %.3f s\n", name, t);
	fflush(stdout);
	phase_start = MPI_Wtime();
}

static uint64_t parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end == 'K')
		v <<= 10;
	else if (*end == 'M')
		v <<= 20;
	return v;
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	if (argc != 2 + nranks || nranks < 2) {
		if (rank == 0)
			fprintf(stderr, "usage: mpiexec -n N scratch SIZE DIR_0 ... DIR_{N-1}\n");
		MPI_Finalize();
		return 2;
	}
	uint64_t size = parse_size(argv[1]);
	const char *dir = argv[2 + rank];
	int partner = (rank + nranks / 2) % nranks;
	char path[4096];

	MPI_Barrier(MPI_COMM_WORLD);
	phase_start = MPI_Wtime();

	/* a. file per process, read back through the other mount */
	snprintf(path, sizeof(path), "%s/a.%d", dir, rank);
	write_file(path, 100 + rank, size);
	phase_end("a-write", size * nranks);
	snprintf(path, sizeof(path), "%s/a.%d", dir, partner);
	check_file(path, 100 + partner, size, 0, size);
	phase_end("a-read", size * nranks);

	/* b. rank 0 makes the directory, the others fill it at once */
	if (rank == 0) {
		snprintf(path, sizeof(path), "%s/b", dir);
		if (mkdir(path, 0755) != 0)
			die("cannot mkdir", path);
	}
	phase_end("b-mkdir", 0);
	snprintf(path, sizeof(path), "%s/b/%d", dir, rank);
	write_file(path, 200 + rank, 4096 + rank);
	phase_end("b-create", 0);
	for (int k = 0; k < nranks; k++) {
		snprintf(path, sizeof(path), "%s/b/%d", dir, k);
		check_file(path, 200 + k, 4096 + k, 0, 4096 + k);
	}
	phase_end("b-read-all", 0);

	/* c. one large file, read in disjoint slices */
	uint64_t big = size * nranks;
	if (rank == 0) {
		snprintf(path, sizeof(path), "%s/c.big", dir);
		write_file(path, 300, big);
	}
	phase_end("c-write", big);
	snprintf(path, sizeof(path), "%s/c.big", dir);
	check_file(path, 300, big, size * rank, size);
	phase_end("c-read-slices", big);

	/* d. remove what a rank on the other mount made */
	snprintf(path, sizeof(path), "%s/a.%d", dir, partner);
	if (unlink(path) != 0)
		die("cannot remove", path);
	snprintf(path, sizeof(path), "%s/b/%d", dir, partner);
	if (unlink(path) != 0)
		die("cannot remove", path);
	phase_end("d-remove", 0);

	if (rank == 0)
		printf("scratch: %d ranks, %llu bytes each: all checks passed\n", nranks,
		       (unsigned long long)size);
	MPI_Finalize();
	return 0;
}
