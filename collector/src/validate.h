/*
 * Batch validation: everything the collector checks before a batch is
 * journaled, so that stored data never refers to something undefined.
 *
 *  - definitions have ids in 1..ML_ID_MAX, and a new id is at most the
 *    number of ids the run's table will then hold plus ML_ID_SLACK: the
 *    client counts from 1 without gaps, and the collector's tables are
 *    arrays indexed by id, so a 300-byte batch defining id 60 million
 *    must not cost gigabytes when the run is compacted or queried;
 *  - references (frame name/file, stack frames, sample thread/stack, log
 *    thread/stack) name an id defined in this batch or an earlier stored
 *    one (0 is allowed where the protocol says "none");
 *  - sample columns have equal lengths (cpu_us may be empty: not measured);
 *  - log kinds are known;
 *  - every time (sample times from base_time and the deltas, status and
 *    log times, thread start and end) lies within +-ML_TIME_LIMIT_US, so
 *    that no sum of them overflows anywhere downstream.
 *
 * A batch that arrives after a gap (its seq is not acked_seq + 1) may refer
 * to definitions in the missing batch, so for it references are only
 * range-checked. Pure function over the run's live state; loop thread.
 */
#ifndef ML_COLLECTOR_VALIDATE_H
#define ML_COLLECTOR_VALIDATE_H

#include <stddef.h>

#include "microlog.pb-c.h"

#include "live.h"

/* How far a new id may run ahead of the number of ids its table holds
 * (room for batches missing after a gap, which may define ids too). */
#define ML_ID_SLACK (1u << 20)

/* Times are microseconds since the run's start: 2^52 us is 142 years. */
#define ML_TIME_LIMIT_US ((int64_t)1 << 52)

/* Returns 0 when b is acceptable for the run whose state is l, else
 * -EINVAL with a short English reason in err (errlen bytes). */
int ml_batch_validate(const ml_live *l, const Microlog__V1__Batch *b, char *err, size_t errlen);

#endif
