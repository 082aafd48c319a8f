/*
 * fuzz_recording: the reader of recording.mlr files (a finished run as the
 * query side loads it, possibly fetched back from S3 or damaged on disk).
 * Input, RAW: the contents of the file; SEALED (first byte FUZZ_SEALED,
 * fuzz_common.h): raw section bodies that the harness seals into a valid
 * container (ml_recording_write_sections: zstd, checksums, index,
 * trailer), so that the checksums pass and the decoders of the bodies
 * (tables, stack trie, varint columns) are reached. Path under test:
 * ml_recording_load
 * (sections, zstd, checksums, the index and trailer, delta-coded tables,
 * varint columns) and ml_recording_load_range for a window picked by the
 * input's first bytes.
 * Invariants checked: a file that loads whole also loads for any window,
 * with no more samples than the whole and no more blocks than it holds;
 * a SEALED file is refused only as -EBADMSG (a body the decoders reject),
 * never as an I/O error or an earlier version.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "log.h"
#include "model.h"
#include "recording.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    ml_log_set_level(ML_LOG_ERROR + 1);
    /* SEALED inputs are compressed at level 1: the container is the same
     * at every level. */
    ml_recording_set_level(1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    bool sealed = size > 0 && data[0] == FUZZ_SEALED;
    if (sealed) {
        size_t sections;
        snprintf(path, sizeof(path), "%s/" ML_RECORDING_FILE, fuzz_scratch_dir());
        FUZZ_CHECK(fuzz_sealed_recording(path, data + 1, size - 1, &sections) == 0);
    } else {
        snprintf(path, sizeof(path), "%s", fuzz_write_file(ML_RECORDING_FILE, data, size));
    }
    ml_model whole;
    ml_model_init(&whole);
    int rv = ml_recording_load(&whole, path);
    FUZZ_CHECK(rv <= 0);
    FUZZ_CHECK(!sealed || rv == 0 || rv == -EBADMSG);

    /* A window from bytes near the end (the magic at the start is fixed). */
    int64_t t0 = 0, t1 = INT64_MAX;
    if (size >= 16) {
        uint32_t a, b;
        memcpy(&a, data + size / 2, 4);
        memcpy(&b, data + size / 3, 4);
        t0 = a % 4000000;
        t1 = t0 + b % 4000000;
    }
    ml_model part;
    ml_model_init(&part);
    uint32_t blocks = 0;
    int prv = ml_recording_load_range(&part, path, t0, t1, &blocks);
    if (rv == 0) {
        FUZZ_CHECK(prv == 0);
        FUZZ_CHECK(part.nsamples <= whole.nsamples);
        FUZZ_CHECK((size_t)blocks * ML_RECORDING_BLOCK >= part.nsamples);
    }
    ml_model_dispose(&part);
    ml_model_dispose(&whole);
    return 0;
}
