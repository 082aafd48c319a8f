/*
 * The tables of a recording (format 3): meta, threads, frames, strings,
 * stacks, status ticks and log events in one body, so they share one zstd
 * frame and one context (paths in the log text match the file strings).
 * Ids are kept exactly: every table is stored in id order and only the
 * coding of each row changes. See recording.h for the layout.
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "recording_codec.h"

/* ---- an open-addressing set of row indexes (keys live in the rows) ---- */

typedef struct idtab {
    uint32_t *slot; /* row index + 1, 0 empty */
    size_t cap;     /* a power of two */
} idtab;

static void idtab_init(idtab *t, size_t rows)
{
    t->cap = 16;
    while (t->cap < rows * 2)
        t->cap <<= 1;
    t->slot = ml_xcalloc(t->cap, sizeof(uint32_t));
}

/* ---- frames: functions (name, file, first line, flags) and lines ---- */

typedef struct func {
    uint32_t name, file, first_line, flags;
} func;

static uint64_t func_hash(const func *f)
{
    return XXH64(f, sizeof(*f), 0);
}

/* The id (1-based) of f in fns, adding it as the next one if new. */
static uint32_t func_intern(idtab *t, func **fns, size_t *n, size_t *cap, const func *f)
{
    size_t i = (size_t)func_hash(f) & (t->cap - 1);
    for (; t->slot[i]; i = (i + 1) & (t->cap - 1))
        if (memcmp(&(*fns)[t->slot[i] - 1], f, sizeof(*f)) == 0)
            return t->slot[i];
    ml_xgrow((void **)fns, cap, *n + 1, sizeof(func));
    (*fns)[(*n)++] = *f;
    t->slot[i] = (uint32_t)*n;
    return (uint32_t)*n;
}

/* A frame is one (code object, line): its function columns are stored once
 * per function, in order of first use, and each frame is the function
 * (coded as the distance below the next new one: 0 = a new function) and
 * its line as a delta from the previous line seen in that function. */
static void write_frames(ml__buf *b, const ml_model *m)
{
    ml__buf fcol = {0}, lcol = {0}, cols[4] = {{0}};
    size_t nf = m->nframes > 1 ? m->nframes - 1 : 0, n = 0, cap = 0;
    func *fns = NULL;
    uint32_t *last_line = ml_xcalloc(nf + 1, sizeof(uint32_t));
    idtab t;
    idtab_init(&t, nf);
    for (size_t i = 1; i < m->nframes; i++) {
        const ml_frame *f = &m->frames[i];
        func key = {f->name, f->file, f->first_line, f->flags};
        size_t before = n;
        uint32_t id = func_intern(&t, &fns, &n, &cap, &key);
        ml__put_varint(&fcol, before + 1 - id);
        uint32_t base = n > before ? f->first_line : last_line[id];
        ml__put_svarint(&lcol, (int64_t)f->line - base);
        last_line[id] = f->line;
    }
    func prev = {0};
    for (size_t i = 0; i < n; i++) {
        ml__put_svarint(&cols[0], (int64_t)fns[i].name - prev.name);
        ml__put_svarint(&cols[1], (int64_t)fns[i].file - prev.file);
        ml__put_varint(&cols[2], fns[i].first_line);
        ml__put_varint(&cols[3], fns[i].flags);
        prev = fns[i];
    }
    ml__put_varint(b, m->nframes);
    ml__put_varint(b, n);
    for (int c = 0; c < 4; c++)
        ml__put_col(b, &cols[c]);
    ml__put_col(b, &fcol);
    ml__put_col(b, &lcol);
    free(t.slot);
    free(fns);
    free(last_line);
}

