/*
 * fuzz_ingest: the whole ingest request handler on a real collector with a
 * data directory on tmpfs, as a client sees it over nng (minus the
 * socket). Input: a conversation, i.e. several requests, each framed as
 * u32 little-endian length | bytes (a length past the end takes what is
 * left), so the fuzzer can build OpenRun -> Batch... -> CloseRun.
 *
 * One collector serves every input of the process (starting and closing
 * one per input cost about as much as the input itself). Each input is
 * independent all the same: it starts from an empty store (no run
 * indexed, runs/ empty, index log holding only its header) and leaves one
 * behind, because every run it created is deleted through the collector
 * afterwards, which must leave no file behind. So a crash reproduces from
 * its input alone, in a fresh process or not.
 * After the requests, one housekeeping pass writes run.json and compacts
 * the completed runs, and the input waits for the compactions (journal ->
 * recording, journal removed, run marked recorded).
 * Invariants checked: every request gets a reply that is a valid envelope
 * echoing the call id; then, with every run's ingest state released, each
 * run still on a journal reads back without a torn tail, each recorded run
 * loads from its recording with as many samples and logs as the run
 * counted; every run deletes cleanly.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <uv.h>

#include "collector.h"
#include "fsutil.h"
#include "fuzz_common.h"
#include "ingest.h"
#include "journal.h"
#include "live.h"
#include "log.h"
#include "model.h"
#include "recording.h"
#include "store.h"
#include "wire.h"

#define MAX_REQUESTS 64

static uv_loop_t loop;
static ml_collector col;
static bool closed;

static void on_closed(ml_collector *c)
{
    (void)c;
    closed = true;
}

/* At exit, before the scratch directory goes (atexit runs in reverse). */
static void stop_collector(void)
{
    closed = false;
    ml_collector_close(&col, on_closed);
    while (!closed)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_NOWAIT);
    ml_collector_dispose(&col);
    uv_loop_close(&loop);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    ml_log_set_level(ML_LOG_ERROR + 1);
    /* The recording format is the same at every zstd level; level 19
     * would only make each compaction slower. */
    ml_recording_set_level(1);
    static char dir[512];
    snprintf(dir, sizeof(dir), "%s/data", fuzz_scratch_dir());
    FUZZ_CHECK(uv_loop_init(&loop) == 0);
    /* The timer never fires: housekeeping runs once per input, at the
     * same point of every input, whatever the wall clock does. */
    ml_collector_config cfg = {.data_dir = dir, .housekeeping_ms = UINT32_MAX};
    FUZZ_CHECK(ml_collector_start(&col, &loop, &cfg) == 0);
    atexit(stop_collector);
    return 0;
}

static int count_record(void *arg, uint8_t type, const uint8_t *p, size_t n, uint64_t off)
{
    (void)type, (void)p, (void)n, (void)off;
    ++*(size_t *)arg;
    return 0;
}

static void handle_one(const uint8_t *req, size_t len)
{
    uint8_t *reply = NULL;
    size_t reply_len = 0;
    ml_ingest_handle(&col, req, len, &reply, &reply_len);
    FUZZ_CHECK(reply != NULL && reply_len > 0);
    ml_wire_msg m = {0};
    FUZZ_CHECK(ml_wire_unpack(reply, reply_len, &m) == 0);
    /* The call id is echoed whenever the request's envelope was readable. */
    ml_wire_msg q = {0};
    int rv = ml_wire_unpack(req, len, &q);
    if (rv == 0 || rv == -EPROTO) {
        FUZZ_CHECK(m.env->call_id == q.env->call_id);
        ml_wire_msg_free(&q);
    }
    ml_wire_msg_free(&m);
    free(reply);
}

/* What was acknowledged is on disk whole: the journal of a run not
 * compacted, else its recording. */
static void check_stored(ml_run *r)
{
    if (r->recorded) {
        char *path = ml_store_run_path(&col.store, r, ML_RUN_RECORDING_FILE);
        ml_model m;
        ml_model_init(&m);
        FUZZ_CHECK(ml_recording_load(&m, path) == 0);
        FUZZ_CHECK(m.nsamples == r->samples && m.nlogs == r->logs);
        ml_model_dispose(&m);
        free(path);
        return;
    }
    char *path = ml_store_run_path(&col.store, r, ML_RUN_JOURNAL_FILE);
    uint64_t o = 0;
    bool torn = true;
    size_t records = 0;
    int rv = ml_journal_read(path, &o, count_record, &records, &torn);
    FUZZ_CHECK(rv == 0 || rv == -ENOENT); /* a run whose OpenRun failed has none */
    FUZZ_CHECK(rv != 0 || !torn);
    free(path);
}

/* Back to the empty store the next input starts from. */
static void clear_store(void)
{
    ml_run **runs = NULL;
    size_t n = ml_index_list(&col.index, NULL, 0, &runs);
    for (size_t i = 0; i < n; i++) {
        ml_live_release(runs[i]); /* as closing the collector would */
        check_stored(runs[i]);
        FUZZ_CHECK(ml_collector_delete_run_local(&col, runs[i]) == 0);
    }
    free(runs);
    FUZZ_CHECK(ml_index_count(&col.index) == 0);
    /* Label directories go with their last run; team directories stay,
     * and must be empty. The index log's put/del lines are never read
     * while running, but a fresh collector would not have them. */
    DIR *d = opendir(col.store.runs_dir);
    FUZZ_CHECK(d != NULL);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", col.store.runs_dir, e->d_name);
        FUZZ_CHECK(rmdir(path) == 0);
    }
    closedir(d);
    if (col.store.log_lines > 1)
        FUZZ_CHECK(ml_store_log_rewrite(&col.store, NULL, 0) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    for (int i = 0; i < MAX_REQUESTS && off < size; i++) {
        size_t len = size - off;
        if (len >= 4) {
            uint32_t n = (uint32_t)data[off] | (uint32_t)data[off + 1] << 8 |
                         (uint32_t)data[off + 2] << 16 | (uint32_t)data[off + 3] << 24;
            off += 4;
            len = n <= size - off ? n : size - off;
        }
        handle_one(data + off, len);
        off += len;
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    ml_collector_housekeeping(&col);
    /* Compactions hold a close_pending reference until done on the loop. */
    while (col.close_pending > 0)
        uv_run(&loop, UV_RUN_ONCE);
    clear_store();
    return 0;
}
