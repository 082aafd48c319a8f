/*
 * The timeline answer: calls of a window at a level of detail.
 *
 * Calls shorter than a pixel are merged with their neighbours at the same
 * depth into one item (dominant function = the longest member, count = the
 * number of calls). A group grows while its span is under ML_GROUP_PIXELS
 * pixels and the gap to the next call is under a pixel, so a depth yields
 * a bounded number of items per pixel whatever the window.
 *
 * To keep wide windows fast, each depth has a pyramid of pre-merged
 * levels: level k is the merge of level k-1 at a pixel of
 * period * LOD_BASE * 4^k (level 0 merges the raw calls). A query merges
 * the coarsest level whose pixel is not wider than its own, so it reads
 * O(width) items per depth instead of every call. Windows with pixels
 * under LOD_BASE periods read the raw calls: they hold few enough. The
 * pyramid starts that coarse so that it stays small next to the calls.
 * Pyramids are built on first use and rebuilt when the index grew (live
 * runs).
 *
 * Numbers are printed with the precision the zoom needs (a tenth of a
 * pixel), which keeps a whole-run answer small.
 */
#include <stdlib.h>
#include <string.h>

#include "calls.h"
#include "json.h"
#include "mem.h"
#include "query.h"

/* A group of narrow calls grows until it spans this many pixels: the
 * items of a depth stay under width / ML_GROUP_PIXELS plus the wide calls. */
#define ML_GROUP_PIXELS 4

/* Pixel of pyramid level 0, in sample periods. */
#define LOD_BASE 16

/* Levels stop when the level below is this small: merging it is cheap. */
#define LOD_MIN_ITEMS 512

typedef void (*emit_fn)(void *arg, const ml_lod_item *it, int64_t start, int64_t end);

typedef struct merger {
    int64_t px;
    bool has;
    ml_lod_item cur;
    int64_t start, end, best;
    emit_fn emit;
    void *arg;
} merger;

static void merger_flush(merger *g)
{
    if (g->has)
        g->emit(g->arg, &g->cur, g->start, g->end);
    g->has = false;
}

/* Feeds one item (in time order). */
static void merger_push(merger *g, const ml_lod_item *it, int64_t start, int64_t end)
{
    int64_t dur = end - start;
    if (dur >= g->px) {
        merger_flush(g);
        g->emit(g->arg, it, start, end);
        return;
    }
    if (g->has && start - g->end < g->px && g->end - g->start < ML_GROUP_PIXELS * g->px) {
        g->cur.count += it->count;
        if (dur > g->best) {
            g->best = dur;
            g->cur.func = it->func;
        }
        if (end > g->end)
            g->end = end;
        g->cur.end = g->end;
        return;
    }
    merger_flush(g);
    g->has = true;
    g->cur = *it;
    g->start = start;
    g->end = end;
    g->best = dur;
}

typedef struct level_out {
    ml_lod_item *items;
    size_t n, cap;
} level_out;

static void emit_to_level(void *arg, const ml_lod_item *it, int64_t start, int64_t end)
{
    level_out *o = arg;
    ml_xgrow((void **)&o->items, &o->cap, o->n + 1, sizeof(ml_lod_item));
    o->items[o->n] = *it;
    o->items[o->n].start = start;
    o->items[o->n].end = end;
    o->n++;
}

static void raw_item(const ml_call_list *l, size_t k, ml_lod_item *it)
{
    int64_t s = ml_call_start(l, k);
    *it = (ml_lod_item){s, s + ml_call_dur(l, k), ml_call_func(l, k), 1};
}

/* Level k merges at LOD_BASE * 4^k periods, from the last level kept (or
 * the calls). A level is kept only when it holds at most half the items
 * of its source: a depth of calls wider than the pixel merges little, and
 * a copy of it would cost memory for no speed. */
static void build_pyramid(const ml_qrun *q, ml_thread_index *t, size_t d)
{
    ml_call_list *l = &t->depth[d];
    for (int k = 0; k < ML_LOD_LEVELS; k++) {
        free(l->lod[k].items);
        l->lod[k] = (ml_lod_level){0};
    }
    l->nlod = 0;
    int64_t px = q->calls->period_us * LOD_BASE;
    size_t below = l->n;
    for (int k = 0; k < ML_LOD_LEVELS && below >= LOD_MIN_ITEMS; k++, px *= 4) {
        level_out o = {0};
        merger g = {.px = px, .emit = emit_to_level, .arg = &o};
        ml_lod_item it;
        for (size_t i = 0; i < below; i++) {
            if (l->nlod == 0)
                raw_item(l, i, &it);
            else
                it = l->lod[l->nlod - 1].items[i];
            merger_push(&g, &it, it.start, it.end);
        }
        merger_flush(&g);
        if (o.n * 2 > below) {
            free(o.items);
            continue;
        }
        l->lod[l->nlod] = (ml_lod_level){
            o.n ? ml_xrealloc(o.items, o.n * sizeof(ml_lod_item)) : o.items, o.n, px};
        l->nlod++;
        below = o.n;
    }
    l->lod_built = q->calls->generation + 1;
}

typedef struct tl_out {
    ml_sbuf *b;
    int prec; /* decimals of the seconds printed */
    size_t depth, items;
    bool merged;
    uint8_t *used; /* functions seen, by frame id */
    size_t nused;
} tl_out;

