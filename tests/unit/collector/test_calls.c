/* The call index (calls.h): merging samples into calls, the timeline's
 * level-of-detail merge, and the flame graph derived from calls checked
 * against the same totals computed sample by sample. Models are built by
 * hand (tables and sample columns), so every expected value is known.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "calls.h"
#include "flamegraph.h"
#include "mem.h"
#include "model.h"
#include "query.h"

#define P 10000 /* sample period, us */

/* Frame ids (1..NFRAMES): each function has two frames (two executing
 * lines) that must merge: frame f and f + 1 are function f for odd f. */
#define NFRAMES 12

static void model_with_frames(ml_model *m, size_t nframes)
{
    ml_model_init(m);
    m->strings = ml_xcalloc(2 + nframes, sizeof(char *));
    m->nstrings = m->capstrings = 2 + nframes;
    m->strings[1] = ml_xstrdup("/app/x.py");
    m->frames = ml_xcalloc(nframes + 1, sizeof(ml_frame));
    m->nframes = m->capframes = nframes + 1;
    for (size_t f = 1; f <= nframes; f++) {
        size_t func = f % 2 ? f : f - 1; /* odd: the function's first frame */
        char name[32];
        snprintf(name, sizeof(name), "f%zu", func);
        m->strings[1 + f] = ml_xstrdup(name);
        m->frames[f] = (ml_frame){.name = (uint32_t)(1 + func),
                                  .file = 1,
                                  .line = (uint32_t)(100 + f),
                                  .first_line = (uint32_t)(10 * func)};
    }
}

/* Adds stack id (the next one) with these frames, root first. */
static uint32_t add_stack(ml_model *m, const uint32_t *frames, uint32_t n)
{
    ml_xgrow((void **)&m->stacks, &m->capstacks, m->nstacks + 2, sizeof(ml_stack));
    if (m->nstacks == 0) {
        m->stacks[0] = (ml_stack){0}; /* id 0: no Python frame */
        m->nstacks = 1;
    }
    ml_stack *s = &m->stacks[m->nstacks];
    s->frames = ml_xmalloc((n ? n : 1) * sizeof(uint32_t));
    memcpy(s->frames, frames, n * sizeof(uint32_t));
    s->n = n;
    s->truncated = 0;
    return (uint32_t)m->nstacks++;
}

static void add_sample(ml_model *m, uint32_t thread, int64_t time, uint32_t stack)
{
    size_t need = m->nsamples + 1, cap = m->capsamples;
    ml_xgrow((void **)&m->sample_thread, &cap, need, sizeof(uint32_t));
    cap = m->capsamples;
    ml_xgrow((void **)&m->sample_stack, &cap, need, sizeof(uint32_t));
    cap = m->capsamples;
    ml_xgrow((void **)&m->sample_cpu, &cap, need, sizeof(uint32_t));
    cap = m->capsamples;
    ml_xgrow((void **)&m->sample_time, &cap, need, sizeof(int64_t));
    m->capsamples = cap;
    m->sample_thread[m->nsamples] = thread;
    m->sample_stack[m->nsamples] = stack;
    m->sample_cpu[m->nsamples] = 0;
    m->sample_time[m->nsamples] = time;
    m->nsamples++;
}

static const ml_call_list *list(const ml_calls *c, uint32_t thread, size_t d)
{
    assert_true(thread < c->nthreads);
    assert_true(d < c->threads[thread].ndepth);
    return &c->threads[thread].depth[d];
}

/* A function across N samples is one call of N periods, whatever line of
 * it runs; its callee's calls lie inside it. */
