/*
 * A growable bitset of ids (1 .. ML_ID_MAX): which strings, frames, stacks
 * and threads a run has defined. Header-only; loop thread.
 */
#ifndef ML_COLLECTOR_IDSET_H
#define ML_COLLECTOR_IDSET_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

/* Largest id a run may define in any table (the client counts from 1 up
 * without gaps; 64 Mi distinct stacks is far beyond any real run). */
#define ML_ID_MAX (1u << 26)

typedef struct ml_idset {
    uint64_t *words;
    size_t nwords;
    uint32_t count; /* ids set */
} ml_idset;

static inline bool ml_idset_has(const ml_idset *s, uint32_t id)
{
    size_t w = id / 64;
    return w < s->nwords && (s->words[w] >> (id % 64) & 1);
}

/* Adds id (<= ML_ID_MAX); returns true when it was not there before. */
static inline bool ml_idset_add(ml_idset *s, uint32_t id)
{
    size_t w = id / 64;
    if (w >= s->nwords) {
        size_t n = s->nwords ? s->nwords : 4;
        while (n <= w)
            n *= 2;
        s->words = ml_xrealloc(s->words, n * sizeof(uint64_t));
        memset(s->words + s->nwords, 0, (n - s->nwords) * sizeof(uint64_t));
        s->nwords = n;
    }
    uint64_t bit = (uint64_t)1 << (id % 64);
    if (s->words[w] & bit)
        return false;
    s->words[w] |= bit;
    s->count++;
    return true;
}

static inline void ml_idset_dispose(ml_idset *s)
{
    free(s->words);
    memset(s, 0, sizeof(*s));
}

#endif
