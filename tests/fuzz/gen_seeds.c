/*
 * ml_fuzz_seeds: turns one real recorded run into seed corpora for every
 * fuzz target. Input: a spool file written by the real client
 * (ml_drive --spool-only), i.e. the very request envelopes a client sends.
 * Output, under OUTDIR/<target>/:
 *   wire/       the OpenRun, first batches and CloseRun envelopes
 *   ingest/     the whole conversation and a short one, length-framed
 *   spool/      the spool file itself and a copy with a torn last record
 *   journal/    the journal a real collector wrote from those requests
 *               (while live, and once closed), and the closed one in
 *               SEALED form (fuzz_common.h), also with a torn tail
 *   recording/  the recording compacted from that journal, and in SEALED
 *               form (its sections decompressed)
 *   run_json/   the run.json the collector wrote
 *
 *   ml_fuzz_seeds SPOOL_FILE OUTDIR
 * Each SEALED seed is checked: sealed again by the fuzz targets' code it
 * gives back the very journal, and a recording that loads exactly like
 * the original (the same model, compared through ml_recording_write).
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
#include <zstd.h>

#include "../../client/src/internal.h"
#include "collector.h"
#include "fsutil.h"
#include "fuzz_common.h"
#include "journal.h"
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

/* ---- SEALED seeds ---- */

static int put_record(void *arg, uint8_t type, const uint8_t *p, size_t n, uint64_t off)
{
    (void)off;
    FILE *f = arg;
    fputc(type, f);
    fuzz_put_varint(f, n);
    fwrite(p, 1, n, f);
    return 0;
}

/* The journal at jpath as a SEALED fuzz_journal input, plus the same with
 * a torn tail (type 0, then the last bytes of the file). Checked: sealing
 * the records again writes the very same file. */
static void seal_journal(const char *out, const char *jpath)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fputc(FUZZ_SEALED, f);
    uint64_t off = 0;
    bool torn = true;
    int rv = ml_journal_read(jpath, &off, put_record, f, &torn);
    fclose(f);
    if (rv != 0 || torn)
        die("read journal", rv ? rv : EBADMSG);
    put(out, "journal", "sealed-closed", buf, len);

    char path[1024];
    snprintf(path, sizeof(path), "%s/check.mlj", fuzz_scratch_dir());
    size_t nrec, n1, n2;
    bool tail;
    if ((rv = fuzz_sealed_journal(path, (uint8_t *)buf + 1, len - 1, &nrec, &tail)) != 0)
        die("seal journal", rv);
    uint8_t *a = slurp(jpath, &n1), *b = slurp(path, &n2);
    if (n1 != n2 || memcmp(a, b, n1) != 0)
        die("sealed journal differs from the original", EBADMSG);

    size_t cut = n1 > 40 ? 40 : n1 / 2;
    uint8_t *t = malloc(len + 1 + cut);
    memcpy(t, buf, len);
    t[len] = 0;
    memcpy(t + len + 1, a + n1 - cut, cut);
    put(out, "journal", "sealed-torn", t, len + 1 + cut);
    free(t);
    free(a);
    free(b);
    free(buf);
}

static uint64_t le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_svarint(FILE *f, int64_t v)
{
    fuzz_put_varint(f, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

/* The recording's sections, decompressed, with their index entries: the
 * SEALED fuzz_recording input that seals into an equivalent file. The
 * file was just written by the product, so its sizes are trusted. */
static char *decompose_recording(const uint8_t *file, size_t n, size_t *len)
{
    if (n < 4 + 4 + 16)
        die("recording too short", EBADMSG);
    uint64_t ioff = le(file + n - 16, 8);
    uint32_t count = (uint32_t)le(file + ioff, 4);
    if (ioff + 4 + (uint64_t)count * 29 != n - 16)
        die("recording index", EBADMSG);
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    fputc(FUZZ_SEALED, f);
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = file + ioff + 4 + (size_t)i * 29;
        const uint8_t *h = file + le(e + 1, 8);
        size_t raw = le(h + 1, 4), zn = le(h + 5, 4);
        uint8_t *body = malloc(raw ? raw : 1);
        if (ZSTD_decompress(body, raw, h + 13, zn) != raw)
            die("recording section", EBADMSG);
        fputc(e[0], f);
        fuzz_put_varint(f, raw);
        fwrite(body, 1, raw, f);
        put_svarint(f, (int64_t)le(e + 9, 8));
        put_svarint(f, (int64_t)le(e + 17, 8));
        fuzz_put_varint(f, le(e + 25, 4));
        free(body);
    }
    fclose(f);
    return buf;
}
/* Loads path whole and for [t0, t1], and rewrites the whole model to
 * out (at one level, so two equal models give equal files). */
static void load_and_rewrite(const char *path, const char *out, int64_t t0, int64_t t1,
                             size_t *nrange)
{
    ml_model m, r;
    ml_model_init(&m);
    ml_model_init(&r);
    int rv = ml_recording_load(&m, path);
    if (rv == 0)
        rv = ml_recording_load_range(&r, path, t0, t1, NULL);
    if (rv == 0)
        rv = ml_recording_write(&m, out);
    if (rv != 0)
        die(path, rv);
    *nrange = r.nsamples;
    ml_model_dispose(&r);
    ml_model_dispose(&m);
}

/* Puts the SEALED form of the recording at rpath and checks that, sealed
 * by fuzz_recording's code, it loads exactly like the recording: the same
 * model (both rewritten byte for byte the same) and the same samples in a
 * time window. */
static void seal_recording(const char *out, const char *rpath)
{
    size_t n, len, nsec, na, nb, ra, rb;
    uint8_t *file = slurp(rpath, &n);
    char *buf = decompose_recording(file, n, &len);
    put(out, "recording", "sealed-run", buf, len);
    const char *dir = fuzz_scratch_dir();
    char sealed[1024], a[1024], b[1024];
    snprintf(sealed, sizeof(sealed), "%s/sealed.mlr", dir);
    snprintf(a, sizeof(a), "%s/a.mlr", dir);
    snprintf(b, sizeof(b), "%s/b.mlr", dir);
    int rv = fuzz_sealed_recording(sealed, (uint8_t *)buf + 1, len - 1, &nsec);
    if (rv != 0)
        die("seal recording", rv);
    load_and_rewrite(rpath, a, 100000, 200000, &ra);
    load_and_rewrite(sealed, b, 100000, 200000, &rb);
    uint8_t *pa = slurp(a, &na), *pb = slurp(b, &nb);
    if (na != nb || memcmp(pa, pb, na) != 0 || ra != rb)
        die("sealed recording loads unlike the original", EBADMSG);
    printf("ml_fuzz_seeds: sealed recording (%zu sections) loads like %s\n", nsec, rpath);
    free(pa);
    free(pb);
    free(buf);
    free(file);
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
    char path[1024];
    snprintf(path, sizeof(path), "%s/journal/closed.mlj", out);
    seal_journal(out, path);
    snprintf(path, sizeof(path), "%s/recording/run.mlr", out);
    seal_recording(out, path);
    for (size_t i = 0; i < nrecs; i++)
        free(recs[i].data);
    printf("ml_fuzz_seeds: %zu requests -> %s\n", nrecs, out);
    return 0;
}
