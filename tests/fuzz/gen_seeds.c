/*
 * ml_fuzz_seeds: turns one real recorded run into seed corpora for every
 * fuzz target. Input: a spool file written by the real client
 * (ml_drive --spool-only), i.e. the very request envelopes a client sends.
 * Output, under OUTDIR/<target>/:
 *   wire/       the OpenRun, first batches and CloseRun envelopes
 *   ingest/     the whole conversation and a short one, length-framed
 *   spool/      the spool file itself and a copy with a torn last record
 *   journal/    the journal a real collector wrote from those requests
 *               (while live, and once closed)
 *   recording/  the recording compacted from that journal
 *   run_json/   the run.json the collector wrote
 *
 *   ml_fuzz_seeds SPOOL_FILE OUTDIR
 * Exit status 0 on success; a message on stderr otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "../../client/src/internal.h"
#include "collector.h"
#include "fsutil.h"
#include "ingest.h"
#include "log.h"
#include "recording.h"
#include "store.h"

#define MAX_RECORDS 4096

typedef struct rec {
    uint32_t kind;
    uint8_t *data;
    size_t len;
} rec;

static rec recs[MAX_RECORDS];
static size_t nrecs;

static void die(const char *what, int err)
{
    fprintf(stderr, "ml_fuzz_seeds: %s: %s\n", what, strerror(err < 0 ? -err : err));
    exit(1);
}

static void put(const char *dir, const char *target, const char *name, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, target);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/%s", dir, target, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0)
        die(path, errno);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        die(path, errno);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
        die(path, EIO);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Copies the first file matching pattern to OUTDIR/target/name. */
static bool copy_glob(const char *pattern, const char *out, const char *target, const char *name)
{
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0)
        return false;
    size_t n;
    uint8_t *buf = slurp(g.gl_pathv[0], &n);
    put(out, target, name, buf, n);
    free(buf);
    globfree(&g);
    return true;
}

/* u32 little-endian length | bytes, the framing fuzz_ingest reads. */
static void frame(FILE *f, const rec *r)
{
    uint8_t h[4] = {(uint8_t)r->len, (uint8_t)(r->len >> 8), (uint8_t)(r->len >> 16),
                    (uint8_t)(r->len >> 24)};
    fwrite(h, 1, 4, f);
    fwrite(r->data, 1, r->len, f);
}

static void write_conversation(const char *out, const char *name, const size_t *idx, size_t n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    for (size_t i = 0; i < n; i++)
        frame(f, &recs[idx[i]]);
    fclose(f);
    put(out, "ingest", name, buf, len);
    free(buf);
}

static void read_spool(const char *path)
{
    ml__spool sp;
    char server[512];
    int rv = ml__spool_open_leftover(&sp, path, server, sizeof(server));
    if (rv != 0)
        die(path, rv);
    uint64_t off = sp.off;
    while (nrecs < MAX_RECORDS) {
        ml_spool_rec h;
        uint8_t *data;
        uint64_t next;
        if (ml__spool_read(&sp, off, &h, &data, &next) != 0)
            break;
        recs[nrecs++] = (rec){h.kind, data, h.len};
        off = next;
    }
    ml__spool_free(&sp);
    if (nrecs < 2 || recs[0].kind != ML_SPOOL_OPEN)
        die("spool file holds no run", EBADMSG);
}

static bool closed;
static void on_closed(ml_collector *c)
{
    (void)c;
    closed = true;
}

/* Replays the run into a real collector; copies its journal (live and
 * closed), run.json and the recording compacted from the journal. */
static void collect(const char *out)
{
    char tmpl[] = "/tmp/ml_fuzz_seeds_XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (dir == NULL)
        die("mkdtemp", errno);
    uv_loop_t loop;
    uv_loop_init(&loop);
    ml_collector c;
    memset(&c, 0, sizeof(c));
    ml_collector_config cfg = {.data_dir = dir};
    if (ml_collector_start(&c, &loop, &cfg) != 0)
        die("collector", EIO);
    char pat[1024], journal_copy[1024];
    snprintf(pat, sizeof(pat), "%s/runs/*/*/*/" ML_RUN_JOURNAL_FILE, dir);
    for (size_t i = 0; i < nrecs; i++) {
        if (recs[i].kind == ML_SPOOL_CLOSE && !copy_glob(pat, out, "journal", "live.mlj"))
            die("no journal written", ENOENT);
        uint8_t *reply;
        size_t reply_len;
        ml_ingest_handle(&c, recs[i].data, recs[i].len, &reply, &reply_len);
        free(reply);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    if (!copy_glob(pat, out, "journal", "closed.mlj"))
        die("no journal after close", ENOENT);
    ml_collector_housekeeping(&c);
    closed = false;
    ml_collector_close(&c, on_closed);
    while (!closed)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_NOWAIT);
    ml_collector_dispose(&c);
    uv_loop_close(&loop);
    snprintf(pat, sizeof(pat), "%s/runs/*/*/*/" ML_RUN_META_FILE, dir);
    if (!copy_glob(pat, out, "run_json", "run.json"))
        die("no run.json", ENOENT);
    snprintf(journal_copy, sizeof(journal_copy), "%s/journal/closed.mlj", out);
    char rec_path[1024];
    snprintf(rec_path, sizeof(rec_path), "%s/recording", out);
    mkdir(rec_path, 0755);
    snprintf(rec_path, sizeof(rec_path), "%s/recording/run.mlr", out);
    int rv = ml_recording_compact(journal_copy, rec_path);
    if (rv != 0)
        die("compact", rv);
    ml_remove_tree(dir);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ml_fuzz_seeds SPOOL_FILE OUTDIR\n");
        return 2;
    }
    const char *out = argv[2];
    mkdir(out, 0755);
    ml_log_set_level(ML_LOG_ERROR);
    read_spool(argv[1]);

    /* wire: OpenRun, the first three batches, the last batch, CloseRun */
    char name[64];
    for (size_t i = 0; i < nrecs; i++) {
        if (i > 3 && i + 2 < nrecs)
            continue;
        snprintf(name, sizeof(name), "%zu-kind%u.env", i, recs[i].kind);
        put(out, "wire", name, recs[i].data, recs[i].len);
    }
    size_t all[MAX_RECORDS];
    for (size_t i = 0; i < nrecs; i++)
        all[i] = i;
    write_conversation(out, "whole-run", all, nrecs);
    size_t shortrun[3] = {0, 1, nrecs - 1};
    write_conversation(out, "short-run", shortrun, 3);

    size_t n;
    uint8_t *file = slurp(argv[1], &n);
    put(out, "spool", "run.mlspool", file, n);
    put(out, "spool", "torn.mlspool", file, n - 3);
    free(file);

    collect(out);
    for (size_t i = 0; i < nrecs; i++)
        free(recs[i].data);
    printf("ml_fuzz_seeds: %zu requests -> %s\n", nrecs, out);
    return 0;
}
