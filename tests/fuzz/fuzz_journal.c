/*
 * fuzz_journal: the recovery path. Input, RAW: the contents of a
 * journal.mlj file as a crash, a full disk or a bad disk may leave it;
 * SEALED (first byte FUZZ_SEALED, fuzz_common.h): records that the
 * harness writes as a valid journal with the product's writer
 * (ml_journal_append), optionally followed by a raw tail, so that the
 * checksums pass and the decoders of the payloads are reached. Path under
 * test, in the order a restarted collector runs it: ml_journal_read (record
 * framing, checksums), ml_model_load (the query side decoding every
 * record), ml_live_open (ingest state rebuilt, torn tail cut off) and
 * ml_recording_compact (journal -> recording) followed by
 * ml_recording_load of the result.
 * Invariants checked: after ml_live_open succeeded the file reads back
 * with no torn tail and at least the records read before; a recording
 * compacted from the journal loads and holds as many samples and logs as
 * the model of the journal. SEALED: every record appended reads back,
 * and with no tail appended nothing is torn.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "journal.h"
#include "live.h"
#include "log.h"
#include "model.h"
#include "recording.h"
#include "run.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    ml_log_set_level(ML_LOG_ERROR + 1);
    /* The recording format is the same at every zstd level; level 19
     * would only make each compaction slower. */
    ml_recording_set_level(1);
    return 0;
}

static int count_record(void *arg, uint8_t type, const uint8_t *p, size_t n, uint64_t off)
{
    (void)type, (void)p, (void)n, (void)off;
    ++*(size_t *)arg;
    return 0;
}

/* The recovery path on the journal at path (size bytes). */
static void check_journal(const char *path, uint64_t size, size_t *records_read)
{
    char rec[512];
    snprintf(rec, sizeof(rec), "%s/recording.mlr", fuzz_scratch_dir());

    uint64_t off = 0;
    bool torn = false;
    size_t records = 0;
    int rv = ml_journal_read(path, &off, count_record, &records, &torn);
    FUZZ_CHECK(rv == 0 || rv == -EBADMSG);
    FUZZ_CHECK(off <= size);
    *records_read = records;

    ml_model m;
    ml_model_init(&m);
    int mrv = ml_model_load(&m, path);

    /* The journal -> recording compaction and the recording read back. */
    if (mrv == 0 && ml_recording_compact(path, rec) == 0) {
        ml_model r;
        ml_model_init(&r);
        FUZZ_CHECK(ml_recording_load(&r, rec) == 0);
        FUZZ_CHECK(r.nsamples == m.nsamples && r.nlogs == m.nlogs);
        ml_model_dispose(&r);
    }
    /* rec is not removed: only a compaction that succeeded, i.e. replaced
     * it atomically, is read back. */
    ml_model_dispose(&m);

    /* A restart resuming the run: the tail is cut, the rest kept. */
    ml_run *run = ml_run_new();
    if (ml_live_open(run, path) == 0) {
        ml_live_release(run);
        uint64_t off2 = 0;
        bool torn2 = true;
        size_t records2 = 0;
        FUZZ_CHECK(ml_journal_read(path, &off2, count_record, &records2, &torn2) == 0);
        FUZZ_CHECK(!torn2);
        FUZZ_CHECK(rv != 0 || records2 >= records);
    }
    ml_run_free(run);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    size_t records_read;
    if (size > 0 && data[0] == FUZZ_SEALED) {
        snprintf(path, sizeof(path), "%s/journal.mlj", fuzz_scratch_dir());
        size_t appended;
        bool tail;
        FUZZ_CHECK(fuzz_sealed_journal(path, data + 1, size - 1, &appended, &tail) == 0);
        /* The reader takes back all the writer wrote; only a tail may be
         * torn. */
        uint64_t off = 0;
        bool torn = true;
        size_t n = 0;
        FUZZ_CHECK(ml_journal_read(path, &off, count_record, &n, &torn) == 0);
        FUZZ_CHECK(n >= appended && (tail || (n == appended && !torn)));
        struct stat st;
        FUZZ_CHECK(stat(path, &st) == 0);
        check_journal(path, (uint64_t)st.st_size, &records_read);
        FUZZ_CHECK(records_read == n);
        return 0;
    }
    snprintf(path, sizeof(path), "%s", fuzz_write_file("journal.mlj", data, size));
    check_journal(path, size, &records_read);
    return 0;
}
