/*
 * The pprof export (export.h), hand-encoded: the few messages of
 * perftools' profile.proto we need are written with a small protobuf
 * writer rather than a second generated schema.
 *
 *   Profile { 1 sample_type: ValueType, 2 sample: Sample, 4 location,
 *             5 function, 6 string_table, 9 time_nanos, 10 duration_nanos,
 *             11 period_type: ValueType, 12 period }
 *   ValueType { 1 type, 2 unit }                       (string indexes)
 *   Sample { 1 location_id (packed, leaf first), 2 value (packed) }
 *   Location { 1 id, 4 line: Line { 1 function_id, 2 line } }
 *   Function { 1 id, 2 name, 3 system_name, 4 filename, 5 start_line }
 *
 * String indexes are the model's string ids (id 0 is ""), followed by the
 * few strings of our own. Location ids are frame ids, function ids the
 * function (first frame) ids.
 */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "calls.h"
#include "export.h"
#include "flamegraph.h"
#include "json.h"
#include "log.h"
#include "mem.h"

static void put_varint(ml_sbuf *b, uint64_t v)
{
    char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    ml_sbuf_add(b, tmp, n);
}

static void put_tag(ml_sbuf *b, uint32_t field, uint32_t wire)
{
    put_varint(b, (uint64_t)field << 3 | wire);
}

static void put_uint(ml_sbuf *b, uint32_t field, uint64_t v)
{
    put_tag(b, field, 0);
    put_varint(b, v);
}

static void put_bytes(ml_sbuf *b, uint32_t field, const void *p, size_t n)
{
    put_tag(b, field, 2);
    put_varint(b, n);
    ml_sbuf_add(b, p, n);
}

/* Appends the sub-message in sub as field, and empties sub. */
static void put_msg(ml_sbuf *b, uint32_t field, ml_sbuf *sub)
{
    put_bytes(b, field, sub->p ? sub->p : "", sub->n);
    sub->n = 0;
}

static void put_value_type(ml_sbuf *b, uint32_t field, uint64_t type, uint64_t unit)
{
    ml_sbuf vt = {0};
    put_uint(&vt, 1, type);
    put_uint(&vt, 2, unit);
    put_msg(b, field, &vt);
    free(vt.p);
}

static char *gzip(const char *p, size_t n, size_t *len)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return NULL;
    size_t cap = deflateBound(&zs, n) + 64;
    char *out = ml_xmalloc(cap);
    zs.next_in = (Bytef *)p;
    zs.avail_in = (uInt)n;
    zs.next_out = (Bytef *)out;
    zs.avail_out = (uInt)cap;
    int rc = deflate(&zs, Z_FINISH);
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    *len = zs.total_out;
    return out;
}

char *ml_export_pprof(const ml_qrun *q, size_t *len)
{
    const ml_model *m = q->model;
    const ml_calls *c = q->calls;
    ml_sbuf b = {0}, sub = {0}, packed = {0};
    uint64_t s_samples = m->nstrings ? m->nstrings : 1, s_count = s_samples + 1,
             s_wall = s_samples + 2, s_ns = s_samples + 3;
    int64_t period_ns = c->period_us * 1000;
    put_value_type(&b, 1, s_samples, s_count);
    put_value_type(&b, 1, s_wall, s_ns);
    /* Samples: one per path of the call tree with its self time and self
     * samples (the samples whose whole stack it was). */
    ml_ftree tree;
    ml_ftree_build(&tree, q, NULL);
    uint32_t path[ML_CALLS_MAX_DEPTH];
    for (size_t s = 1; s < tree.n; s++) {
        uint64_t self_us = tree.nodes[s].self, count = tree.nodes[s].self_samples;
        if (count == 0)
            continue;
        size_t n = ml_ftree_path(&tree, (uint32_t)s, path, ML_CALLS_MAX_DEPTH);
        for (size_t i = n; i-- > 0;)                  /* leaf first */
            if (path[i] != 0 && path[i] < m->nframes) /* location 0 is invalid */
                put_varint(&packed, path[i]);
        put_msg(&sub, 1, &packed);
        put_varint(&packed, count);
        put_varint(&packed, self_us * 1000);
        put_msg(&sub, 2, &packed);
        put_msg(&b, 2, &sub);
    }
    ml_ftree_dispose(&tree);
    /* Locations (frames) and functions. */
    for (size_t f = 1; f < m->nframes; f++) {
        const ml_frame *fr = &m->frames[f];
        uint32_t func = ml_calls_func(c, (uint32_t)f);
        /* A frame no sample used (only a log event's stack, e.g. defined
         * after the last sample) has no function mapped: it is its own,
         * since pprof refuses a line without a function. */
        if (func == 0)
            func = (uint32_t)f;
        put_uint(&packed, 1, func);
        put_uint(&packed, 2, fr->line);
        put_uint(&sub, 1, f);
        put_msg(&sub, 4, &packed);
        put_msg(&b, 4, &sub);
        if (func == f) {
            put_uint(&sub, 1, f);
            put_uint(&sub, 2, fr->name < m->nstrings ? fr->name : 0);
            put_uint(&sub, 3, fr->name < m->nstrings ? fr->name : 0);
            put_uint(&sub, 4, fr->file < m->nstrings ? fr->file : 0);
            put_uint(&sub, 5, fr->first_line ? fr->first_line : fr->line);
            put_msg(&b, 5, &sub);
        }
    }
    /* String table: the model's strings by id, then ours. */
    for (size_t i = 0; i < (m->nstrings ? m->nstrings : 1); i++) {
        const char *s = i ? ml_model_string(m, (uint32_t)i) : "";
        put_bytes(&b, 6, s, strlen(s));
    }
    static const char *const ours[] = {"samples", "count", "wall", "nanoseconds"};
    for (size_t i = 0; i < 4; i++)
        put_bytes(&b, 6, ours[i], strlen(ours[i]));
    put_uint(&b, 9, (uint64_t)(q->run->start_unix_us > 0 ? q->run->start_unix_us : 0) * 1000);
    put_uint(&b, 10, (uint64_t)(q->run->end_us > 0 ? q->run->end_us : 0) * 1000);
    put_value_type(&b, 11, s_wall, s_ns);
    put_uint(&b, 12, (uint64_t)period_ns);
    free(sub.p);
    free(packed.p);
    char *out = gzip(b.p ? b.p : "", b.n, len);
    if (out == NULL)
        ml_warn("export: gzip of the pprof profile failed");
    free(b.p);
    return out;
}
