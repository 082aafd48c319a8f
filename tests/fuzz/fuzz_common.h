/*
 * Helpers shared by the libFuzzer drivers: a private scratch directory on
 * tmpfs (the readers under test take paths, not buffers) and a way to write
 * the input there. Single-threaded: libFuzzer runs one input at a time per
 * process.
 */
#ifndef ML_FUZZ_COMMON_H
#define ML_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Aborts with a message: libFuzzer reports the abort as a crash and keeps
 * the input, which is what a broken invariant should do. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A scratch directory created once per process (/dev/shm when present, so
 * the readers' fsyncs cost nothing) and removed at exit. Borrowed. */
const char *fuzz_scratch_dir(void);

/* Writes size bytes at data to <scratch>/name; returns the path (static
 * buffer, overwritten by the next call). Aborts on I/O errors: they are the
 * harness's, not the code's. */
const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size);

#endif
