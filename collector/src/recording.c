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

#include "recording_codec.h"

/* zstd level for compaction: runs are written once, read many times.
 * ml_recording_set_level() changes it (fuzz targets compact at level 1). */
static int zlevel = 19;

void ml_recording_set_level(int level)
{
    zlevel = level;
}

enum section_type {
    SEC_SAMPLES = ML_RECORDING_SEC_SAMPLES,
    SEC_TABLES = ML_RECORDING_SEC_TABLES,
};

#define SECTION_HEADER 13
#define INDEX_ENTRY 29
#define TRAILER 16

/* ---- container writer ---- */

/* The one writer of the container (magic, sections, index, trailer):
 * ml_recording_write() and ml_recording_write_sections() both go through
 * writer_init, add_section_parts and writer_finish. Sections are
 * compressed as they are added, so only one raw body is held at a time. */

typedef struct index_entry {
    uint8_t type;
    uint64_t offset;
    int64_t t_first, t_last;
    uint32_t n;
} index_entry;

typedef struct writer {
    ml__buf out;
    index_entry *idx;
    size_t nidx, capidx;
} writer;

static void writer_init(writer *w)
{
    *w = (writer){0};
    ml__buf_put(&w->out, ML_RECORDING_MAGIC, 4);
}

/* Adds section s, its body compressed as nparts zstd frames, part i
 * ending at ends[i] (the last at s->len); the reader's ZSTD_decompress
 * takes the concatenated frames as one body. */
static void add_section_parts(writer *w, const ml_recording_section *s, const size_t *ends,
                              int nparts)
{
    size_t bound = nparts * (size_t)ZSTD_compressBound(s->len), zn = 0, from = 0;
    uint8_t *z = ml_xmalloc(bound ? bound : 1);
    const uint8_t *src = s->body ? s->body : (const uint8_t *)"";
    for (int i = 0; i < nparts; i++) {
        size_t to = i == nparts - 1 ? s->len : ends[i];
        size_t got = ZSTD_compress(z + zn, bound - zn, src + from, to - from, zlevel);
        if (ZSTD_isError(got))
            ml_oom(0); /* only an allocation failure inside zstd can fail here */
        zn += got;
        from = to;
    }
    ml_xgrow((void **)&w->idx, &w->capidx, w->nidx + 1, sizeof(index_entry));
    w->idx[w->nidx++] = (index_entry){s->type, w->out.n, s->t_first, s->t_last, s->n};
    uint8_t h[SECTION_HEADER];
    h[0] = s->type;
    for (int i = 0; i < 4; i++) {
        h[1 + i] = (uint8_t)(s->len >> (8 * i));
        h[5 + i] = (uint8_t)(zn >> (8 * i));
        h[9 + i] = (uint8_t)(XXH32(z, zn, 0) >> (8 * i));
    }
    ml__buf_put(&w->out, h, sizeof(h));
    ml__buf_put(&w->out, z, zn);
    free(z);
}

static void add_section(writer *w, uint8_t type, const ml__buf *body, int64_t t0, int64_t t1,
                        uint32_t n)
{
    ml_recording_section s = {type, body->p, body->n, t0, t1, n};
    add_section_parts(w, &s, NULL, 1);
}

/* Appends the index and the trailer, writes the file atomically and frees
 * w. Returns 0 or -errno. */
static int writer_finish(writer *w, const char *path)
{
    uint64_t index_offset = w->out.n;
    ml__buf idx = {0};
    ml__put_le(&idx, w->nidx, 4);
    for (size_t i = 0; i < w->nidx; i++) {
        ml__put_le(&idx, w->idx[i].type, 1);
        ml__put_le(&idx, w->idx[i].offset, 8);
        ml__put_le(&idx, (uint64_t)w->idx[i].t_first, 8);
        ml__put_le(&idx, (uint64_t)w->idx[i].t_last, 8);
        ml__put_le(&idx, w->idx[i].n, 4);
    }
    ml__buf_put(&w->out, idx.p, idx.n);
    ml__put_le(&w->out, index_offset, 8);
    ml__put_le(&w->out, XXH32(idx.p, idx.n, 0), 4);
    ml__buf_put(&w->out, ML_RECORDING_END, 4);
    int rv = ml_write_file_atomic(path, w->out.p, w->out.n);
    free(idx.p);
    free(w->idx);
    free(w->out.p);
    *w = (writer){0};
    return rv;
}