static void test_one_call_of_n_periods(void **state)
{
    (void)state;
    ml_model m;
    model_with_frames(&m, NFRAMES);
    uint32_t a[] = {1, 3}, b[] = {1, 4}; /* f1 -> f3 at two lines of f3 */
    uint32_t sa = add_stack(&m, a, 2), sb = add_stack(&m, b, 2);
    for (int i = 0; i < 10; i++)
        add_sample(&m, 1, 1000 + i * P, i % 2 ? sb : sa);
    ml_calls c;
    ml_calls_init(&c);
    ml_calls_add(&c, &m, P);
    assert_int_equal(m.nsamples, 0); /* the staging columns were consumed */
    assert_int_equal(c.samples, 10);
    assert_int_equal(c.threads[1].n, 10);
    for (size_t d = 0; d < 2; d++) {
        const ml_call_list *l = list(&c, 1, d);
        assert_int_equal(l->n, 1);
        assert_int_equal(ml_call_start(l, 0), 1000);
        assert_int_equal(ml_call_dur(l, 0), 10 * P); /* the last sample stands for a period */
        assert_true(l->open);
    }
    assert_int_equal(ml_call_func(list(&c, 1, 0), 0), 1);
    assert_int_equal(ml_call_func(list(&c, 1, 1), 0), 3);
    ml_calls_dispose(&c);
    ml_model_dispose(&m);
}

/* A different function at a depth splits that depth (and the deeper
 * ones) but not the shallower; a sample without that depth (a shallower
 * stack, or idle) ends it; a sampler gap ends a call at two periods. */
static void test_splits(void **state)
{
    (void)state;
    ml_model m;
    model_with_frames(&m, NFRAMES);
    uint32_t s13[] = {1, 3}, s15[] = {1, 5}, s1[] = {1}, s157[] = {1, 5, 7};
    uint32_t a = add_stack(&m, s13, 2), b = add_stack(&m, s15, 2), c1 = add_stack(&m, s1, 1),
             d = add_stack(&m, s157, 3);
    /* t(us):    0   P   2P  3P  4P  5P  6P  7P  8P       20P   21P */
    uint32_t seq[] = {a, a, b, b, c1, b, d, d, 0, /* idle */ a, a};
    int64_t times[] = {0, P, 2 * P, 3 * P, 4 * P, 5 * P, 6 * P, 7 * P, 8 * P, 20 * P, 21 * P};
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++)
        add_sample(&m, 1, times[i], seq[i]);
    ml_calls c;
    ml_calls_init(&c);
    ml_calls_add(&c, &m, P);
    /* Depth 0: f1 from 0 to 8P (the idle sample ends it), then again at
     * 20P: the idle sample stands for 2 periods at most, a later sample
     * starts anew. */
    const ml_call_list *l0 = list(&c, 1, 0);
    assert_int_equal(l0->n, 2);
    assert_int_equal(ml_call_start(l0, 0), 0);
    assert_int_equal(ml_call_dur(l0, 0), 8 * P);
    assert_int_equal(ml_call_start(l0, 1), 20 * P);
    assert_int_equal(ml_call_dur(l0, 1), 2 * P);
    /* Depth 1: f3 [0,2P) f5 [2P,4P) (the shallow sample at 4P ends it)
     * f5 [5P,8P) f3 [20P,22P). */
    const ml_call_list *l1 = list(&c, 1, 1);
    int64_t want1[][3] = {{0, 2 * P, 3}, {2 * P, 2 * P, 5}, {5 * P, 3 * P, 5}, {20 * P, 2 * P, 3}};
    assert_int_equal(l1->n, 4);
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(ml_call_start(l1, k), want1[k][0]);
        assert_int_equal(ml_call_dur(l1, k), want1[k][1]);
        assert_int_equal(ml_call_func(l1, k), want1[k][2]);
    }
    /* Depth 2: f7 [6P,8P), inside its parent f5 [5P,8P). */
    const ml_call_list *l2 = list(&c, 1, 2);
    assert_int_equal(l2->n, 1);
    assert_int_equal(ml_call_start(l2, 0), 6 * P);
    assert_int_equal(ml_call_dur(l2, 0), 2 * P);
    assert_int_equal(ml_calls_parent(&c.threads[1], 2, 0), 2);
    assert_int_equal(ml_calls_parent(&c.threads[1], 1, 3), 1);
    /* A late sample (3 periods) ends a call at 2 periods after its last
     * sample; the next call starts at the late sample. */
    ml_model_dispose(&m);
    model_with_frames(&m, NFRAMES);
    a = add_stack(&m, s13, 2);
    b = add_stack(&m, s15, 2);
    add_sample(&m, 2, 0, a);
    add_sample(&m, 2, 3 * P, b);
    ml_calls_add(&c, &m, P);
    l1 = list(&c, 2, 1);
    assert_int_equal(l1->n, 2);
    assert_int_equal(ml_call_dur(l1, 0), 2 * P);
    assert_int_equal(ml_call_start(l1, 1), 3 * P);
    /* ... while the call that goes on (f1 at depth 0) spans the gap. */
    assert_int_equal(list(&c, 2, 0)->n, 1);
    assert_int_equal(ml_call_dur(list(&c, 2, 0), 0), 4 * P);
    ml_calls_dispose(&c);
    ml_model_dispose(&m);
}