static void load_frames(ml_model *m, ml__rd *r)
{
    uint64_t n = ml__get_varint(r), nfn = ml__get_varint(r);
    ml__rd c[6];
    for (int i = 0; i < 6; i++)
        c[i] = ml__get_col(r);
    /* Row 0 is "none" and not stored; every other frame and function
     * takes at least a byte of its first column. */
    if (!ml__count_ok(&c[4], n ? n - 1 : 0) || !ml__count_ok(&c[0], nfn)) {
        r->ok = false;
        return;
    }
    func *fns = ml_xcalloc(nfn + 1, sizeof(func));
    uint32_t *last_line = ml_xcalloc(nfn + 1, sizeof(uint32_t));
    func prev = {0};
    for (uint64_t i = 1; i <= nfn; i++) {
        func *f = &fns[i];
        /* Unsigned sums: a damaged delta wraps (to an id the users of
         * the model check) instead of overflowing. */
        f->name = (uint32_t)(prev.name + (uint64_t)ml__get_svarint(&c[0]));
        f->file = (uint32_t)(prev.file + (uint64_t)ml__get_svarint(&c[1]));
        f->first_line = (uint32_t)ml__get_varint(&c[2]);
        f->flags = (uint32_t)ml__get_varint(&c[3]);
        prev = *f;
    }
    m->frames = ml_xcalloc(n + 1, sizeof(ml_frame));
    m->capframes = n + 1;
    uint64_t seen = 0; /* functions used so far: the next new one is seen + 1 */
    for (uint64_t i = 1; i < n && c[4].ok; i++) {
        uint64_t back = ml__get_varint(&c[4]);
        if (back > seen || (back == 0 && seen == nfn)) {
            c[4].ok = false;
            break;
        }
        uint64_t id = seen + 1 - back;
        const func *f = &fns[id];
        uint32_t base = back == 0 ? f->first_line : last_line[id];
        seen += back == 0;
        ml_frame *fr = &m->frames[i];
        *fr = (ml_frame){f->name, f->file, (uint32_t)(base + (uint64_t)ml__get_svarint(&c[5])),
                         f->first_line, f->flags};
        last_line[id] = fr->line;
    }
    ml__cols_done(r, c, 6);
    m->nframes = r->ok ? n : 0;
    free(fns);
    free(last_line);
}

/* ---- strings ---- */

/* File paths are stored with '/' and '.' swapped ("a/b/c.py" ->
 * "a.b.c/py"), so a path shares its bytes with the dotted names of the
 * functions in it ("a.b.c.f") and zstd matches them. The swap is its own
 * inverse; a string is a file when a frame names it so, which the reader
 * knows before it reads the strings. */
static void swap_path(char *s)
{
    for (; *s; s++)
        *s = *s == '/' ? '.' : *s == '.' ? '/' : *s;
}

/* A flag per string id: is it some frame's file? */
static uint8_t *file_flags(const ml_model *m, size_t nstrings)
{
    uint8_t *is_file = ml_xcalloc(nstrings + 1, 1);
    for (size_t i = 1; i < m->nframes; i++)
        if (m->frames[i].file < nstrings)
            is_file[m->frames[i].file] = 1;
    return is_file;
}

/* Strings NUL-terminated in id order (zstd finds the shared prefixes
 * better than front coding does). */
static void write_strings(ml__buf *b, const ml_model *m)
{
    uint8_t *is_file = file_flags(m, m->nstrings);
    ml__put_varint(b, m->nstrings);
    for (size_t i = 0; i < m->nstrings; i++) {
        const char *s = m->strings[i] ? m->strings[i] : "";
        size_t at = b->n;
        ml__buf_put(b, s, strlen(s) + 1);
        if (is_file[i])
            swap_path((char *)b->p + at);
    }
    free(is_file);
}

static void load_strings(ml_model *m, ml__rd *r)
{
    uint64_t n = ml__get_varint(r);
    if (!ml__count_ok(r, n))
        return;
    uint8_t *is_file = file_flags(m, (size_t)n);
    m->strings = ml_xcalloc(n + 1, sizeof(char *));
    m->capstrings = n + 1;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *z = memchr(r->p, 0, (size_t)(r->end - r->p));
        if (z == NULL) {
            r->ok = false;
            break;
        }
        m->strings[i] = ml_xstrndup((const char *)r->p, (size_t)(z - r->p));
        if (is_file[i])
            swap_path(m->strings[i]);
        r->p = z + 1;
        m->nstrings = i + 1;
    }
    free(is_file);
}

/* ---- threads, status, logs ---- */

static void write_threads(ml__buf *b, const ml_model *m)
{
    ml__put_varint(b, m->nthreads);
    for (size_t i = 0; i < m->nthreads; i++) {
        const ml_thread *t = &m->threads[i];
        ml__put_varint(b, t->defined);
        ml__put_varint(b, t->ident);
        ml__put_varint(b, t->native_id);
        ml__put_str(b, t->name);
        ml__put_svarint(b, t->started_us);
        ml__put_svarint(b, t->ended_us);
        ml__put_varint(b, t->samples);
    }
}