static void emit_json(void *arg, const ml_lod_item *it, int64_t start, int64_t end)
{
    tl_out *o = arg;
    ml_sbuf_printf(o->b,
                   "%s{\"start\":%.*f,\"duration\":%.*f,\"depth\":%zu,\"frame\":%u,\"count\":%u}",
                   o->items ? "," : "", o->prec, (double)start / 1e6, o->prec,
                   (double)(end - start) / 1e6, o->depth, it->func, it->count);
    if (it->count > 1)
        o->merged = true;
    if (it->func < o->nused)
        o->used[it->func] = 1;
    o->items++;
}

static size_t lod_first_ending_after(const ml_lod_level *lv, int64_t time)
{
    size_t lo = 0, hi = lv->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (lv->items[mid].end <= time)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The items of depth d of thread t in [ws, we) at pixel px. */
static void depth_items(const ml_qrun *q, ml_thread_index *t, size_t d, int64_t ws, int64_t we,
                        int64_t px, tl_out *o)
{
    ml_call_list *l = &t->depth[d];
    if (l->n == 0)
        return;
    int level = -1;
    int64_t base = q->calls->period_us * LOD_BASE;
    if (px >= base) {
        if (l->lod_built != q->calls->generation + 1)
            build_pyramid(q, t, d);
        while (level + 1 < l->nlod && l->lod[level + 1].px <= px)
            level++;
    }
    merger g = {.px = px, .emit = emit_json, .arg = o};
    o->depth = d;
    ml_lod_item it;
    if (level < 0) {
        for (size_t k = ml_calls_first_ending_after(l, ws); k < l->n; k++) {
            raw_item(l, k, &it);
            if (it.start >= we)
                break;
            merger_push(&g, &it, it.start, it.end);
        }
    } else {
        const ml_lod_level *lv = &l->lod[level];
        for (size_t k = lod_first_ending_after(lv, ws); k < lv->n; k++) {
            if (lv->items[k].start >= we)
                break;
            merger_push(&g, &lv->items[k], lv->items[k].start, lv->items[k].end);
        }
    }
    merger_flush(&g);
}

static json_t *frames_json(const ml_qrun *q, const uint8_t *used, size_t n)
{
    json_t *frames = json_object();
    for (size_t f = 1; f < n; f++) {
        if (!used[f])
            continue;
        const ml_frame *fr = ml_model_frame(q->model, (uint32_t)f);
        if (fr == NULL)
            continue;
        const char *name = ml_model_string(q->model, fr->name);
        size_t mod_len, cls_len;
        ml_name_split(name, fr->flags, &mod_len, &cls_len);
        json_t *o = json_object();
        ml_json_set(o, "name", ml_json_str(name));
        ml_json_set(o, "file", ml_json_str(ml_model_string(q->model, fr->file)));
        ml_json_set(o, "line", json_integer(fr->first_line ? fr->first_line : fr->line));
        ml_json_set(o, "first_line", json_integer(fr->first_line));
        ml_json_set(o, "module", ml_json_strn(name, mod_len));
        ml_json_set(o, "flags", json_integer(fr->flags));
        char key[24];
        snprintf(key, sizeof(key), "%zu", f);
        ml_json_set(frames, key, o);
    }
    return frames;
}

char *ml_query_timeline(const ml_qrun *q, const ml_qwindow *w, size_t *len)
{
    int64_t ws = w->start, we = w->end;
    if (we == INT64_MAX)
        we = q->run->end_us > 0 ? q->run->end_us + q->calls->period_us : q->calls->period_us;
    int64_t px = (we - ws) / (w->width > 0 ? w->width : 1000);
    if (px < 1)
        px = 1;
    ml_sbuf b = {0};
    tl_out o = {.b = &b, .nused = q->model->nframes};
    /* A tenth of a pixel, in decimals of a second (at most microseconds). */
    o.prec = 6;
    for (int64_t r = 10; o.prec > 0 && r * 10 <= px; r *= 10)
        o.prec--;
    o.used = ml_xcalloc(o.nused + 1, 1);
    ml_sbuf_puts(&b, "{\"run\":");
    ml_sbuf_jstr(&b, q->run->id);
    ml_sbuf_printf(&b, ",\"start\":%.6f,\"end\":%.6f,\"duration\":%.6f,\"sample_period\":%.6f",
                   (double)ws / 1e6, (double)we / 1e6, (double)q->run->end_us / 1e6, q->period);
    ml_sbuf_puts(&b, ",\"threads\":[");
    bool first = true;
    for (size_t id = 1; id < q->calls->nthreads; id++) {
        ml_thread_index *t = &q->calls->threads[id];
        if (t->n == 0 || !ml_qwindow_has_thread(w, (uint32_t)id))
            continue;
        const char *name = id < q->model->nthreads ? q->model->threads[id].name : NULL;
        ml_sbuf_printf(&b, "%s{\"id\":%zu,\"name\":", first ? "" : ",", id);
        ml_sbuf_jstr(&b, name);
        ml_sbuf_puts(&b, ",\"calls\":[");
        o.items = 0;
        for (size_t d = 0; d < t->ndepth; d++)
            depth_items(q, t, d, ws, we, px, &o);
        ml_sbuf_puts(&b, "]}");
        first = false;
    }
    ml_sbuf_printf(&b, "],\"merged\":%s,\"frames\":", o.merged ? "true" : "false");
    json_t *frames = frames_json(q, o.used, o.nused);
    ml_sbuf_json(&b, frames);
    json_decref(frames);
    ml_sbuf_puts(&b, "}");
    free(o.used);
    return ml_sbuf_take(&b, len);
}