/* Incremental adds (a live run): the open call grows, time never goes
 * back, calls longer than 71 minutes and starts far from their block's
 * base are exact, and function ids past 16 bits widen the column. */
static void test_incremental_and_wide_values(void **state)
{
    (void)state;
    ml_model m;
    model_with_frames(&m, 70001); /* frame 70001: a function id > 65535 */
    uint32_t s1[] = {1}, s13[] = {1, 3}, sbig[] = {1, 70001};
    uint32_t a = add_stack(&m, s1, 1), b = add_stack(&m, s13, 2), big = add_stack(&m, sbig, 2);
    ml_calls c;
    ml_calls_init(&c);
    add_sample(&m, 1, 0, b);
    ml_calls_add(&c, &m, P);
    assert_int_equal(ml_call_dur(list(&c, 1, 0), 0), P);
    int64_t hour2 = 2LL * 3600 * 1000000; /* two hours: more than 32 bits of us */
    add_sample(&m, 1, hour2, b);
    add_sample(&m, 1, hour2 - 5, a); /* back in time: clamped */
    ml_calls_add(&c, &m, P);
    const ml_call_list *l0 = list(&c, 1, 0), *l1 = list(&c, 1, 1);
    assert_int_equal(l0->n, 1);
    assert_int_equal(ml_call_dur(l0, 0), hour2 + P);
    assert_int_equal(l1->n, 1);
    assert_int_equal(ml_call_dur(l1, 0), hour2); /* ended by the clamped sample */
    add_sample(&m, 1, hour2 + P, big);
    ml_calls_add(&c, &m, P);
    l1 = list(&c, 1, 1);
    assert_int_equal(l1->n, 2);
    assert_int_equal(ml_call_start(l1, 1), hour2 + P); /* far from its block's base */
    assert_int_equal(ml_call_func(l1, 1), 70001);
    assert_int_equal(ml_call_func(l1, 0), 3);
    assert_int_equal(ml_calls_first_ending_after(l1, hour2), 1);
    assert_int_equal(ml_calls_first_ending_after(l1, 0), 0);
    assert_int_equal(c.threads[1].n, 4);
    assert_int_equal(c.generation, 3);
    ml_calls_shrink(&c);
    assert_int_equal(ml_call_start(list(&c, 1, 1), 1), hour2 + P);
    assert_true(ml_calls_bytes(&c) > 0);
    ml_calls_dispose(&c);
    ml_model_dispose(&m);
}

static ml_run *fake_run(int64_t end_us)
{
    ml_run *r = ml_xcalloc(1, sizeof(*r));
    strcpy(r->id, "t/2026_01_01_00_00_00");
    r->end_us = end_us;
    r->sample_period = (double)P / 1e6;
    return r;
}

/* Level of detail: calls narrower than a pixel are merged into items
 * whose count adds up to the calls, dominant frame the longest member; the
 * item count stays bounded by the width however many calls there are. */