static void load_threads(ml_model *m, ml__rd *r)
{
    uint64_t n = ml__get_varint(r);
    if (!ml__count_ok(r, n))
        return;
    m->threads = ml_xcalloc(n + 1, sizeof(ml_thread));
    m->capthreads = n + 1;
    for (uint64_t i = 0; i < n && r->ok; i++) {
        ml_thread *t = &m->threads[i];
        t->defined = ml__get_varint(r) != 0;
        t->ident = ml__get_varint(r);
        t->native_id = ml__get_varint(r);
        t->name = ml__get_str(r);
        t->started_us = ml__get_svarint(r);
        t->ended_us = ml__get_svarint(r);
        t->samples = ml__get_varint(r);
        m->nthreads = i + 1;
    }
}

/* Status ticks: every field its own column, delta-coded. CPU percentages
 * are kept to 0.1 % (the UI shows whole percents; the sampler's own
 * reading is noisier than that). Memory sizes are exact: their page
 * number (size / 4 KiB) is delta-coded and the remainder, 0 for the
 * page-granular sizes the client reads, has a column of its own. */
#define PAGE_SHIFT 12
#define STATUS_COLS 11

static int64_t per_mille(float percent)
{
    double v = (double)percent * 10.0;
    /* NaN and absurd readings are clamped: the column stays a varint. */
    if (!(v > -1e12))
        return v != v ? 0 : (int64_t)-1e12;
    return v < 1e12 ? (int64_t)(v < 0 ? v - 0.5 : v + 0.5) : (int64_t)1e12;
}

static void put_bytes_col(ml__buf *pages, ml__buf *rest, uint64_t v, uint64_t prev)
{
    ml__put_svarint(pages, (int64_t)((v >> PAGE_SHIFT) - (prev >> PAGE_SHIFT)));
    ml__put_varint(rest, v & ((1u << PAGE_SHIFT) - 1));
}

static uint64_t get_bytes_col(ml__rd *pages, ml__rd *rest, uint64_t prev)
{
    uint64_t page = (prev >> PAGE_SHIFT) + (uint64_t)ml__get_svarint(pages);
    return page << PAGE_SHIFT | (ml__get_varint(rest) & ((1u << PAGE_SHIFT) - 1));
}

static void write_status(ml__buf *b, const ml_model *m)
{
    ml__buf col[STATUS_COLS] = {{0}};
    ml_status_tick prev = {0};
    int64_t pcpu = 0, psys = 0;
    for (size_t i = 0; i < m->nstatus; i++) {
        const ml_status_tick *s = &m->status[i];
        int64_t cpu = per_mille(s->cpu_percent), sys = per_mille(s->system_cpu_percent);
        ml__put_svarint(&col[0], (int64_t)((uint64_t)s->time - (uint64_t)prev.time));
        ml__put_svarint(&col[1], cpu - pcpu);
        ml__put_svarint(&col[2], sys - psys);
        put_bytes_col(&col[3], &col[4], s->rss, prev.rss);
        put_bytes_col(&col[5], &col[6], s->memory_total, prev.memory_total);
        put_bytes_col(&col[7], &col[8], s->memory_free, prev.memory_free);
        ml__put_svarint(&col[9], (int64_t)(s->objects - prev.objects));
        ml__put_svarint(&col[10], (int64_t)s->modules - prev.modules);
        prev = *s;
        pcpu = cpu;
        psys = sys;
    }
    ml__put_varint(b, m->nstatus);
    for (int c = 0; c < STATUS_COLS; c++)
        ml__put_col(b, &col[c]);
}

static void load_status(ml_model *m, ml__rd *r)
{
    uint64_t n = ml__get_varint(r);
    ml__rd c[STATUS_COLS];
    for (int i = 0; i < STATUS_COLS; i++)
        c[i] = ml__get_col(r);
    if (!ml__count_ok(&c[0], n)) {
        r->ok = false;
        return;
    }
    m->status = ml_xcalloc(n + 1, sizeof(ml_status_tick));
    m->capstatus = n + 1;
    ml_status_tick prev = {0};
    uint64_t cpu = 0, sys = 0; /* unsigned: a damaged file wraps, no overflow */
    for (uint64_t i = 0; i < n; i++) {
        ml_status_tick *s = &m->status[i];
        s->time = (int64_t)((uint64_t)prev.time + (uint64_t)ml__get_svarint(&c[0]));
        cpu += (uint64_t)ml__get_svarint(&c[1]);
        sys += (uint64_t)ml__get_svarint(&c[2]);
        s->cpu_percent = (float)((double)(int64_t)cpu / 10.0);
        s->system_cpu_percent = (float)((double)(int64_t)sys / 10.0);
        s->rss = get_bytes_col(&c[3], &c[4], prev.rss);
        s->memory_total = get_bytes_col(&c[5], &c[6], prev.memory_total);
        s->memory_free = get_bytes_col(&c[7], &c[8], prev.memory_free);
        s->objects = prev.objects + (uint64_t)ml__get_svarint(&c[9]);
        s->modules = (uint32_t)(prev.modules + (uint64_t)ml__get_svarint(&c[10]));
        prev = *s;
    }
    ml__cols_done(r, c, STATUS_COLS);
    m->nstatus = r->ok ? n : 0;
}

