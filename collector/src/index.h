/*
 * The index: every run of this collector in memory, by id and by the
 * client's uid, rebuilt at start-up from the run.json files of the store.
 * Listing filters with a PCRE2 regex over "<id> <host> <user>" under a
 * match limit, so no pattern can stall the loop. Loop thread only.
 */
#ifndef ML_COLLECTOR_INDEX_H
#define ML_COLLECTOR_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "map.h"
#include "run.h"
#include "store.h"

/* Longest filter pattern accepted. */
#define ML_FILTER_MAX 1000
/* pcre2 match limit (backtracking steps) per run tested. */
#define ML_FILTER_MATCH_LIMIT 100000

typedef struct ml_index {
    ml_map by_id;  /* id -> ml_run (owned) */
    ml_map by_uid; /* uid -> the same ml_run */
    /* Every run newest first, rebuilt on the first listing after a change
     * (start time and id never change, so order only changes by adds
     * and removes); NULL when stale. */
    ml_run **sorted;
} ml_index;

void ml_index_init(ml_index *x);

/* Frees every run. Their live state must have been released. */
void ml_index_dispose(ml_index *x);

/* Adds r and takes ownership. Returns 0, or -EEXIST when the id or the uid
 * is already indexed (r stays the caller's). */
int ml_index_add(ml_index *x, ml_run *r);

/* Unlinks r (the caller then owns it). */
void ml_index_remove(ml_index *x, ml_run *r);

/* The run with this id / uid, or NULL. Borrowed. */
ml_run *ml_index_find(const ml_index *x, const char *id);
ml_run *ml_index_find_uid(const ml_index *x, const char *uid);

/* Number of runs. */
size_t ml_index_count(const ml_index *x);

/* Adds every run of the store: from its index log (store.h) when that is
 * present and sound, else by scanning every run.json, after which the log
 * is rewritten. A log with many superseded lines is compacted. Leaves the
 * log open for appending. Returns the number added or -errno. */
int ml_index_load(ml_index *x, ml_store *s);

typedef struct ml_filter ml_filter;

/* Compiles a filter pattern (PCRE2, UTF-8). Returns 0, or -EINVAL with a
 * message in err (errlen bytes) for a bad or too long pattern. *out is
 * owned by the caller (ml_filter_free). */
int ml_filter_compile(const char *pattern, ml_filter **out, char *err, size_t errlen);

void ml_filter_free(ml_filter *f);

/* 1 when "<id> <host> <user>" of r matches, 0 when not or when the match
 * limit was hit. */
int ml_filter_match(ml_filter *f, const ml_run *r);

/* The runs that match f (NULL: all), newest first (by start time, then
 * id), at most limit (0: no limit). *out is a malloc'd array of borrowed
 * pointers, owned by the caller. Returns the count. */
size_t ml_index_list(const ml_index *x, ml_filter *f, size_t limit, ml_run ***out);

/* A listing: every condition set must hold. Strings are borrowed. */
typedef struct ml_index_query {
    ml_filter *filter;          /* regex over "<id> <host> <user>", or NULL */
    const char *team, *label;   /* exact, or NULL */
    const char *host, *user;    /* exact, or NULL */
    int status;                 /* an ml_run_status, or -1 for any */
    int64_t since_us, until_us; /* start time in [since, until); 0: unbounded */
    size_t offset, limit;       /* the page; limit 0: to the end */
    char *owned[5];             /* strings ml_index_query_parse() allocated */
} ml_index_query;

/* Fills q with "everything" (no condition, whole list). */
void ml_index_query_init(ml_index_query *q);

/* Fills q from a URL query string (without "?"): filter, team, label,
 * host, user, status (live|complete|incomplete), since and until (unix
 * seconds), offset, limit. Returns 0, or -EINVAL with a message in err.
 * Either way release q with ml_index_query_dispose(). */
int ml_index_query_parse(ml_index_query *q, const char *query, size_t len, char *err,
                         size_t errlen);

/* Frees what ml_index_query_parse() allocated. */
void ml_index_query_dispose(ml_index_query *q);

/* The page [offset, offset + limit) of the runs matching q, newest first.
 * *out is a malloc'd array of borrowed pointers owned by the caller;
 * *total (may be NULL) gets the number of matches before paging. Returns
 * the page's length. */
size_t ml_index_query_run(const ml_index *x, const ml_index_query *q, ml_run ***out, size_t *total);

#endif