static void test_level_of_detail(void **state)
{
    (void)state;
    ml_model m;
    model_with_frames(&m, NFRAMES);
    uint32_t s13[] = {1, 3}, s15[] = {1, 5};
    uint32_t a = add_stack(&m, s13, 2), b = add_stack(&m, s15, 2);
    /* 200000 samples: f3 for 2 samples, f5 for 1, repeated. */
    size_t n = 200000;
    for (size_t i = 0; i < n; i++)
        add_sample(&m, 1, (int64_t)i * P, i % 3 == 2 ? b : a);
    ml_calls c;
    ml_calls_init(&c);
    ml_calls_add(&c, &m, P);
    size_t ncalls = list(&c, 1, 1)->n;
    assert_int_equal(ncalls, 2 * (n / 3) + (n % 3 ? 1 : 0));
    ml_run *r = fake_run((int64_t)n * P);
    ml_qrun q = {.run = r, .model = &m, .calls = &c, .period = (double)P / 1e6};
    int widths[] = {100, 2000};
    for (size_t wi = 0; wi < 2; wi++) {
        /* The whole run (pyramid levels) and a window of raw calls. */
        int64_t windows[][2] = {{0, INT64_MAX}, {1000 * P, 1600 * P}};
        for (size_t k = 0; k < 2; k++) {
            if (k == 1 && widths[wi] > 1000)
                continue; /* pixels under a call: nothing to merge there */
            ml_qwindow w = {.start = windows[k][0], .end = windows[k][1], .width = widths[wi]};
            size_t len;
            char *text = ml_query_timeline(&q, &w, &len);
            json_error_t err;
            json_t *tl = json_loadb(text, len, 0, &err);
            free(text);
            assert_non_null(tl);
            json_t *calls =
                json_object_get(json_array_get(json_object_get(tl, "threads"), 0), "calls");
            size_t items = 0, count1 = 0, dominant3 = 0, merged = 0;
            for (size_t i = 0; i < json_array_size(calls); i++) {
                json_t *it = json_array_get(calls, i);
                if (json_integer_value(json_object_get(it, "depth")) != 1)
                    continue;
                items++;
                size_t cnt = (size_t)json_integer_value(json_object_get(it, "count"));
                count1 += cnt;
                if (cnt > 1) {
                    merged++;
                    dominant3 += json_integer_value(json_object_get(it, "frame")) == 3;
                }
            }
            /* Bounded: at most about one item per ML_GROUP_PIXELS pixels,
             * however many calls the window holds. */
            assert_true(items <= (size_t)widths[wi] / 2 + 2);
            assert_true(merged > 0);
            assert_int_equal(dominant3, merged); /* f3 runs twice as long as f5 */
            assert_true(json_is_true(json_object_get(tl, "merged")));
            if (k == 0)
                assert_int_equal(count1, ncalls); /* every call counted once */
            else /* the window [1000P, 1600P) holds 400 calls, two cut by an edge at most */
                assert_true(count1 >= 400 && count1 <= 402);
            json_decref(tl);
        }
    }
    /* A narrow window shows raw calls: one item per call, count 1. */
    ml_qwindow w = {.start = 3 * P, .end = 9 * P, .width = 600};
    size_t len;
    char *text = ml_query_timeline(&q, &w, &len);
    json_t *tl = json_loadb(text, len, 0, NULL);
    free(text);
    json_t *calls = json_object_get(json_array_get(json_object_get(tl, "threads"), 0), "calls");
    size_t depth1 = 0;
    for (size_t i = 0; i < json_array_size(calls); i++) {
        json_t *it = json_array_get(calls, i);
        if (json_integer_value(json_object_get(it, "depth")) == 1) {
            depth1++;
            assert_int_equal(json_integer_value(json_object_get(it, "count")), 1);
        }
    }
    assert_int_equal(depth1, 4); /* f3 [3P,5P) f5 [5P,6P) f3 [6P,8P) f5 [8P,9P) */
    assert_false(json_is_true(json_object_get(tl, "merged")));
    json_decref(tl);
    free(r);
    ml_calls_dispose(&c);
    ml_model_dispose(&m);
}

/* Reference: per path of functions (as "f1/f3/..."), the time its samples
 * stand for, sample by sample: total (path is a prefix of the stack) and
 * self (path is the whole stack), clipped to [ws, we); and the samples
 * themselves, those whose time is in [ws, we). */
