/*
 * fuzz_ingest: the whole ingest request handler on a real collector with a
 * temporary data directory, as a client sees it over nng (minus the
 * socket). Input: a conversation, i.e. several requests, each framed as
 * u32 little-endian length | bytes (a length past the end takes what is
 * left), so the fuzzer can build OpenRun -> Batch... -> CloseRun.
 * Each input gets a fresh collector (fresh data directory): a crash
 * reproduces from its input alone. Closing the collector writes run.json
 * and compacts closed runs into recordings, so that path runs too.
 * Invariants checked: every request gets a reply that is a valid envelope
 * echoing the call id; after the collector is closed, every stored
 * journal reads back without a torn tail.
 */
#include <errno.h>
#include <glob.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <uv.h>

#include "collector.h"
#include "fsutil.h"
#include "fuzz_common.h"
#include "ingest.h"
#include "journal.h"
#include "log.h"
#include "store.h"
#include "wire.h"

#define MAX_REQUESTS 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    ml_log_set_level(ML_LOG_ERROR + 1);
    return 0;
}

static bool closed;

static void on_closed(ml_collector *c)
{
    (void)c;
    closed = true;
}

static int count_record(void *arg, uint8_t type, const uint8_t *p, size_t n, uint64_t off)
{
    (void)type, (void)p, (void)n, (void)off;
    ++*(size_t *)arg;
    return 0;
}

static void handle_one(ml_collector *c, const uint8_t *req, size_t len)
{
    uint8_t *reply = NULL;
    size_t reply_len = 0;
    ml_ingest_handle(c, req, len, &reply, &reply_len);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/data", fuzz_scratch_dir());
    ml_remove_tree(dir);
    uv_loop_t loop;
    FUZZ_CHECK(uv_loop_init(&loop) == 0);
    ml_collector c;
    memset(&c, 0, sizeof(c));
    ml_collector_config cfg = {.data_dir = dir};
    FUZZ_CHECK(ml_collector_start(&c, &loop, &cfg) == 0);

    size_t off = 0;
    for (int i = 0; i < MAX_REQUESTS && off < size; i++) {
        size_t len = size - off;
        if (len >= 4) {
            uint32_t n = (uint32_t)data[off] | (uint32_t)data[off + 1] << 8 |
                         (uint32_t)data[off + 2] << 16 | (uint32_t)data[off + 3] << 24;
            off += 4;
            len = n <= size - off ? n : size - off;
        }
        handle_one(&c, data + off, len);
        off += len;
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    ml_collector_housekeeping(&c);

    closed = false;
    ml_collector_close(&c, on_closed);
    while (!closed)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_NOWAIT);
    ml_collector_dispose(&c);
    FUZZ_CHECK(uv_loop_close(&loop) == 0);

    /* Whatever was acknowledged is in a journal that reads back whole. */
    char pat[600];
    snprintf(pat, sizeof(pat), "%s/runs/*/*/*/%s", dir, ML_RUN_JOURNAL_FILE);
    glob_t g;
    if (glob(pat, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            uint64_t o = 0;
            bool torn = true;
            size_t records = 0;
            FUZZ_CHECK(ml_journal_read(g.gl_pathv[i], &o, count_record, &records, &torn) == 0);
            FUZZ_CHECK(!torn);
            (void)records;
        }
        globfree(&g);
    }
    ml_remove_tree(dir);
    return 0;
}