static void write_logs(ml__buf *b, const ml_model *m)
{
    ml__buf col[7] = {{0}};
    int64_t prev = 0;
    for (size_t i = 0; i < m->nlogs; i++) {
        const ml_log_event *e = &m->logs[i];
        ml__put_svarint(&col[0], (int64_t)((uint64_t)e->time - (uint64_t)prev));
        prev = e->time;
        ml__put_varint(&col[1], e->thread);
        ml__put_varint(&col[2], e->kind);
        ml__put_varint(&col[3], e->stack);
        ml__put_svarint(&col[4], e->level);
        ml__put_str(&col[5], e->message);
        ml__put_str(&col[6], e->logger);
    }
    ml__put_varint(b, m->nlogs);
    for (int c = 0; c < 7; c++)
        ml__put_col(b, &col[c]);
}

static void load_logs(ml_model *m, ml__rd *r)
{
    uint64_t n = ml__get_varint(r);
    ml__rd c[7];
    for (int i = 0; i < 7; i++)
        c[i] = ml__get_col(r);
    if (!ml__count_ok(&c[0], n)) {
        r->ok = false;
        return;
    }
    m->logs = ml_xcalloc(n + 1, sizeof(ml_log_event));
    m->caplogs = n + 1;
    int64_t t = 0;
    for (uint64_t i = 0; i < n && c[0].ok; i++) {
        ml_log_event *e = &m->logs[i];
        /* Unsigned, as the writer's difference: any times round-trip and
         * a damaged file wraps instead of overflowing. */
        t = (int64_t)((uint64_t)t + (uint64_t)ml__get_svarint(&c[0]));
        e->time = t;
        e->thread = (uint32_t)ml__get_varint(&c[1]);
        e->kind = (uint32_t)ml__get_varint(&c[2]);
        e->stack = (uint32_t)ml__get_varint(&c[3]);
        e->level = (int32_t)ml__get_svarint(&c[4]);
        e->message = ml__get_str(&c[5]);
        e->logger = ml__get_str(&c[6]);
        if (e->message == NULL)
            e->message = ml_xstrdup("");
        if (e->logger == NULL)
            e->logger = ml_xstrdup("");
        m->nlogs = i + 1;
    }
    ml__cols_done(r, c, 7);
}

/* ---- meta and the whole body ---- */

static void write_meta(ml__buf *b, const ml_model *m)
{
    uint64_t period;
    memcpy(&period, &m->sample_period, sizeof(period));
    ml__put_le(b, period, 8);
    ml__put_varint(b, m->closed);
    ml__put_svarint(b, m->end_time);
}

static void load_meta(ml_model *m, ml__rd *r)
{
    if (r->end - r->p < 8) {
        r->ok = false;
        return;
    }
    uint64_t period = ml__get_le(r->p, 8);
    r->p += 8;
    memcpy(&m->sample_period, &period, sizeof(period));
    m->closed = ml__get_varint(r) != 0;
    m->end_time = ml__get_svarint(r);
}

/* Three groups, each its own zstd frame (recording.c): numbers (meta,
 * threads, frames, stacks), text (strings, then the log events, whose
 * paths match the file strings) and status ticks. Mixed in one frame the
 * groups share one set of entropy tables and code worse. */
void ml__recording_tables_write(ml__buf *b, const ml_model *m, size_t cuts[2])
{
    write_meta(b, m);
    write_threads(b, m);
    write_frames(b, m);
    ml__recording_stacks_write(b, m);
    cuts[0] = b->n;
    write_strings(b, m);
    write_logs(b, m);
    cuts[1] = b->n;
    write_status(b, m);
}

/* Frames come before strings: the reader must know which strings are
 * file paths (swap_path) when it reads them. */
void ml__recording_tables_load(ml_model *m, ml__rd *r)
{
    load_meta(m, r);
    if (r->ok)
        load_threads(m, r);
    if (r->ok)
        load_frames(m, r);
    if (r->ok)
        ml__recording_stacks_load(m, r);
    if (r->ok)
        load_strings(m, r);
    if (r->ok)
        load_logs(m, r);
    if (r->ok)
        load_status(m, r);
}
