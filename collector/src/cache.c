#include "cache.h"

#include <stdlib.h>
#include <string.h>

#include "http_internal.h"
#include "log.h"
#include "mem.h"
#include "s3_sync.h"

typedef struct waiter waiter;

/* Lives in the request's pool: disposed when h2o frees the request. */
typedef struct waiter_ref {
    waiter *w;
} waiter_ref;

struct waiter {
    h2o_req_t *req; /* NULL once h2o disposed of it (client gone) */
    h2o_handler_t *self;
    waiter_ref *ref;
};

static void on_req_disposed(void *p)
{
    waiter_ref *ref = p;
    if (ref->w)
        ref->w->req = NULL;
}

static void on_fetched(void *arg, int rv)
{
    waiter *w = arg;
    if (w->req) {
        w->ref->w = NULL; /* the request outlives this waiter */
        if (rv == 0)
            w->self->on_req(w->self, w->req);
        else
            ml_http_send_error(w->req, 502, "cannot fetch the run from S3: %s", strerror(-rv));
    }
    free(w);
}

bool ml_cache_defer(ml_collector *c, ml_run *r, h2o_req_t *req, h2o_handler_t *self)
{
    if (!ml_s3sync_needs_fetch(c, r))
        return false;
    waiter *w = ml_xcalloc(1, sizeof(*w));
    w->req = req;
    w->self = self;
    w->ref = h2o_mem_alloc_shared(&req->pool, sizeof(waiter_ref), on_req_disposed);
    w->ref->w = w;
    if (ml_s3sync_fetch(c, r, on_fetched, w) != 0) {
        w->ref->w = NULL;
        free(w);
        return false; /* served from what is on disk: the query reports it missing */
    }
    return true;
}