int ml_recording_write_sections(const char *path, const ml_recording_section *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i].len > ML_RECORDING_SECTION_MAX)
            return -EINVAL;
    writer w;
    writer_init(&w);
    for (size_t i = 0; i < n; i++)
        add_section_parts(&w, &s[i], NULL, 1);
    return writer_finish(&w, path);
}

/* ---- samples ---- */

/* Per-thread state while coding one block (reset at every block, so each
 * block decodes alone). A thread id is its own slot when it is below
 * nthreads, else slot 0: writer and reader derive the same slots. */
typedef struct thread_state {
    int64_t t, dt;  /* time of this thread's last sample and the gap before it */
    uint32_t stack; /* its last stack (0 before the first: a stack-0 sample repeats) */
    int64_t cpu;    /* its last cpu_us */
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

/* Times outside [T_MIN, T_MAX] us (+-73,000 years) are clamped by the
 * writer and refused by the reader, which keeps the sums of the codec far
 * from overflow whatever a damaged file holds. */
#define T_MIN (INT64_MIN / 4)
#define T_MAX (INT64_MAX / 4)

static int64_t clamp_time(int64_t t)
{
    return t > T_MAX ? T_MAX : t < T_MIN ? T_MIN : t;
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
 * busy (cpu >= half its gap) likely used the whole gap again less what it
 * missed last time, an idle one nothing. The residual is small for both. */
static int64_t expected_cpu(const thread_state *ts, int64_t gap)
{
    if (ts->seen == 2 && ts->cpu * 2 >= ts->dt && gap > 0) {
        int64_t e = gap - (ts->dt - ts->cpu);
        return e > 0 ? e : 0;
    }
    return 0;
}

/* Updates ts with a sample at time t (base: the time its gap is from). */
static void advance(thread_state *ts, int64_t t, int64_t base, uint32_t stack, int64_t cpu)
{
    if (ts->seen)
        ts->dt = t - base;
    ts->seen = ts->seen ? 2 : 1;
    ts->t = t;
    ts->stack = stack;
    ts->cpu = cpu;
}

/* A stack that is not its thread's last is coded as its distance below
 * the next new stack id (hi + 1, hi the highest id seen so far): 0 for a
 * stack seen for the first time (most samples of a busy program at
 * 100 Hz), small for one seen lately. The block header holds hi as it was
 * before the block, so each block decodes alone. */
static int64_t stack_code(uint32_t *hi, uint32_t stack)
{
    int64_t code = (int64_t)*hi + 1 - stack;
    *hi = stack > *hi ? stack : *hi;
    return code;
}

static uint32_t stack_decode(uint32_t *hi, int64_t code)
{
    /* Unsigned: a damaged file's code wraps (the stack id is range-checked
     * by the model's users) instead of overflowing. */
    uint32_t stack = (uint32_t)((uint64_t)*hi + 1 - (uint64_t)code);
    *hi = stack > *hi ? stack : *hi;
    return stack;
}

/* Codes the samples [start, start + n) with time mode `mode` into b. */
static void code_block(ml__buf *b, const ml_model *m, size_t start, size_t n, int mode,
                       thread_state *st, size_t nslots, uint32_t hi)
{
    ml__buf thread = {0}, time = {0}, stack = {0}, cpu = {0};
    memset(st, 0, nslots * sizeof(*st));
    int64_t prev = 0, period = period_us(m);
    uint64_t run = 0;
    ml__put_varint(b, n);
    ml__put_varint(b, (uint64_t)mode);
    ml__put_varint(b, hi);
    for (size_t i = start; i < start + n; i++) {
        thread_state *ts = &st[slot_of(m->sample_thread[i], nslots)];
        int64_t t = clamp_time(m->sample_time[i]), base = ts->seen ? ts->t : prev;
        int64_t cu = m->sample_cpu[i];
        ml__put_varint(&thread, m->sample_thread[i]);
        ml__put_svarint(&time, t - base - expected_gap(ts, mode, period));
        /* Run-length: a sample with its thread's last stack costs nothing
         * but the run count; a long call is a handful of bytes. */
        if (m->sample_stack[i] == ts->stack) {
            run++;
        } else {
            ml__put_varint(&stack, run);
            ml__put_svarint(&stack, stack_code(&hi, m->sample_stack[i]));
            run = 0;
        }
        ml__put_svarint(&cpu, cu - expected_cpu(ts, t - base));
        advance(ts, t, base, m->sample_stack[i], cu);
        prev = t;
    }
    ml__put_varint(&stack, run);
    ml__put_col(b, &thread);
    ml__put_col(b, &time);
    ml__put_col(b, &stack);
    ml__put_col(b, &cpu);
}

/* Samples stay in journal order (the model's order); a block's time range
 * is its min and max so out-of-order threads are still found. */
static void write_samples(writer *w, const ml_model *m)
{
    ml__buf b = {0}, alt = {0};
    size_t nslots = m->nthreads ? m->nthreads : 1;
    thread_state *st = ml_xcalloc(nslots, sizeof(*st));
    uint32_t hi = 0; /* the highest stack id in the blocks before */
    for (size_t start = 0; start < m->nsamples; start += ML_RECORDING_BLOCK) {
        size_t n = m->nsamples - start;
        if (n > ML_RECORDING_BLOCK)
            n = ML_RECORDING_BLOCK;
        /* The index holds the times as stored (clamped), which the
         * reader's samples agree with. */
        int64_t lo = INT64_MAX, t_last = INT64_MIN;
        for (size_t i = start; i < start + n; i++) {
            int64_t t = clamp_time(m->sample_time[i]);
            lo = t < lo ? t : lo;
            t_last = t > t_last ? t : t_last;
        }
        b.n = alt.n = 0;
        code_block(&b, m, start, n, TIME_PERIOD, st, nslots, hi);
        code_block(&alt, m, start, n, TIME_GAP, st, nslots, hi);
        add_section(w, SEC_SAMPLES, alt.n < b.n ? &alt : &b, lo, t_last, (uint32_t)n);
        for (size_t i = start; i < start + n; i++)
            hi = m->sample_stack[i] > hi ? m->sample_stack[i] : hi;
    }
    free(st);
    free(alt.p);
    free(b.p);
}

int ml_recording_write(const ml_model *m, const char *path)
{
    writer w;
    writer_init(&w);
    ml__buf tables = {0};
    size_t cuts[2];
    ml__recording_tables_write(&tables, m, cuts);
    ml_recording_section t = {SEC_TABLES, tables.p, tables.n, 0, 0, 0};
    add_section_parts(&w, &t, cuts, 3);
    free(tables.p);
    write_samples(&w, m);
    return writer_finish(&w, path);
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
    size_t raw = ml__get_le(h + 1, 4), zn = ml__get_le(h + 5, 4);
    if (h[0] != want || raw > ML_RECORDING_SECTION_MAX || zn > ML_RECORDING_SECTION_MAX ||
        zn > limit - off - SECTION_HEADER)
        return -EBADMSG;
    ml_xgrow((void **)&s->z, &s->zcap, zn ? zn : 1, 1);
    if ((rv = pread_all(s->fd, s->z, zn, off + SECTION_HEADER)) != 0)
        return rv;
    if (XXH32(s->z, zn, 0) != (uint32_t)ml__get_le(h + 9, 4))
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

static void load_samples(ml_model *m, ml__rd *r)
{
    uint64_t n = ml__get_varint(r);
    uint64_t mode = ml__get_varint(r);
    uint64_t hi64 = ml__get_varint(r);
    ml__rd c[4] = {ml__get_col(r), ml__get_col(r), ml__get_col(r), ml__get_col(r)};
    ml__rd *thread = &c[0], *time = &c[1], *stack = &c[2], *cpu = &c[3];
    if (mode > TIME_GAP || hi64 > UINT32_MAX || !ml__count_ok(thread, n)) {
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
    uint32_t hi = (uint32_t)hi64;
    uint64_t run = ml__get_varint(stack);
    for (uint64_t i = 0; i < n && r->ok; i++) {
        uint32_t th = (uint32_t)ml__get_varint(thread);
        thread_state *ts = &st[slot_of(th, nslots)];
        int64_t base = ts->seen ? ts->t : prev;
        /* Unsigned sums: a damaged file wraps instead of overflowing, and
         * the bounds check below refuses it. */
        int64_t t = (int64_t)((uint64_t)base + (uint64_t)expected_gap(ts, (int)mode, period) +
                              (uint64_t)ml__get_svarint(time));
        uint32_t sk;
        if (run > 0) {
            sk = ts->stack;
            run--;
        } else {
            sk = stack_decode(&hi, ml__get_svarint(stack));
            run = ml__get_varint(stack);
        }
        /* What the writer can make: clamped times, cpu_us up to
         * UINT32_MAX. */
        if (t > T_MAX || t < T_MIN) {
            r->ok = false;
            break;
        }
        int64_t cu =
            (int64_t)((uint64_t)expected_cpu(ts, t - base) + (uint64_t)ml__get_svarint(cpu));
        if (cu < 0 || cu > UINT32_MAX) {
            r->ok = false;
            break;
        }
        advance(ts, t, base, sk, cu);
        prev = t;
        m->sample_thread[base_i + i] = th;
        m->sample_time[base_i + i] = t;
        m->sample_stack[base_i + i] = sk;
        m->sample_cpu[base_i + i] = (uint32_t)cu;
        /* A run longer than the block is a damaged file. */
        r->ok = thread->ok && time->ok && stack->ok && cpu->ok && run < n - i;
    }
    free(st);
    ml__cols_done(r, c, 4);
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

typedef void (*section_loader)(ml_model *m, ml__rd *r);

static section_loader loader_for(uint8_t type)
{
    switch (type) {
    case SEC_TABLES:
        return ml__recording_tables_load;
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
    /* A recording of an earlier format version ("MLR1", "MLR2"): refused,
     * not misread. */
    if (memcmp(head, "MLR", 3) == 0 && head[3] >= '1' && head[3] < ML_RECORDING_MAGIC[3] &&
        memcmp(tail + 12, ML_RECORDING_END, 4) == 0)
        return -EPROTO;
    if (memcmp(head, ML_RECORDING_MAGIC, 4) != 0 || memcmp(tail + 12, ML_RECORDING_END, 4) != 0)
        return -EBADMSG;
    uint64_t off = ml__get_le(tail, 8);
    if (off < 4 || off > s->size - TRAILER - 4)
        return -EBADMSG;
    uint64_t ilen = s->size - TRAILER - off;
    if ((rv = pread_all(s->fd, cnt, 4, off)) != 0)
        return rv;
    uint32_t n = (uint32_t)ml__get_le(cnt, 4);
    /* The count is checked against the index length before anything of
     * that size is allocated. */
    if (ilen != 4 + (uint64_t)n * INDEX_ENTRY)
        return -EBADMSG;
    uint8_t *p = ml_xmalloc((size_t)ilen);
    if ((rv = pread_all(s->fd, p, (size_t)ilen, off)) != 0 ||
        XXH32(p, (size_t)ilen, 0) != (uint32_t)ml__get_le(tail + 8, 4)) {
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
    bool tables = false;
    int rv = read_index(s, &idx, &count, &ioff);
    for (uint32_t i = 0; rv == 0 && i < count; i++) {
        const uint8_t *e = idx + 4 + (size_t)i * INDEX_ENTRY;
        uint8_t type = e[0];
        uint64_t off = ml__get_le(e + 1, 8);
        int64_t first = (int64_t)ml__get_le(e + 9, 8), last = (int64_t)ml__get_le(e + 17, 8);
        section_loader load = loader_for(type);
        if (load == NULL)
            continue; /* a section of a later version: skipped */
        /* The tables come once and first: samples are decoded against the
         * threads and the period they hold. */
        if ((type == SEC_TABLES) == tables) {
            rv = -EBADMSG;
            break;
        }
        tables = true;
        if (type == SEC_SAMPLES && (last < t0 || first > t1))
            continue; /* the time index: this block is outside the window */
        uint8_t *body;
        size_t len;
        if ((rv = read_section(s, ioff, off, type, &body, &len)) != 0)
            break;
        ml__rd r = {body, body + len, true};
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
