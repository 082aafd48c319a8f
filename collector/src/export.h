/*
 * Exports of a run to the formats other tools read. Each returns a
 * malloc'd buffer (*len bytes) owned by the caller. Loop thread only.
 *
 *   speedscope  JSON, https://www.speedscope.app/file-format-schema.json:
 *               one "sampled" profile per thread, weights in seconds
 *   pprof       gzip-compressed perftools profile.proto: sample types
 *               samples/count and wall/nanoseconds, one location per
 *               frame (line), one function per function
 *   collapsed   "a;b;c 12" per line (flamegraph.pl, inferno), sample counts
 *   chrome      Trace Event JSON: one complete ("X") event per call, thread
 *               names as metadata events (chrome://tracing, Perfetto)
 */
#ifndef ML_COLLECTOR_EXPORT_H
#define ML_COLLECTOR_EXPORT_H

#include <stddef.h>

#include "query.h"

char *ml_export_speedscope(const ml_qrun *q, size_t *len);

/* NULL when compression failed (logged). */
char *ml_export_pprof(const ml_qrun *q, size_t *len);

char *ml_export_collapsed(const ml_qrun *q, size_t *len);

char *ml_export_chrome(const ml_qrun *q, size_t *len);

#endif
