/*
 * Packed requests waiting for the collector's acknowledgement, oldest first.
 * The byte count is what bounds the client's memory (cfg.buffer_max_bytes).
 */
#include <stdlib.h>

#include "internal.h"

ml__req *ml__req_new(ml__reqkind kind, uint8_t *data, size_t len, uint64_t call_id)
{
    ml__req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->kind = kind;
    r->data = data;
    r->len = len;
    r->call_id = call_id;
    return r;
}

void ml__req_free(ml__req *r)
{
    if (r == NULL)
        return;
    free(r->data);
    free(r);
}

void ml__queue_push(ml__queue *q, ml__req *r)
{
    r->next = NULL;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    q->count++;
    atomic_fetch_add(&q->bytes, r->len);
}

ml__req *ml__queue_pop(ml__queue *q)
{
    ml__req *r = q->head;
    if (r == NULL)
        return NULL;
    q->head = r->next;
    if (q->head == NULL)
        q->tail = NULL;
    q->count--;
    atomic_fetch_sub(&q->bytes, r->len);
    r->next = NULL;
    return r;
}

void ml__queue_drop_all(ml__queue *q, uint64_t *samples, uint64_t *logs)
{
    ml__req *r;
    while ((r = ml__queue_pop(q)) != NULL) {
        *samples += r->samples;
        *logs += r->logs;
        ml__req_free(r);
    }
}
