#include "map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "mem.h"

/* A slot is empty (key NULL, value NULL), a tombstone (key NULL, value
 * TOMBSTONE) or live (key set). */
struct ml_map_slot {
    const char *key;
    void *value;
    uint64_t hash;
};

static char tombstone_mark;
#define TOMBSTONE ((void *)&tombstone_mark)

void ml_map_init(ml_map *m)
{
    memset(m, 0, sizeof(*m));
}

void ml_map_dispose(ml_map *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static uint64_t hash_key(const char *key)
{
    return XXH64(key, strlen(key), 0);
}

/* The slot holding key, or NULL. */
static ml_map_slot *find(const ml_map *m, const char *key, uint64_t h)
{
    if (m->cap == 0)
        return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        ml_map_slot *s = &m->slots[i];
        if (s->key == NULL && s->value == NULL)
            return NULL;
        if (s->key && s->hash == h && strcmp(s->key, key) == 0)
            return s;
    }
}

static void insert_new(ml_map *m, const char *key, void *value, uint64_t h)
{
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        ml_map_slot *s = &m->slots[i];
        if (s->key == NULL) {
            if (s->value == NULL)
                m->used++;
            s->key = key;
            s->value = value;
            s->hash = h;
            m->len++;
            return;
        }
    }
}

/* Keeps the load (with tombstones) at most 1/2 so probes stay short and an
 * empty slot always exists. */
static void reserve(ml_map *m)
{
    if ((m->used + 1) * 2 <= m->cap)
        return;
    ml_map_slot *old = m->slots;
    size_t old_cap = m->cap, cap = 16;
    while (cap < (m->len + 1) * 4)
        cap *= 2;
    m->slots = ml_xcalloc(cap, sizeof(*m->slots));
    m->cap = cap;
    m->len = m->used = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key)
            insert_new(m, old[i].key, old[i].value, old[i].hash);
    free(old);
}

void *ml_map_get(const ml_map *m, const char *key)
{
    ml_map_slot *s = find(m, key, hash_key(key));
    return s ? s->value : NULL;
}

void ml_map_put(ml_map *m, const char *key, void *value)
{
    uint64_t h = hash_key(key);
    ml_map_slot *s = find(m, key, h);
    if (s) {
        s->key = key;
        s->value = value;
        return;
    }
    reserve(m);
    insert_new(m, key, value, h);
}

void *ml_map_remove(ml_map *m, const char *key)
{
    ml_map_slot *s = find(m, key, hash_key(key));
    if (s == NULL)
        return NULL;
    void *v = s->value;
    s->key = NULL;
    s->value = TOMBSTONE;
    m->len--;
    return v;
}

size_t ml_map_next(const ml_map *m, size_t pos, void **value)
{
    for (size_t i = pos; i < m->cap; i++) {
        if (m->slots[i].key) {
            *value = m->slots[i].value;
            return i + 1;
        }
    }
    return 0;
}
