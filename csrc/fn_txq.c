#include "fn_txq.h"

#include <stdlib.h>
#include <string.h>

#define ALIGN8(x) (((x) + 7u) & ~7u)

int fn_txq_init(struct fn_txq *q, uint32_t cap, uint32_t cap_d, uint32_t headroom) {
    memset(q, 0, sizeof(*q));
    q->buf = malloc(cap);
    q->d = calloc(cap_d, sizeof(*q->d));
    if (!q->buf || !q->d) {
        free(q->buf);
        free(q->d);
        q->buf = NULL;
        q->d = NULL;
        return -1;
    }
    q->cap = cap;
    q->cap_d = cap_d;
    q->headroom = ALIGN8(headroom);
    return 0;
}

void fn_txq_free(struct fn_txq *q) {
    free(q->buf);
    free(q->d);
    q->buf = NULL;
    q->d = NULL;
}

int fn_txq_room(const struct fn_txq *q, uint32_t max_len) {
    return q->nd < q->cap_d && (uint64_t)q->used + q->headroom + max_len <= q->cap;
}

int fn_txq_flush(struct fn_txq *q) {
    if (fn_txq_pending(q) == 0)
        return 0;
    q->flushes++;
    return q->flush ? q->flush(q->flush_ctx, q) : -1;
}

static int make_room(struct fn_txq *q, uint64_t need, uint32_t ndesc) {
    if (q->nd + ndesc <= q->cap_d && q->used + need <= q->cap)
        return 1;
    q->full++;
    if (fn_txq_flush(q) < 0 && fn_txq_pending(q))
        return 0;
    if (fn_txq_pending(q) == 0) {
        q->nd = q->head = 0;
        q->used = 0;
    }
    return q->nd + ndesc <= q->cap_d && q->used + need <= q->cap;
}

uint8_t *fn_txq_reserve(struct fn_txq *q, uint32_t max_len) {
    uint64_t need = (uint64_t)q->headroom + ALIGN8(max_len);
    if (need > q->cap || !make_room(q, need, 1))
        return NULL;
    return q->buf + q->used + q->headroom;
}

uint8_t *fn_txq_reserve_run(struct fn_txq *q, uint32_t k, uint32_t max_len, uint32_t *stride) {
    uint32_t st = q->headroom + ALIGN8(max_len);
    uint64_t need = (uint64_t)st * k;
    if (k == 0 || need > q->cap || k > q->cap_d || !make_room(q, need, k))
        return NULL;
    *stride = st;
    return q->buf + q->used + q->headroom;
}

struct fn_txd *fn_txq_commit(struct fn_txq *q, uint8_t *p, uint32_t len) {
    struct fn_txd *d = &q->d[q->nd++];
    memset(d, 0, sizeof(*d));
    d->off = (uint32_t)(p - q->buf);
    d->len = len;
    q->used = d->off + ALIGN8(len);
    q->frames++;
    q->bytes += len;
    return d;
}

void fn_txq_consumed(struct fn_txq *q, uint32_t n) {
    q->head += n;
    if (q->head >= q->nd) {
        q->head = q->nd = 0;
        q->used = 0;
    }
}
