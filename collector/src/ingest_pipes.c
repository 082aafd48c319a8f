#include "ingest_pipes.h"

#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "mem.h"

#define PIPES_MIN_CAP 64

void ml_pipes_init(ml_pipes *p)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    p->cap = PIPES_MIN_CAP;
    p->slots = ml_xcalloc(p->cap, sizeof(ml_pipe_entry));
}

void ml_pipes_dispose(ml_pipes *p)
{
    pthread_mutex_destroy(&p->mu);
    free(p->slots);
    p->slots = NULL;
}

uint64_t ml_pipes_now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static size_t home(const ml_pipes *p, uint32_t id)
{
    return (size_t)(id * 2654435761u) & (p->cap - 1);
}

/* The slot holding id, or the empty slot where it would go. Locked. */
static size_t find_locked(const ml_pipes *p, uint32_t id)
{
    size_t i = home(p, id);
    while (p->slots[i].id != 0 && p->slots[i].id != id)
        i = (i + 1) & (p->cap - 1);
    return i;
}

static void grow_locked(ml_pipes *p)
{
    ml_pipe_entry *old = p->slots;
    size_t oldcap = p->cap;
    p->cap *= 2;
    p->slots = ml_xcalloc(p->cap, sizeof(ml_pipe_entry));
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].id != 0)
            p->slots[find_locked(p, old[i].id)] = old[i];
    free(old);
}

void ml_pipes_add(ml_pipes *p, uint32_t id, uint64_t now_ms)
{
    pthread_mutex_lock(&p->mu);
    if (2 * (p->n + 1) > p->cap)
        grow_locked(p);
    size_t i = find_locked(p, id);
    if (p->slots[i].id == 0)
        p->n++;
    p->slots[i] = (ml_pipe_entry){id, now_ms};
    pthread_mutex_unlock(&p->mu);
}

void ml_pipes_touch(ml_pipes *p, uint32_t id, uint64_t now_ms)
{
    pthread_mutex_lock(&p->mu);
    size_t i = find_locked(p, id);
    if (p->slots[i].id == id && id != 0)
        p->slots[i].last_ms = now_ms;
    pthread_mutex_unlock(&p->mu);
}

/* Backward-shift deletion keeps every probe chain unbroken without
 * tombstones: each later entry of the cluster that may move into the
 * hole does. */
void ml_pipes_remove(ml_pipes *p, uint32_t id)
{
    pthread_mutex_lock(&p->mu);
    size_t i = find_locked(p, id);
    if (id == 0 || p->slots[i].id != id) {
        pthread_mutex_unlock(&p->mu);
        return;
    }
    size_t mask = p->cap - 1, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (p->slots[j].id == 0)
            break;
        size_t h = home(p, p->slots[j].id);
        /* j's entry may fill the hole at i when its home is not in (i, j]. */
        if (((j - h) & mask) >= ((j - i) & mask)) {
            p->slots[i] = p->slots[j];
            i = j;
        }
    }
    p->slots[i] = (ml_pipe_entry){0, 0};
    p->n--;
    pthread_mutex_unlock(&p->mu);
}

size_t ml_pipes_expired(ml_pipes *p, uint64_t now_ms, uint64_t idle_ms, uint32_t *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->cap && n < max; i++) {
        ml_pipe_entry *e = &p->slots[i];
        if (e->id != 0 && now_ms - e->last_ms >= idle_ms && now_ms >= e->last_ms) {
            out[n++] = e->id;
            e->last_ms = now_ms;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}
