/*
 * Run identity: validation of the names that become directory names under
 * the data dir, so that no client input can escape it.
 *
 *   run id   = "<label>/<stamp>"
 *   label    = [A-Za-z0-9._-]{1,100}, but never "." or ".."
 *   stamp    = <timestamp> or <timestamp>-N (N = 2, 3, ... on collisions)
 *
 * Several collectors over one bucket must never pick the same stamp for
 * the same label (they would write the same S3 keys). Each of them has a
 * distinct collector id K in 1..ML_COLLECTOR_ID_MAX and draws its stamps
 * from its own residue class of N modulo 100: collector K's n-th choice
 * is N = K + 100 (n - 1), where N = 1 means the bare timestamp. So
 * collector 1 uses ts, ts-101, ts-201, ...; collector 2 uses ts-2,
 * ts-102, ...; collector 7 uses ts-7, ts-107, ... The format stays
 * "label/YYYY_MM_DD_HH_MM_SS[-N]", and no coordination is needed. K = 0
 * (a collector alone, no bucket) keeps the plain sequence ts, ts-2, ts-3.
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

/* Largest collector id (ids 1..99 partition the "-N" suffixes). */
#define ML_COLLECTOR_ID_MAX 99

/* Writes the n-th (n >= 1) candidate stamp of collector collector_id
 * (0..ML_COLLECTOR_ID_MAX, see above) for timestamp into out (at least
 * ML_STAMP_MAX + 1 bytes). Returns 0, or -ERANGE when n is past the last
 * candidate (N would exceed 6 digits) or an argument is out of range. */
int ml_stamp_make(char *out, size_t size, const char *timestamp, unsigned collector_id, unsigned n);

/* A collector id for a host name when none is configured: the ordinal of
 * a Kubernetes StatefulSet pod ("name-3" gives 4) when it is below
 * ML_COLLECTOR_ID_MAX, else 1 + a hash of the name modulo
 * ML_COLLECTOR_ID_MAX (distinct names may then collide: configure ids). */
unsigned ml_collector_id_from_host(const char *host);

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
