/*
 * fuzz_recording: the reader of recording.mlr files (a finished run as the
 * query side loads it, possibly fetched back from S3 or damaged on disk).
 * Input: the contents of the file. Path under test: ml_recording_load
 * (sections, zstd, checksums, the index and trailer, delta-coded tables,
 * varint columns) and ml_recording_load_range for a window picked by the
 * input's first bytes.
 * Invariants checked: a file that loads whole also loads for any window,
 * with no more samples than the whole and no more blocks than it holds.
 */
#include <errno.h>
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
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(ML_RECORDING_FILE, data, size);
    ml_model whole;
    ml_model_init(&whole);
    int rv = ml_recording_load(&whole, path);
    FUZZ_CHECK(rv <= 0);

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