typedef struct ref_entry {
    char key[128];
    int64_t total, self;
    int64_t samples, self_samples;
} ref_entry;

static ref_entry *ref_find(ref_entry *r, size_t *n, const char *key)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(r[i].key, key) == 0)
            return &r[i];
    strcpy(r[*n].key, key);
    r[*n].total = r[*n].self = r[*n].samples = r[*n].self_samples = 0;
    return &r[(*n)++];
}

static size_t reference(const ml_model *m, const uint32_t *thread, const int64_t *time,
                        const uint32_t *stack, size_t n, int64_t ws, int64_t we, ref_entry *out)
{
    size_t nout = 0;
    for (size_t i = 0; i < n; i++) {
        /* The next sample of the same thread. */
        int64_t w = P;
        for (size_t j = i + 1; j < n; j++)
            if (thread[j] == thread[i]) {
                w = time[j] - time[i] < 2 * P ? time[j] - time[i] : 2 * P;
                break;
            }
        int64_t s = time[i] > ws ? time[i] : ws, e = time[i] + w < we ? time[i] + w : we;
        if (e <= s)
            continue;
        bool counted = time[i] >= ws && time[i] < we;
        const ml_stack *st = ml_model_stack(m, stack[i]);
        char key[128] = "";
        for (uint32_t k = 0; st && k < st->n; k++) {
            uint32_t f = st->frames[k], func = f % 2 ? f : f - 1;
            snprintf(key + strlen(key), sizeof(key) - strlen(key), "/f%u", func);
            ref_entry *r = ref_find(out, &nout, key);
            r->total += e - s;
            r->samples += counted;
            if (k + 1 == st->n) {
                r->self += e - s;
                r->self_samples += counted;
            }
        }
    }
    return nout;
}

/* The flame graph derived from calls equals the sample-based totals:
 * three threads, recursion, depth changes and jitter under the cap. */
