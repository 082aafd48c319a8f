/*
 * Run identity: validation of the names that become directory names under
 * the data dir, so that no client input can escape it.
 *
 *   run id   = "<label>/<stamp>"
 *   label    = [A-Za-z0-9._-]{1,100}, but never "." or ".."
 *   stamp    = <timestamp> or <timestamp>-N (N = 2, 3, ... on collisions)
 *   timestamp= \d{4}_\d\d_\d\d_\d\d_\d\d_\d\d (YYYY_MM_DD_HH_MM_SS)
 *
 * Pure functions, any thread.
 */
#ifndef ML_COLLECTOR_RUNID_H
#define ML_COLLECTOR_RUNID_H

#include <stdbool.h>
#include <stddef.h>

#define ML_LABEL_MAX 100
#define ML_TIMESTAMP_LEN 19
/* A stamp is a timestamp plus an optional "-N" (N below 10^6). */
#define ML_STAMP_MAX (ML_TIMESTAMP_LEN + 8)
/* Longest run id, without the NUL. */
#define ML_RUN_ID_MAX (ML_LABEL_MAX + 1 + ML_STAMP_MAX)

/* Labels (and team names): [A-Za-z0-9._-]{1,100}, not "." nor "..". */
bool ml_label_valid(const char *s);

/* YYYY_MM_DD_HH_MM_SS, digits only where digits belong. */
bool ml_timestamp_valid(const char *s);

/* A timestamp, optionally followed by "-N" with N >= 2 and no leading zero. */
bool ml_stamp_valid(const char *s);

/* A client's run uid: [A-Za-z0-9_-]{8,64} (the client sends 32 hex chars;
 * the collector only needs a safe, bounded map key). */
bool ml_uid_valid(const char *s);

/* Splits "<label>/<stamp>" (exactly len bytes, not necessarily
 * NUL-terminated) into label (ML_LABEL_MAX + 1 bytes) and stamp
 * (ML_STAMP_MAX + 1 bytes). Returns 0, or -EINVAL when id is not a valid
 * run id; the out buffers are written only on success. */
int ml_run_id_split(const char *id, size_t len, char *label, char *stamp);

#endif
