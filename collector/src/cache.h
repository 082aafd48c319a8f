/*
 * The local cache of remote runs, seen from HTTP: a request for a run
 * whose recording is only in the bucket waits (without blocking the
 * loop) while s3_sync.c fetches it into the run's directory, then is
 * handled again from the start. Loop thread only.
 */
#ifndef ML_COLLECTOR_CACHE_H
#define ML_COLLECTOR_CACHE_H

#include <stdbool.h>

#include <h2o.h>

#include "collector.h"

/* When r must be fetched first: starts (or joins) the fetch, keeps req,
 * and returns true; once the recording is cached self->on_req(self, req)
 * runs again (or a 502 is sent when S3 failed). A request whose client
 * went away meanwhile is dropped safely. False: handle req now. */
bool ml_cache_defer(ml_collector *c, ml_run *r, h2o_req_t *req, h2o_handler_t *self);

#endif