static void test_flamegraph_from_calls(void **state)
{
    (void)state;
    ml_model m;
    model_with_frames(&m, NFRAMES);
    uint32_t shapes[][4] = {{1, 3, 5, 0}, {1, 3, 0, 0}, {1, 4, 7, 0},  {1, 3, 3, 9},
                            {1, 5, 0, 0}, {1, 0, 0, 0}, {1, 3, 6, 11}, {2, 3, 0, 0}};
    uint32_t ids[8];
    for (int i = 0; i < 8; i++) {
        uint32_t len = 0;
        while (len < 4 && shapes[i][len])
            len++;
        ids[i] = add_stack(&m, shapes[i], len);
    }
    size_t n = 3000;
    uint32_t *th = ml_xmalloc(n * sizeof(uint32_t)), *st = ml_xmalloc(n * sizeof(uint32_t));
    int64_t *tm = ml_xmalloc(n * sizeof(int64_t));
    uint32_t seed = 12345;
    int64_t now[4] = {0, 0, 500, 1000};
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t t = 1 + (seed >> 8) % 3;
        now[t] += P - 2000 + (int64_t)((seed >> 4) % 4000); /* jitter, always < 2P */
        th[i] = t;
        tm[i] = now[t];
        /* Runs of the same stack, so calls span several samples. */
        st[i] = (seed >> 16) % 5 == 0 ? 0 : ids[(i / 7 + t) % 8];
        add_sample(&m, t, tm[i], st[i]);
    }
    ml_calls c;
    ml_calls_init(&c);
    ml_calls_add(&c, &m, P);
    ml_run *r = fake_run(now[3]);
    ml_qrun q = {.run = r, .model = &m, .calls = &c, .period = (double)P / 1e6};
    int64_t windows[][2] = {{INT64_MIN, INT64_MAX}, {3000 * P / 10, 7000 * P / 10 + 123}};
    ref_entry *ref = ml_xcalloc(256, sizeof(ref_entry));
    for (size_t wi = 0; wi < 2; wi++) {
        size_t nref = reference(&m, th, tm, st, n, windows[wi][0], windows[wi][1], ref);
        ml_qwindow w = {.start = windows[wi][0], .end = windows[wi][1]};
        ml_ftree t;
        ml_ftree_build(&t, &q, &w);
        assert_int_equal(t.n - 1, nref); /* the same paths */
        int64_t root = 0, root_samples = 0;
        for (size_t i = 1; i < t.n; i++) {
            uint32_t path[8];
            size_t len = ml_ftree_path(&t, (uint32_t)i, path, 8);
            char key[128] = "";
            for (size_t k = 0; k < len; k++)
                snprintf(key + strlen(key), sizeof(key) - strlen(key), "/f%u", path[k]);
            size_t before = nref;
            ref_entry *e = ref_find(ref, &nref, key);
            assert_int_equal(nref, before); /* a path the samples have */
            assert_int_equal((int64_t)t.nodes[i].value, e->total);
            assert_int_equal((int64_t)t.nodes[i].self, e->self);
            /* Sample counts are exact, not time divided by a period. */
            assert_int_equal((int64_t)t.nodes[i].samples, e->samples);
            assert_int_equal((int64_t)t.nodes[i].self_samples, e->self_samples);
            if (len == 1) {
                root += e->total;
                root_samples += e->samples;
            }
        }
        assert_int_equal((int64_t)t.nodes[0].value, root);
        assert_int_equal((int64_t)t.nodes[0].samples, root_samples);
        /* Every sample of the window is in the tree or counted beside it. */
        int64_t in_window = 0, bare = 0;
        for (size_t i = 0; i < n; i++)
            if (tm[i] >= windows[wi][0] && tm[i] < windows[wi][1]) {
                in_window++;
                bare += st[i] == 0;
            }
        assert_int_equal((int64_t)t.no_stack, bare);
        assert_int_equal((int64_t)(t.nodes[0].samples + t.no_stack), in_window);
        ml_ftree_dispose(&t);
    }
    free(ref);
    free(th);
    free(st);
    free(tm);
    free(r);
    ml_calls_dispose(&c);
    ml_model_dispose(&m);
}

/* The walk reports stretches of constant call chain that tile the calls
 * of the window. */
typedef struct seg_sum {
    int64_t total;
    size_t n;
} seg_sum;

static void on_segment(void *arg, const uint32_t *funcs, size_t depth, int64_t start, int64_t end)
{
    (void)funcs;
    seg_sum *s = arg;
    assert_true(depth >= 1 && end > start);
    s->total += end - start;
    s->n++;
}

static void test_walk_segments(void **state)
{
    (void)state;
    ml_model m;
    model_with_frames(&m, NFRAMES);
    uint32_t s13[] = {1, 3}, s1[] = {1};
    uint32_t a = add_stack(&m, s13, 2), b = add_stack(&m, s1, 1);
    uint32_t seq[] = {a, a, b, a, 0, b};
    for (size_t i = 0; i < 6; i++)
        add_sample(&m, 1, (int64_t)i * P, seq[i]);
    ml_calls c;
    ml_calls_init(&c);
    ml_calls_add(&c, &m, P);
    seg_sum s = {0};
    ml_calls_walk(&c.threads[1], INT64_MIN, INT64_MAX, NULL, on_segment, &s);
    /* f1>f3 [0,2P), f1 [2P,3P), f1>f3 [3P,4P), (idle), f1 [5P,6P). */
    assert_int_equal(s.n, 4);
    assert_int_equal(s.total, 5 * P);
    s = (seg_sum){0};
    ml_calls_walk(&c.threads[1], P, 3 * P + 10, NULL, on_segment, &s);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.total, 2 * P + 10);
    ml_calls_dispose(&c);
    ml_model_dispose(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_call_of_n_periods),       cmocka_unit_test(test_splits),
        cmocka_unit_test(test_incremental_and_wide_values), cmocka_unit_test(test_level_of_detail),
        cmocka_unit_test(test_flamegraph_from_calls),       cmocka_unit_test(test_walk_segments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
