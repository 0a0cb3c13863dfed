/* tests/fuzz/fuzz.h — shared by the fuzz targets tests/fuzz/fuzz_*.c (docs/fuzzing.md).
 * Each target defines LLVMFuzzerTestOneInput; it is linked with libFuzzer (make fuzz) or
 * with tests/fuzz/driver.c (make unit, over the seed corpus and the regression inputs). */
#ifndef BFS_TESTS_FUZZ_H
#define BFS_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant is a finding: abort() so that libFuzzer saves the input and the
 * driver fails. */
#define FUZZ_CHECK(cond)                                                                  \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, \
				#cond);                                                    \
			abort();                                                           \
		}                                                                          \
	} while (0)

#endif
