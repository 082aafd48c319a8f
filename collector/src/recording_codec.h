/*
 * Byte-level helpers shared by the recording writer and reader
 * (recording.c, recording_tables.c): a growable buffer with LEB128 varints
 * and a bounds-checked reader. Internal to the recording; pure functions,
 * any thread.
 */
#ifndef ML_COLLECTOR_RECORDING_CODEC_H
#define ML_COLLECTOR_RECORDING_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mem.h"
#include "model.h"

typedef struct ml__buf {
    uint8_t *p;
    size_t n, cap;
} ml__buf;

static inline void ml__buf_put(ml__buf *b, const void *data, size_t n)
{
    ml_xgrow((void **)&b->p, &b->cap, b->n + n, 1);
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

static inline void ml__put_varint(ml__buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    ml__buf_put(b, tmp, n);
}

static inline void ml__put_svarint(ml__buf *b, int64_t v)
{
    ml__put_varint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static inline void ml__put_le(ml__buf *b, uint64_t v, int bytes)
{
    uint8_t tmp[8];
    for (int i = 0; i < bytes; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    ml__buf_put(b, tmp, (size_t)bytes);
}

static inline void ml__put_str(ml__buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    ml__put_varint(b, n);
    ml__buf_put(b, s, n);
}

/* Appends col to b as varint(length) | bytes and empties col: section
 * bodies are columns so that like values sit together for zstd. */
static inline void ml__put_col(ml__buf *b, ml__buf *col)
{
    ml__put_varint(b, col->n);
    ml__buf_put(b, col->p, col->n);
    free(col->p);
    *col = (ml__buf){0};
}

static inline uint64_t ml__get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* A reader over decoded bytes; ok turns false on any overrun and stays
 * false (every getter then returns 0). */
typedef struct ml__rd {
    const uint8_t *p, *end;
    bool ok;
} ml__rd;

static inline uint64_t ml__get_varint(ml__rd *r)
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

static inline int64_t ml__get_svarint(ml__rd *r)
{
    uint64_t u = ml__get_varint(r);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

/* Four bytes little-endian (0 and ok false on overrun). */
static inline uint32_t ml__get_u32(ml__rd *c)
{
    if (c->end - c->p < 4) {
        c->ok = false;
        return 0;
    }
    uint32_t v = (uint32_t)ml__get_le(c->p, 4);
    c->p += 4;
    return v;
}

/* A malloc'd NUL-terminated copy of the next string, or NULL on overrun. */
static inline char *ml__get_str(ml__rd *r)
{
    uint64_t n = ml__get_varint(r);
    if (!r->ok || n > (uint64_t)(r->end - r->p)) {
        r->ok = false;
        return NULL;
    }
    char *s = ml_xstrndup((const char *)r->p, (size_t)n);
    r->p += n;
    return s;
}

/* Counts come from the file: each entry takes at least one byte of r, so
 * a count above the bytes left is damage, caught before allocating. */
static inline bool ml__count_ok(ml__rd *r, uint64_t n)
{
    if (!r->ok || n > (uint64_t)(r->end - r->p)) {
        r->ok = false;
        return false;
    }
    return true;
}

/* The next column of r as a reader of its own (ok false on overrun). */
static inline ml__rd ml__get_col(ml__rd *r)
{
    uint64_t n = ml__get_varint(r);
    ml__rd c = {r->p, r->p, false};
    if (!r->ok || n > (uint64_t)(r->end - r->p)) {
        r->ok = false;
        return c;
    }
    c.end = r->p + n;
    c.ok = true;
    r->p += n;
    return c;
}

/* Folds the columns' state into r: good only when every column decoded
 * within its bounds. */
static inline void ml__cols_done(ml__rd *r, const ml__rd *cols, int ncols)
{
    for (int i = 0; i < ncols; i++)
        r->ok = r->ok && cols[i].ok;
}

/* The run's tables (meta, threads, frames, stacks, strings, logs, status)
 * as one body (recording_tables.c); cuts receives where the second and
 * the third zstd frame of the section start. */
void ml__recording_tables_write(ml__buf *b, const ml_model *m, size_t cuts[2]);

/* Decodes a tables body into m (fresh); r->ok false on damage. */
void ml__recording_tables_load(ml_model *m, ml__rd *r);

/* The stacks table (recording_stacks.c), part of the tables body. */
void ml__recording_stacks_write(ml__buf *b, const ml_model *m);
void ml__recording_stacks_load(ml_model *m, ml__rd *r);

#endif
