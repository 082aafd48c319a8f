/*
 * A string-keyed hash map (open addressing, linear probing, tombstones).
 * Keys are borrowed: each key must stay valid and unchanged while it is in
 * the map (the collector's keys live in the values they index). Not
 * thread-safe: the collector uses its maps from the loop thread only.
 */
#ifndef ML_COLLECTOR_MAP_H
#define ML_COLLECTOR_MAP_H

#include <stddef.h>

typedef struct ml_map_slot ml_map_slot;

typedef struct ml_map {
    ml_map_slot *slots;
    size_t cap;  /* a power of two, or 0 */
    size_t len;  /* live entries */
    size_t used; /* live entries plus tombstones */
} ml_map;

/* An empty map; no allocation until the first put. */
void ml_map_init(ml_map *m);

/* Frees the table (not the keys or values). */
void ml_map_dispose(ml_map *m);

/* The value for key, or NULL. */
void *ml_map_get(const ml_map *m, const char *key);

/* Sets key to value (value must not be NULL), replacing any old value. */
void ml_map_put(ml_map *m, const char *key, void *value);

/* Removes key; returns its value, or NULL when it was absent. */
void *ml_map_remove(ml_map *m, const char *key);

/* Iteration: start with pos = 0; returns the next position (> 0) and sets
 * *value, or 0 when done. The map must not change during the iteration. */
size_t ml_map_next(const ml_map *m, size_t pos, void **value);

#endif
