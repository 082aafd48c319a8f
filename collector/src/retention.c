#include "retention.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "collector.h"
#include "log.h"
#include "mem.h"

static bool removable(const ml_run *r)
{
    return r->status != ML_RUN_LIVE && r->live == NULL && !r->compacting && !r->uploading &&
           !r->fetching;
}

static int cmp_oldest(const void *a, const void *b)
{
    const ml_run *x = *(ml_run *const *)a, *y = *(ml_run *const *)b;
    if (x->start_unix_us != y->start_unix_us)
        return x->start_unix_us < y->start_unix_us ? -1 : 1;
    return strcmp(x->id, y->id);
}

size_t ml_retention_enforce(ml_collector *c)
{
    if (c->retain_days == 0 && c->retain_bytes == 0)
        return 0;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    int64_t now_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    int64_t cutoff = c->retain_days ? now_us - (int64_t)c->retain_days * 86400 * 1000000 : 0;
    size_t n = ml_index_count(&c->index), ndel = 0;
    ml_run **runs = ml_xmalloc((n + 1) * sizeof(ml_run *));
    ml_run **del = ml_xmalloc((n + 1) * sizeof(ml_run *));
    size_t k = 0;
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(&c->index.by_id, pos, &v)) != 0;)
        runs[k++] = v;
    qsort(runs, k, sizeof(ml_run *), cmp_oldest);
    /* Per team: bytes kept so far, newest first, so the oldest overflow. */
    ml_map teams;
    ml_map_init(&teams);
    typedef struct team_bytes {
        char name[ML_LABEL_MAX + 1];
        uint64_t bytes;
    } team_bytes;
    for (size_t i = k; i > 0; i--) {
        ml_run *r = runs[i - 1];
        team_bytes *t = ml_map_get(&teams, r->team);
        if (t == NULL) {
            t = ml_xcalloc(1, sizeof(*t));
            snprintf(t->name, sizeof(t->name), "%s", r->team);
            ml_map_put(&teams, t->name, t);
        }
        bool old = cutoff && r->start_unix_us < cutoff;
        bool over = c->retain_bytes && t->bytes + r->stored_bytes > c->retain_bytes;
        if ((old || over) && removable(r))
            del[ndel++] = r;
        else
            t->bytes += r->stored_bytes;
    }
    for (size_t pos = 0; (pos = ml_map_next(&teams, pos, &v)) != 0;)
        free(v);
    ml_map_dispose(&teams);
    for (size_t i = 0; i < ndel; i++) {
        ml_run *r = del[i];
        ml_info("retention: deleting run %s of team %s (%s)", r->id, r->team,
                cutoff && r->start_unix_us < cutoff ? "older than --retain-days"
                                                    : "over --retain-bytes");
        ml_collector_delete_run(c, r);
    }
    free(runs);
    free(del);
    return ndel;
}
