/*
 * Retention: optional limits on what a collector keeps, by age (runs
 * started more than retain_days ago) and by bytes per team (the oldest
 * finished runs go first until the team's stored_bytes fit). Enforced by
 * the housekeeping timer; deleted runs go everywhere they are stored
 * (the bucket too). Live, compacting and uploading runs are never
 * removed. Loop thread only.
 */
#ifndef ML_COLLECTOR_RETENTION_H
#define ML_COLLECTOR_RETENTION_H

#include <stddef.h>

typedef struct ml_collector ml_collector;

/* Deletes what the limits of c allow no longer. Returns the number of
 * runs deleted. */
size_t ml_retention_enforce(ml_collector *c);

#endif
