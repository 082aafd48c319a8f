/*
 * Helpers shared by the libFuzzer drivers: a private scratch directory on
 * tmpfs (the readers under test take paths, not buffers) and a way to write
 * the input there. Single-threaded: libFuzzer runs one input at a time per
 * process.
 */
#ifndef ML_FUZZ_COMMON_H
#define ML_FUZZ_COMMON_H

#include <stdbool.h>
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

/*
 * SEALED inputs (fuzz_journal, fuzz_recording). The journal and the
 * recording checksum every record and section, so a mutation of the raw
 * file is almost always refused at a checksum and the decoders behind it
 * are seldom reached. An input whose first byte is FUZZ_SEALED holds the
 * contents instead, and the harness seals them into a valid file with the
 * product's own writers. Any other first byte: RAW, the input is the file
 * (both files start with 'M', so every RAW input keeps its meaning).
 */
#define FUZZ_SEALED 'S'

/* Reads a LEB128 varint at *p, never past end; a varint cut by the end of
 * the input ends there, bits past 64 are dropped. Advances *p. */
uint64_t fuzz_get_varint(const uint8_t **p, const uint8_t *end);

/* Appends v to f as LEB128 (the seed generator's side). */
void fuzz_put_varint(FILE *f, uint64_t v);

/* Journal, SEALED (data: the input after the marker):
 *   record*   u8 type | varint length | payload[length]
 * a payload cut by the end of the input is shortened to what is there. A
 * record of type 0 ends the records: the rest of the input is appended to
 * the file verbatim (a torn or damaged tail behind valid records).
 * Writes the journal at path (replacing it) as the ingest does
 * (ingest_rpc.c): ml_live_create, then each record the ingest would
 * journal appended with ml_journal_append (sync false) and committed to
 * the run's live state; a record it would refuse (one that does not
 * decode, a batch with seq 0, a seq already stored, or a batch
 * ml_batch_validate refuses, e.g. with an undefined id or sample columns
 * of unequal length; an unknown type) is left out. So the file holds
 * what a collector can write, which is what the checksums vouch for: the
 * readers (ml_model_load) rely on that. *records: records appended;
 * *tail: whether tail bytes were appended. Returns 0 or -errno. */
int fuzz_sealed_journal(const char *path, const uint8_t *data, size_t size, size_t *records,
                        bool *tail);

/* Recording, SEALED (data: the input after the marker):
 *   section*  u8 type | varint length | body[length] |
 *             zigzag varint t_first | zigzag varint t_last | varint n
 * body is the raw (uncompressed) section body; t_first, t_last and n its
 * index entry (0 when cut off by the end of the input). Writes the
 * recording at path with ml_recording_write_sections (each body one zstd
 * frame, checksums, index, trailer). *sections: how many. Returns 0 or
 * -errno. */
int fuzz_sealed_recording(const char *path, const uint8_t *data, size_t size, size_t *sections);

#endif
