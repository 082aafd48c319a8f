#include "recording.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "fsutil.h"
#include "mem.h"

/* zstd level for compaction: runs are written once, read many times. */
#define ZLEVEL 19

enum section_type {
    SEC_META = 1,
    SEC_STRINGS = 2,
    SEC_FRAMES = 3,
    SEC_STACKS = 4,
    SEC_THREADS = 5,
    SEC_STATUS = 6,
    SEC_LOGS = 7,
    SEC_SAMPLES = 8,
};

#define SECTION_HEADER 13
#define INDEX_ENTRY 29
#define TRAILER 16

/* ---- growable byte buffer and varints ---- */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void buf_put(buf *b, const void *data, size_t n)
{
    ml_xgrow((void **)&b->p, &b->cap, b->n + n, 1);
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_varint(buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    buf_put(b, tmp, n);
}

static void put_svarint(buf *b, int64_t v)
{
    put_varint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static void put_le(buf *b, uint64_t v, int bytes)
{
    uint8_t tmp[8];
    for (int i = 0; i < bytes; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    buf_put(b, tmp, (size_t)bytes);
}

static void put_str(buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    put_varint(b, n);
    buf_put(b, s, n);
}

/* A reader over one decompressed section; ok turns false on any overrun
 * and stays false (every getter then returns 0). */
typedef struct rd {
    const uint8_t *p, *end;
    bool ok;
} rd;

static uint64_t get_varint(rd *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) {
            r->ok = false;
            return 0;
        }
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return v;
    }
    r->ok = false;
    return 0;
}

static int64_t get_svarint(rd *r)
{
    uint64_t u = get_varint(r);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* A malloc'd NUL-terminated copy of the next string, or NULL on overrun. */
static char *get_str(rd *r)
{
    uint64_t n = get_varint(r);
    if (!r->ok || n > (uint64_t)(r->end - r->p)) {
        r->ok = false;
        return NULL;
    }
    char *s = ml_xstrndup((const char *)r->p, (size_t)n);
    r->p += n;
    return s;
}

/* ---- writer ---- */

typedef struct index_entry {
    uint8_t type;
    uint64_t offset;
    int64_t t_first, t_last;
    uint32_t n;
} index_entry;

typedef struct writer {
    buf out;
    index_entry *idx;
    size_t nidx, capidx;
} writer;

static void add_section(writer *w, uint8_t type, const buf *body, int64_t t0, int64_t t1,
                        uint32_t n)
{
    size_t bound = ZSTD_compressBound(body->n);
    uint8_t *z = ml_xmalloc(bound ? bound : 1);
    size_t zn = ZSTD_compress(z, bound, body->p ? body->p : (const uint8_t *)"", body->n, ZLEVEL);
    if (ZSTD_isError(zn))
        ml_oom(0); /* only an allocation failure inside zstd can fail here */
    ml_xgrow((void **)&w->idx, &w->capidx, w->nidx + 1, sizeof(index_entry));
    w->idx[w->nidx++] = (index_entry){type, w->out.n, t0, t1, n};
    uint8_t h[SECTION_HEADER];
    h[0] = type;
    for (int i = 0; i < 4; i++) {
        h[1 + i] = (uint8_t)(body->n >> (8 * i));
        h[5 + i] = (uint8_t)(zn >> (8 * i));
        h[9 + i] = (uint8_t)(XXH32(z, zn, 0) >> (8 * i));
    }
    buf_put(&w->out, h, sizeof(h));
    buf_put(&w->out, z, zn);
    free(z);
}

static void write_meta(writer *w, const ml_model *m)
{
    buf b = {0};
    uint64_t period;
    memcpy(&period, &m->sample_period, sizeof(period));
    put_le(&b, period, 8);
    put_varint(&b, m->closed);
    put_svarint(&b, m->end_time);
    put_varint(&b, m->nsamples);
    put_varint(&b, m->nlogs);
    put_varint(&b, m->nstatus);
    add_section(w, SEC_META, &b, 0, 0, 0);
    free(b.p);
}

/* Columns: a section body is a count followed by columns, each
 * varint(len) | bytes, so like values sit together for zstd. */
static void put_col(buf *b, buf *col)
{
    put_varint(b, col->n);
    buf_put(b, col->p, col->n);
    free(col->p);
    *col = (buf){0};
}

/* Strings are front-coded against the previous one (file paths and
 * qualified names share long prefixes): prefix length, suffix length and
 * suffix bytes in three columns. */
static void write_strings(writer *w, const ml_model *m)
{
    buf b = {0}, pre = {0}, len = {0}, bytes = {0};
    const char *prev = "";
    for (size_t i = 0; i < m->nstrings; i++) {
        const char *s = m->strings[i] ? m->strings[i] : "";
        size_t k = 0;
        while (s[k] && s[k] == prev[k])
            k++;
        size_t n = strlen(s + k);
        put_varint(&pre, k);
        put_varint(&len, n);
        buf_put(&bytes, s + k, n);
        prev = s;
    }
    put_varint(&b, m->nstrings);
    put_col(&b, &pre);
    put_col(&b, &len);
    put_col(&b, &bytes);
    add_section(w, SEC_STRINGS, &b, 0, 0, (uint32_t)m->nstrings);
    free(b.p);
}

/* Frames (one per code object and line): name and file as deltas from the
 * previous frame (mostly 0: the same function at another line), line as a
 * delta, first_line as line - first_line. */
static void write_frames(writer *w, const ml_model *m)
{
    buf b = {0}, name = {0}, file = {0}, line = {0}, first = {0}, flags = {0};
    ml_frame prev = {0};
    for (size_t i = 0; i < m->nframes; i++) {
        const ml_frame *f = &m->frames[i];
        put_svarint(&name, (int64_t)f->name - prev.name);
        put_svarint(&file, (int64_t)f->file - prev.file);
        put_svarint(&line, (int64_t)f->line - prev.line);
        put_svarint(&first, (int64_t)f->line - f->first_line);
        put_varint(&flags, f->flags);
        prev = *f;
    }
    put_varint(&b, m->nframes);
    put_col(&b, &name);
    put_col(&b, &file);
    put_col(&b, &line);
    put_col(&b, &first);
    put_col(&b, &flags);
    add_section(w, SEC_FRAMES, &b, 0, 0, (uint32_t)m->nframes);
    free(b.p);
}

/* Stacks (interned in order of first sight, so neighbours share their
 * roots): the length of the prefix shared with the previous stack, then
 * only the new frames, delta-coded. */
static void write_stacks(writer *w, const ml_model *m)
{
    buf b = {0}, len = {0}, trunc = {0}, pre = {0}, frames = {0};
    const ml_stack none = {0};
    const ml_stack *prev = &none;
    for (size_t i = 0; i < m->nstacks; i++) {
        const ml_stack *s = &m->stacks[i];
        uint32_t k = 0;
        while (k < s->n && k < prev->n && s->frames[k] == prev->frames[k])
            k++;
        put_varint(&len, s->n);
        put_varint(&trunc, s->truncated);
        put_varint(&pre, k);
        int64_t last = k ? s->frames[k - 1] : 0;
        for (uint32_t j = k; j < s->n; j++) {
            put_svarint(&frames, (int64_t)s->frames[j] - last);
            last = s->frames[j];
        }
        prev = s;
    }
    put_varint(&b, m->nstacks);
    put_col(&b, &len);
    put_col(&b, &trunc);
    put_col(&b, &pre);
    put_col(&b, &frames);
    add_section(w, SEC_STACKS, &b, 0, 0, (uint32_t)m->nstacks);
    free(b.p);
}

static void write_threads(writer *w, const ml_model *m)
{
    buf b = {0};
    put_varint(&b, m->nthreads);
    for (size_t i = 0; i < m->nthreads; i++) {
        const ml_thread *t = &m->threads[i];
        put_varint(&b, t->defined);
        put_varint(&b, t->ident);
        put_varint(&b, t->native_id);
        put_str(&b, t->name);
        put_svarint(&b, t->started_us);
        put_svarint(&b, t->ended_us);
        put_varint(&b, t->samples);
    }
    add_section(w, SEC_THREADS, &b, 0, 0, (uint32_t)m->nthreads);
    free(b.p);
}

/* Status ticks: every field its own column, delta-coded (floats as their
 * raw bits, which repeat between ticks). */
static void write_status(writer *w, const ml_model *m)
{
    buf b = {0}, col[8] = {{0}};
    ml_status_tick prev = {0};
    for (size_t i = 0; i < m->nstatus; i++) {
        const ml_status_tick *s = &m->status[i];
        uint32_t cpu, sys;
        memcpy(&cpu, &s->cpu_percent, 4);
        memcpy(&sys, &s->system_cpu_percent, 4);
        put_svarint(&col[0], s->time - prev.time);
        put_le(&col[1], cpu, 4);
        put_le(&col[2], sys, 4);
        put_svarint(&col[3], (int64_t)(s->rss - prev.rss));
        put_svarint(&col[4], (int64_t)(s->memory_total - prev.memory_total));
        put_svarint(&col[5], (int64_t)(s->memory_free - prev.memory_free));
        put_svarint(&col[6], (int64_t)(s->objects - prev.objects));
        put_svarint(&col[7], (int64_t)s->modules - prev.modules);
        prev = *s;
    }
    put_varint(&b, m->nstatus);
    for (int c = 0; c < 8; c++)
        put_col(&b, &col[c]);
    add_section(w, SEC_STATUS, &b, 0, 0, (uint32_t)m->nstatus);
    free(b.p);
}

static void write_logs(writer *w, const ml_model *m)
{
    buf b = {0}, col[7] = {{0}};
    int64_t prev = 0;
    for (size_t i = 0; i < m->nlogs; i++) {
        const ml_log_event *e = &m->logs[i];
        put_svarint(&col[0], e->time - prev);
        prev = e->time;
        put_varint(&col[1], e->thread);
        put_varint(&col[2], e->kind);
        put_varint(&col[3], e->stack);
        put_svarint(&col[4], e->level);
        put_str(&col[5], e->message);
        put_str(&col[6], e->logger);
    }
    put_varint(&b, m->nlogs);
    for (int c = 0; c < 7; c++)
        put_col(&b, &col[c]);
    add_section(w, SEC_LOGS, &b, 0, 0, (uint32_t)m->nlogs);
    free(b.p);
}

/* ---- samples ---- */

/* Per-thread state while coding one block (reset at every block, so each
 * block decodes alone). A thread id is its own slot when it is below
 * nthreads, else slot 0: writer and reader derive the same slots. */
typedef struct thread_state {
    int64_t t, dt;  /* time of this thread's last sample and the gap before it */
    uint32_t stack; /* its last stack (0 before the first: a stack-0 sample repeats) */
    uint32_t cpu;   /* its last cpu_us */
    uint8_t seen;   /* 0, 1 (t known) or 2 (dt known) */
} thread_state;

/* Time modes: the gap to the thread's previous sample is coded against the
 * sampling period (TIME_PERIOD) or against the thread's previous gap
 * (TIME_GAP); the writer keeps whichever is shorter for the block. */
enum { TIME_PERIOD = 0, TIME_GAP = 1 };

static int64_t period_us(const ml_model *m)
{
    double p = m->sample_period * 1e6;
    return p >= 0 && p <= 1e9 ? (int64_t)(p + 0.5) : 0;
}

static size_t slot_of(uint32_t thread, size_t nslots)
{
    return thread < nslots ? thread : 0;
}

/* The expected gap before a sample of thread state ts. */
static int64_t expected_gap(const thread_state *ts, int mode, int64_t period)
{
    if (ts->seen == 0)
        return 0;
    return mode == TIME_GAP && ts->seen == 2 ? ts->dt : period;
}

/* cpu_us is predicted from the thread's last sample: a thread that was
 * busy (cpu >= half its gap) likely used the whole gap again, an idle one
 * nothing. The residual is small for both. */
static int64_t expected_cpu(const thread_state *ts, int64_t gap)
{
    if (ts->seen == 2 && (int64_t)ts->cpu * 2 >= ts->dt && gap > 0)
        return gap > UINT32_MAX ? UINT32_MAX : gap;
    return 0;
}

/* Updates ts with a sample at time t (base: the time its gap is from). */
static void advance(thread_state *ts, int64_t t, int64_t base, uint32_t stack, uint32_t cpu)
{
    if (ts->seen)
        ts->dt = t - base;
    ts->seen = ts->seen ? 2 : 1;
    ts->t = t;
    ts->stack = stack;
    ts->cpu = cpu;
}

/* Codes the samples [start, start + n) with time mode `mode` into b. */
static void code_block(buf *b, const ml_model *m, size_t start, size_t n, int mode,
                       thread_state *st, size_t nslots)
{
    buf thread = {0}, time = {0}, stack = {0}, cpu = {0};
    memset(st, 0, nslots * sizeof(*st));
    int64_t prev = 0, period = period_us(m);
    uint64_t run = 0;
    for (size_t i = start; i < start + n; i++) {
        thread_state *ts = &st[slot_of(m->sample_thread[i], nslots)];
        int64_t t = m->sample_time[i], base = ts->seen ? ts->t : prev;
        put_varint(&thread, m->sample_thread[i]);
        put_svarint(&time, t - base - expected_gap(ts, mode, period));
        /* Run-length: a sample with its thread's last stack costs nothing
         * but the run count; a long call is a handful of bytes. */
        if (m->sample_stack[i] == ts->stack) {
            run++;
        } else {
            put_varint(&stack, run);
            put_varint(&stack, m->sample_stack[i]);
            run = 0;
        }
        put_svarint(&cpu, (int64_t)m->sample_cpu[i] - expected_cpu(ts, t - base));
        advance(ts, t, base, m->sample_stack[i], m->sample_cpu[i]);
        prev = t;
    }
    put_varint(&stack, run);
    put_varint(b, n);
    put_varint(b, (uint64_t)mode);
    put_col(b, &thread);
    put_col(b, &time);
    put_col(b, &stack);
    put_col(b, &cpu);
}

/* Samples stay in journal order (the model's order); a block's time range
 * is its min and max so out-of-order threads are still found. */
static void write_samples(writer *w, const ml_model *m)
{
    buf b = {0}, alt = {0};
    size_t nslots = m->nthreads ? m->nthreads : 1;
    thread_state *st = ml_xcalloc(nslots, sizeof(*st));
    for (size_t start = 0; start < m->nsamples; start += ML_RECORDING_BLOCK) {
        size_t n = m->nsamples - start;
        if (n > ML_RECORDING_BLOCK)
            n = ML_RECORDING_BLOCK;
        int64_t lo = INT64_MAX, hi = INT64_MIN;
        for (size_t i = start; i < start + n; i++) {
            lo = m->sample_time[i] < lo ? m->sample_time[i] : lo;
            hi = m->sample_time[i] > hi ? m->sample_time[i] : hi;
        }
        b.n = alt.n = 0;
        code_block(&b, m, start, n, TIME_PERIOD, st, nslots);
        code_block(&alt, m, start, n, TIME_GAP, st, nslots);
        add_section(w, SEC_SAMPLES, alt.n < b.n ? &alt : &b, lo, hi, (uint32_t)n);
    }
    free(st);
    free(alt.p);
    free(b.p);
}

int ml_recording_write(const ml_model *m, const char *path)
{
    writer w = {0};
    buf_put(&w.out, ML_RECORDING_MAGIC, 4);
    write_meta(&w, m);
    write_strings(&w, m);
    write_frames(&w, m);
    write_stacks(&w, m);
    write_threads(&w, m);
    write_status(&w, m);
    write_logs(&w, m);
    write_samples(&w, m);
    uint64_t index_offset = w.out.n;
    buf idx = {0};
    put_le(&idx, w.nidx, 4);
    for (size_t i = 0; i < w.nidx; i++) {
        put_le(&idx, w.idx[i].type, 1);
        put_le(&idx, w.idx[i].offset, 8);
        put_le(&idx, (uint64_t)w.idx[i].t_first, 8);
        put_le(&idx, (uint64_t)w.idx[i].t_last, 8);
        put_le(&idx, w.idx[i].n, 4);
    }
    buf_put(&w.out, idx.p, idx.n);
    put_le(&w.out, index_offset, 8);
    put_le(&w.out, XXH32(idx.p, idx.n, 0), 4);
    buf_put(&w.out, ML_RECORDING_END, 4);
    int rv = ml_write_file_atomic(path, w.out.p, w.out.n);
    free(idx.p);
    free(w.idx);
    free(w.out.p);
    return rv;
}

/* ---- reader ---- */

/* The reader never holds the whole file: it preads the trailer, the index,
 * then one section at a time (compressed bytes into a buffer reused across
 * sections, then the decompressed body), so the memory needed to load a
 * recording is the model plus the largest section, not model + file. */
typedef struct src {
    int fd;
    uint64_t size;
    uint8_t *z; /* compressed bytes of the current section */
    size_t zcap;
} src;

/* Reads exactly n bytes at off. Returns 0, -EBADMSG when the file is
 * shorter (it changed or lies about its sizes), or -errno. */
static int pread_all(int fd, void *dst, size_t n, uint64_t off)
{
    uint8_t *p = dst;
    while (n > 0) {
        ssize_t got = pread(fd, p, n, (off_t)off);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (got == 0)
            return -EBADMSG;
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return 0;
}

/* Decompresses the section at off, which must end before limit (the index
 * offset); *body is malloc'd. */
static int read_section(src *s, uint64_t limit, uint64_t off, uint8_t want, uint8_t **body,
                        size_t *len)
{
    uint8_t h[SECTION_HEADER];
    if (off > limit || limit - off < SECTION_HEADER)
        return -EBADMSG;
    int rv = pread_all(s->fd, h, sizeof(h), off);
    if (rv != 0)
        return rv;
    size_t raw = get_le(h + 1, 4), zn = get_le(h + 5, 4);
    if (h[0] != want || raw > ML_RECORDING_SECTION_MAX || zn > ML_RECORDING_SECTION_MAX ||
        zn > limit - off - SECTION_HEADER)
        return -EBADMSG;
    ml_xgrow((void **)&s->z, &s->zcap, zn ? zn : 1, 1);
    if ((rv = pread_all(s->fd, s->z, zn, off + SECTION_HEADER)) != 0)
        return rv;
    if (XXH32(s->z, zn, 0) != (uint32_t)get_le(h + 9, 4))
        return -EBADMSG;
    uint8_t *out = ml_xmalloc(raw ? raw : 1);
    size_t got = ZSTD_decompress(out, raw, s->z, zn);
    if (ZSTD_isError(got) || got != raw) {
        free(out);
        return -EBADMSG;
    }
    *body = out;
    *len = raw;
    return 0;
}

static void load_meta(ml_model *m, rd *r)
{
    if (r->end - r->p < 8) {
        r->ok = false;
        return;
    }
    uint64_t period = get_le(r->p, 8);
    r->p += 8;
    memcpy(&m->sample_period, &period, sizeof(period));
    m->closed = get_varint(r) != 0;
    m->end_time = get_svarint(r);
}

/* Sizes come from the file: check them against the bytes left (every
 * entry takes at least one byte) before allocating. */
static bool count_ok(rd *r, uint64_t n)
{
    if (!r->ok || n > (uint64_t)(r->end - r->p)) {
        r->ok = false;
        return false;
    }
    return true;
}

/* The next column of r as a reader of its own (ok false on overrun). */
static rd get_col(rd *r)
{
    uint64_t n = get_varint(r);
    rd c = {r->p, r->p, false};
    if (!r->ok || n > (uint64_t)(r->end - r->p)) {
        r->ok = false;
        return c;
    }
    c.end = r->p + n;
    c.ok = true;
    r->p += n;
    return c;
}

/* Folds the columns' state into r: the section is good only when every
 * column decoded within its bounds. */
static void cols_done(rd *r, const rd *cols, int ncols)
{
    for (int i = 0; i < ncols; i++)
        r->ok = r->ok && cols[i].ok;
}

static void load_strings(ml_model *m, rd *r)
{
    uint64_t n = get_varint(r);
    rd c[3] = {get_col(r), get_col(r), get_col(r)};
    if (!count_ok(&c[0], n)) {
        r->ok = false;
        return;
    }
    m->strings = ml_xcalloc(n + 1, sizeof(char *));
    m->capstrings = n + 1;
    const char *prev = "";
    size_t prevlen = 0;
    for (uint64_t i = 0; i < n && c[0].ok && c[1].ok; i++) {
        uint64_t k = get_varint(&c[0]), len = get_varint(&c[1]);
        if (k > prevlen || len > (uint64_t)(c[2].end - c[2].p)) {
            c[2].ok = false;
            break;
        }
        char *s = ml_xmalloc((size_t)(k + len + 1));
        memcpy(s, prev, (size_t)k);
        memcpy(s + k, c[2].p, (size_t)len);
        s[k + len] = '\0';
        c[2].p += len;
        m->strings[i] = s;
        m->nstrings = i + 1;
        prev = s;
        prevlen = (size_t)(k + len);
    }
    cols_done(r, c, 3);
}

static void load_frames(ml_model *m, rd *r)
{
    uint64_t n = get_varint(r);
    rd c[5] = {get_col(r), get_col(r), get_col(r), get_col(r), get_col(r)};
    if (!count_ok(&c[0], n)) {
        r->ok = false;
        return;
    }
    m->frames = ml_xcalloc(n + 1, sizeof(ml_frame));
    m->capframes = n + 1;
    ml_frame prev = {0};
    for (uint64_t i = 0; i < n; i++) {
        ml_frame *f = &m->frames[i];
        f->name = (uint32_t)(prev.name + get_svarint(&c[0]));
        f->file = (uint32_t)(prev.file + get_svarint(&c[1]));
        f->line = (uint32_t)(prev.line + get_svarint(&c[2]));
        f->first_line = (uint32_t)(f->line - get_svarint(&c[3]));
        f->flags = (uint32_t)get_varint(&c[4]);
        prev = *f;
    }
    cols_done(r, c, 5);
    m->nframes = r->ok ? n : 0;
}

static void load_stacks(ml_model *m, rd *r)
{
    uint64_t n = get_varint(r);
    rd c[4] = {get_col(r), get_col(r), get_col(r), get_col(r)};
    if (!count_ok(&c[0], n)) {
        r->ok = false;
        return;
    }
    m->stacks = ml_xcalloc(n + 1, sizeof(ml_stack));
    m->capstacks = n + 1;
    const ml_stack none = {0};
    const ml_stack *prev = &none;
    for (uint64_t i = 0; i < n && c[0].ok; i++) {
        ml_stack *s = &m->stacks[i];
        uint64_t len = get_varint(&c[0]), k = get_varint(&c[2]);
        s->truncated = (uint32_t)get_varint(&c[1]);
        /* Shared frames come from the previous stack; every new frame
         * takes at least a byte of the frames column. */
        if (!c[2].ok || k > prev->n || k > len || len > UINT32_MAX || !count_ok(&c[3], len - k)) {
            c[3].ok = false;
            break;
        }
        s->n = (uint32_t)len;
        s->frames = ml_xmalloc((len ? len : 1) * sizeof(uint32_t));
        if (k)
            memcpy(s->frames, prev->frames, (size_t)k * sizeof(uint32_t));
        int64_t last = k ? s->frames[k - 1] : 0;
        for (uint64_t j = k; j < len; j++) {
            last = (uint32_t)(last + get_svarint(&c[3]));
            s->frames[j] = (uint32_t)last;
        }
        m->nstacks = i + 1;
        prev = s;
    }
    cols_done(r, c, 4);
}

static void load_threads(ml_model *m, rd *r)
{
    uint64_t n = get_varint(r);
    if (!count_ok(r, n))
        return;
    m->threads = ml_xcalloc(n + 1, sizeof(ml_thread));
    m->capthreads = n + 1;
    for (uint64_t i = 0; i < n && r->ok; i++) {
        ml_thread *t = &m->threads[i];
        t->defined = get_varint(r) != 0;
        t->ident = get_varint(r);
        t->native_id = get_varint(r);
        t->name = get_str(r);
        t->started_us = get_svarint(r);
        t->ended_us = get_svarint(r);
        t->samples = get_varint(r);
        m->nthreads = i + 1;
    }
}

/* Four bytes little-endian from column c (0 and ok false on overrun). */
static uint32_t get_u32(rd *c)
{
    if (c->end - c->p < 4) {
        c->ok = false;
        return 0;
    }
    uint32_t v = (uint32_t)get_le(c->p, 4);
    c->p += 4;
    return v;
}

static void load_status(ml_model *m, rd *r)
{
    uint64_t n = get_varint(r);
    rd c[8];
    for (int i = 0; i < 8; i++)
        c[i] = get_col(r);
    if (!count_ok(&c[0], n)) {
        r->ok = false;
        return;
    }
    m->status = ml_xcalloc(n + 1, sizeof(ml_status_tick));
    m->capstatus = n + 1;
    ml_status_tick prev = {0};
    for (uint64_t i = 0; i < n; i++) {
        ml_status_tick *s = &m->status[i];
        s->time = prev.time + get_svarint(&c[0]);
        uint32_t cpu = get_u32(&c[1]), sys = get_u32(&c[2]);
        memcpy(&s->cpu_percent, &cpu, 4);
        memcpy(&s->system_cpu_percent, &sys, 4);
        s->rss = prev.rss + (uint64_t)get_svarint(&c[3]);
        s->memory_total = prev.memory_total + (uint64_t)get_svarint(&c[4]);
        s->memory_free = prev.memory_free + (uint64_t)get_svarint(&c[5]);
        s->objects = prev.objects + (uint64_t)get_svarint(&c[6]);
        s->modules = (uint32_t)(prev.modules + get_svarint(&c[7]));
        prev = *s;
    }
    cols_done(r, c, 8);
    m->nstatus = r->ok ? n : 0;
}

static void load_logs(ml_model *m, rd *r)
{
    uint64_t n = get_varint(r);
    rd c[7];
    for (int i = 0; i < 7; i++)
        c[i] = get_col(r);
    if (!count_ok(&c[0], n)) {
        r->ok = false;
        return;
    }
    m->logs = ml_xcalloc(n + 1, sizeof(ml_log_event));
    m->caplogs = n + 1;
    int64_t t = 0;
    for (uint64_t i = 0; i < n && c[0].ok; i++) {
        ml_log_event *e = &m->logs[i];
        t += get_svarint(&c[0]);
        e->time = t;
        e->thread = (uint32_t)get_varint(&c[1]);
        e->kind = (uint32_t)get_varint(&c[2]);
        e->stack = (uint32_t)get_varint(&c[3]);
        e->level = (int32_t)get_svarint(&c[4]);
        e->message = get_str(&c[5]);
        e->logger = get_str(&c[6]);
        if (e->message == NULL)
            e->message = ml_xstrdup("");
        if (e->logger == NULL)
            e->logger = ml_xstrdup("");
        m->nlogs = i + 1;
    }
    cols_done(r, c, 7);
}

/* Decodes one block (see code_block) into the sample columns. */
static void load_samples(ml_model *m, rd *r)
{
    uint64_t n = get_varint(r);
    uint64_t mode = get_varint(r);
    rd c[4] = {get_col(r), get_col(r), get_col(r), get_col(r)};
    rd *thread = &c[0], *time = &c[1], *stack = &c[2], *cpu = &c[3];
    if (mode > TIME_GAP || !count_ok(thread, n)) {
        r->ok = false;
        return;
    }
    size_t need = m->nsamples + n, cap;
    cap = m->capsamples;
    ml_xgrow((void **)&m->sample_thread, &cap, need, sizeof(uint32_t));
    cap = m->capsamples;
    ml_xgrow((void **)&m->sample_stack, &cap, need, sizeof(uint32_t));
    cap = m->capsamples;
    ml_xgrow((void **)&m->sample_cpu, &cap, need, sizeof(uint32_t));
    cap = m->capsamples;
    ml_xgrow((void **)&m->sample_time, &cap, need, sizeof(int64_t));
    m->capsamples = cap;
    size_t nslots = m->nthreads ? m->nthreads : 1, base_i = m->nsamples;
    thread_state *st = ml_xcalloc(nslots, sizeof(*st));
    int64_t prev = 0, period = period_us(m);
    uint64_t run = get_varint(stack);
    for (uint64_t i = 0; i < n && r->ok; i++) {
        uint32_t th = (uint32_t)get_varint(thread);
        thread_state *ts = &st[slot_of(th, nslots)];
        int64_t base = ts->seen ? ts->t : prev;
        int64_t t = base + expected_gap(ts, (int)mode, period) + get_svarint(time);
        uint32_t sk;
        if (run > 0) {
            sk = ts->stack;
            run--;
        } else {
            sk = (uint32_t)get_varint(stack);
            run = get_varint(stack);
        }
        uint32_t cu = (uint32_t)(expected_cpu(ts, t - base) + get_svarint(cpu));
        advance(ts, t, base, sk, cu);
        prev = t;
        m->sample_thread[base_i + i] = th;
        m->sample_time[base_i + i] = t;
        m->sample_stack[base_i + i] = sk;
        m->sample_cpu[base_i + i] = cu;
        /* A run longer than the block is a damaged file. */
        r->ok = thread->ok && time->ok && stack->ok && cpu->ok && run < n - i;
    }
    free(st);
    cols_done(r, c, 4);
    if (r->ok && run != 0)
        r->ok = false;
    if (r->ok) {
        m->nsamples = need;
        /* Streaming load: a consumer can take each block as it comes, so
         * a long recording never sits in the sample columns whole. */
        if (m->on_batch)
            m->on_batch(m, m->on_batch_arg);
    }
}

typedef void (*section_loader)(ml_model *m, rd *r);

static section_loader loader_for(uint8_t type)
{
    switch (type) {
    case SEC_META:
        return load_meta;
    case SEC_STRINGS:
        return load_strings;
    case SEC_FRAMES:
        return load_frames;
    case SEC_STACKS:
        return load_stacks;
    case SEC_THREADS:
        return load_threads;
    case SEC_STATUS:
        return load_status;
    case SEC_LOGS:
        return load_logs;
    case SEC_SAMPLES:
        return load_samples;
    default:
        return NULL;
    }
}

/* Reads and checks the trailer and the index; *idx (malloc'd) holds count
 * entries of INDEX_ENTRY bytes and *ioff is where the sections end. */
static int read_index(src *s, uint8_t **idx, uint32_t *count, uint64_t *ioff)
{
    uint8_t head[4], tail[TRAILER], cnt[4];
    int rv;
    if (s->size < 4 + 4 + TRAILER)
        return -EBADMSG;
    if ((rv = pread_all(s->fd, head, 4, 0)) != 0 ||
        (rv = pread_all(s->fd, tail, TRAILER, s->size - TRAILER)) != 0)
        return rv;
    /* A recording of an earlier format version: refused, not misread. */
    if (memcmp(head, ML_RECORDING_MAGIC_V1, 4) == 0 && memcmp(tail + 12, ML_RECORDING_END, 4) == 0)
        return -EPROTO;
    if (memcmp(head, ML_RECORDING_MAGIC, 4) != 0 || memcmp(tail + 12, ML_RECORDING_END, 4) != 0)
        return -EBADMSG;
    uint64_t off = get_le(tail, 8);
    if (off < 4 || off > s->size - TRAILER - 4)
        return -EBADMSG;
    uint64_t ilen = s->size - TRAILER - off;
    if ((rv = pread_all(s->fd, cnt, 4, off)) != 0)
        return rv;
    uint32_t n = (uint32_t)get_le(cnt, 4);
    /* The count is checked against the index length before anything of
     * that size is allocated. */
    if (ilen != 4 + (uint64_t)n * INDEX_ENTRY)
        return -EBADMSG;
    uint8_t *p = ml_xmalloc((size_t)ilen);
    if ((rv = pread_all(s->fd, p, (size_t)ilen, off)) != 0 ||
        XXH32(p, (size_t)ilen, 0) != (uint32_t)get_le(tail + 8, 4)) {
        free(p);
        return rv ? rv : -EBADMSG;
    }
    *idx = p;
    *count = n;
    *ioff = off;
    return 0;
}

static int load_file(ml_model *m, src *s, int64_t t0, int64_t t1, uint32_t *blocks_read)
{
    uint8_t *idx = NULL;
    uint32_t count = 0, blocks = 0;
    uint64_t ioff;
    int rv = read_index(s, &idx, &count, &ioff);
    for (uint32_t i = 0; rv == 0 && i < count; i++) {
        const uint8_t *e = idx + 4 + (size_t)i * INDEX_ENTRY;
        uint8_t type = e[0];
        uint64_t off = get_le(e + 1, 8);
        int64_t first = (int64_t)get_le(e + 9, 8), last = (int64_t)get_le(e + 17, 8);
        section_loader load = loader_for(type);
        if (load == NULL)
            continue; /* a section of a later version: skipped */
        if (type == SEC_SAMPLES && (last < t0 || first > t1))
            continue; /* the time index: this block is outside the window */
        uint8_t *body;
        size_t len;
        if ((rv = read_section(s, ioff, off, type, &body, &len)) != 0)
            break;
        rd r = {body, body + len, true};
        load(m, &r);
        free(body);
        if (!r.ok)
            rv = -EBADMSG;
        blocks += type == SEC_SAMPLES;
    }
    free(idx);
    if (blocks_read)
        *blocks_read = blocks;
    return rv;
}

int ml_recording_load_range(ml_model *m, const char *path, int64_t t0, int64_t t1,
                            uint32_t *blocks_read)
{
    src s = {.fd = open(path, O_RDONLY | O_CLOEXEC)};
    if (s.fd < 0)
        return -errno;
    struct stat st;
    int rv = fstat(s.fd, &st) != 0 ? -errno : 0;
    if (rv == 0 && !S_ISREG(st.st_mode))
        rv = -EBADMSG;
    if (rv == 0) {
        s.size = (uint64_t)st.st_size;
        /* Sections are read once, front to back. */
        (void)posix_fadvise(s.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        rv = load_file(m, &s, t0, t1, blocks_read);
    } else if (blocks_read) {
        *blocks_read = 0;
    }
    free(s.z);
    close(s.fd);
    return rv;
}

int ml_recording_load(ml_model *m, const char *path)
{
    return ml_recording_load_range(m, path, INT64_MIN, INT64_MAX, NULL);
}

int ml_recording_compact(const char *journal_path, const char *rec_path)
{
    ml_model m;
    ml_model_init(&m);
    int rv = ml_model_load(&m, journal_path);
    if (rv == 0)
        rv = ml_recording_write(&m, rec_path);
    ml_model_dispose(&m);
    return rv;
}
