#include "fn_txlog.h"

#include <stdlib.h>
#include <string.h>

#include "fn_seq.h"

static int reserve(struct fn_txlog *l, uint32_t extra) {
    if (l->n + extra <= l->cap)
        return 0;
    if (l->cap < FN_TXLOG_MAX) {
        uint32_t cap = l->cap ? l->cap * 2 : 32;
        while (cap < l->n + extra)
            cap *= 2;
        if (cap > FN_TXLOG_MAX)
            cap = FN_TXLOG_MAX;
        struct fn_txlog_ent *e = realloc(l->e, sizeof(*e) * cap);
        if (!e)
            return -1;
        l->e = e;
        l->cap = cap;
        if (l->n + extra <= l->cap)
            return 0;
    }
    /* Full: merge neighbours with the same lost mark, oldest first, until there is room. */
    uint32_t o = 0;
    for (uint32_t i = 0; i < l->n; i++) {
        if (o && l->n - (i - o) + extra > l->cap && l->e[o - 1].lost == l->e[i].lost) {
            struct fn_txlog_ent *p = &l->e[o - 1];
            p->end = l->e[i].end;
            if (l->e[i].sent > p->sent)
                p->sent = l->e[i].sent;
            p->rexmit |= l->e[i].rexmit;
            continue;
        }
        l->e[o++] = l->e[i];
    }
    l->n = o;
    return l->n + extra <= l->cap ? 0 : -1;
}

/* Ensure an entry boundary at seq (when seq falls inside an entry). */
static int split_at(struct fn_txlog *l, uint32_t seq) {
    for (uint32_t i = 0; i < l->n; i++) {
        struct fn_txlog_ent *e = &l->e[i];
        if (fn_seq_lt(seq, e->end) && fn_seq_gt(seq, e->start)) {
            if (reserve(l, 1) < 0)
                return -1;
            e = &l->e[i];
            memmove(&l->e[i + 1], &l->e[i], sizeof(*e) * (l->n - i));
            l->n++;
            l->e[i].end = seq;
            l->e[i + 1].start = seq;
            return 0;
        }
        if (fn_seq_le(seq, e->start))
            return 0;
    }
    return 0;
}

int fn_txlog_sent(struct fn_txlog *l, uint32_t start, uint32_t end, uint64_t now) {
    if (!fn_seq_lt(start, end))
        return 0;
    uint32_t tail = l->n ? l->e[l->n - 1].end : start;
    if (l->n == 0 || fn_seq_ge(start, tail)) {
        /* New data. A run sent at the same moment as the last one joins it. */
        if (l->n && l->e[l->n - 1].end == start && l->e[l->n - 1].sent == now && !l->e[l->n - 1].lost &&
            !l->e[l->n - 1].rexmit) {
            l->e[l->n - 1].end = end;
            return 0;
        }
        if (reserve(l, 1) < 0) {
            /* No memory for an entry: extend the last one, which only delays a verdict on
             * it (its time becomes this send's). */
            if (l->n) {
                l->e[l->n - 1].end = end;
                l->e[l->n - 1].sent = now;
            }
            return -1;
        }
        struct fn_txlog_ent *e = &l->e[l->n++];
        memset(e, 0, sizeof(*e));
        e->start = start;
        e->end = end;
        e->sent = now;
        return 0;
    }
    if (fn_seq_gt(end, tail)) { /* a retransmission that reaches into new data */
        if (fn_txlog_sent(l, tail, end, now) < 0)
            return -1;
        end = tail;
    }
    /* Without memory to split, the whole overlapping entries take the new time. */
    int exact = split_at(l, start) == 0 && split_at(l, end) == 0;
    for (uint32_t i = 0; i < l->n; i++) {
        struct fn_txlog_ent *e = &l->e[i];
        if (fn_seq_lt(e->start, end) && fn_seq_gt(e->end, start)) {
            e->sent = now;
            e->lost = 0;
            e->rexmit = 1;
        }
    }
    return exact ? 0 : -1;
}

void fn_txlog_acked(struct fn_txlog *l, uint32_t una) {
    uint32_t k = 0;
    while (k < l->n && fn_seq_le(l->e[k].end, una))
        k++;
    if (k) {
        memmove(l->e, l->e + k, sizeof(*l->e) * (l->n - k));
        l->n -= k;
    }
    if (l->n && fn_seq_lt(l->e[0].start, una))
        l->e[0].start = una;
}

void fn_txlog_mark_lost(struct fn_txlog *l, uint32_t start, uint32_t end) {
    /* Without memory to split, whole overlapping entries are marked: a needless resend beats a
     * missed one. */
    split_at(l, start);
    split_at(l, end);
    for (uint32_t i = 0; i < l->n; i++)
        if (fn_seq_lt(l->e[i].start, end) && fn_seq_gt(l->e[i].end, start))
            l->e[i].lost = 1;
}

void fn_txlog_free(struct fn_txlog *l) {
    free(l->e);
    memset(l, 0, sizeof(*l));
}

void fn_txlog_clear_lost(struct fn_txlog *l) {
    for (uint32_t i = 0; i < l->n; i++)
        l->e[i].lost = 0;
}
