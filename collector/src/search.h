/*
 * Regular expressions for the query API (log?q=, search?q=): PCRE2 with a
 * match limit and a depth limit per subject, so no pattern can stall the
 * loop; a subject whose match hits a limit counts as not matching.
 * Loop thread only (one match data per regex).
 */
#ifndef ML_COLLECTOR_SEARCH_H
#define ML_COLLECTOR_SEARCH_H

#include <stdbool.h>
#include <stddef.h>

/* Longest pattern accepted. */
#define ML_REGEX_MAX 1000
/* Backtracking steps allowed per subject. */
#define ML_REGEX_MATCH_LIMIT 100000
#define ML_REGEX_DEPTH_LIMIT 10000

typedef struct ml_regex ml_regex;

/* Compiles pattern (PCRE2, UTF-8, case-sensitive). Returns 0 with *out
 * owned by the caller, or -EINVAL with a message in err (errlen bytes). */
int ml_regex_compile(const char *pattern, ml_regex **out, char *err, size_t errlen);

void ml_regex_free(ml_regex *re);

/* True when re matches somewhere in s (n bytes). */
bool ml_regex_match(ml_regex *re, const char *s, size_t n);

/* Subjects whose match was cut short by a limit, since compiling. */
size_t ml_regex_limit_hits(const ml_regex *re);

#endif
