#include "fn_txlog.h"

#include <stdint.h>
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
    /* Full: merge the two neighbours (with the same lost mark) sent closest together in time,
     * until there is room. The merged entry keeps the later time, which only delays a loss
     * verdict on the earlier part, by that small difference. */
    while (l->n + extra > l->cap) {
        uint32_t best = UINT32_MAX;
        uint64_t gap = UINT64_MAX;
        for (uint32_t i = 0; i + 1 < l->n; i++) {
            const struct fn_txlog_ent *a = &l->e[i], *b = &l->e[i + 1];
            uint64_t d = a->sent > b->sent ? a->sent - b->sent : b->sent - a->sent;
            if (a->lost == b->lost && a->sacked == b->sacked && d < gap) {
                gap = d;
                best = i;
            }
        }
        if (best == UINT32_MAX)
            return -1;
        struct fn_txlog_ent *a = &l->e[best], *b = &l->e[best + 1];
        a->end = b->end;
        if (b->sent > a->sent)
            a->sent = b->sent;
        a->rexmit |= b->rexmit;
        memmove(b, b + 1, sizeof(*b) * (l->n - best - 2));
        l->n--;
    }
    return 0;
}

/* The entry seq falls strictly inside, or l->n. */
static uint32_t inside(const struct fn_txlog *l, uint32_t seq) {
    for (uint32_t i = 0; i < l->n; i++) {
        if (fn_seq_le(seq, l->e[i].start))
            break;
        if (fn_seq_lt(seq, l->e[i].end))
            return i;
    }
    return l->n;
}

/* Ensure an entry boundary at seq (when seq falls inside an entry). */
static int split_at(struct fn_txlog *l, uint32_t seq) {
    uint32_t i = inside(l, seq);
    if (i == l->n)
        return 0;
    if (reserve(l, 1) < 0)
        return -1;
    /* Making room may have merged entries: look again. */
    i = inside(l, seq);
    if (i == l->n)
        return 0;
    memmove(&l->e[i + 1], &l->e[i], sizeof(l->e[0]) * (l->n - i));
    l->n++;
    l->e[i].end = seq;
    l->e[i + 1].start = seq;
    return 0;
}

int fn_txlog_sent(struct fn_txlog *l, uint32_t start, uint32_t end, uint64_t now) {
    if (!fn_seq_lt(start, end))
        return 0;
    uint32_t tail = l->n ? l->e[l->n - 1].end : start;
    if (l->n == 0 || fn_seq_ge(start, tail)) {
        /* New data. A run sent within FN_TXLOG_JOIN_US of the entry's first send joins it,
         * keeping that first time: RACK's reordering window is 1 ms at least, so the
         * difference does not matter, and a flow clocked out by one ACK at a time would
         * otherwise need an entry per segment. The time is not advanced, so an entry spans
         * at most FN_TXLOG_JOIN_US of sending and a steady stream does not chain into one
         * entry of megabytes, which would make every RACK verdict that coarse. */
        struct fn_txlog_ent *last = l->n ? &l->e[l->n - 1] : NULL;
        if (last && last->end == start && now - last->sent <= FN_TXLOG_JOIN_US && !last->lost && !last->rexmit &&
            !last->sacked) {
            last->end = end;
            return 0;
        }
        if (reserve(l, 1) < 0) {
            /* No memory for an entry: extend the last one, which only delays a verdict on
             * it (its time becomes this send's). A SACKed one forgets its SACK first: the
             * new data is not held, and resending what was is the safe mistake. */
            if (l->n) {
                struct fn_txlog_ent *e = &l->e[l->n - 1];
                if (e->sacked) {
                    l->sacked -= e->end - e->start;
                    e->sacked = 0;
                }
                e->end = end;
                e->sent = now;
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
    while (k < l->n && fn_seq_le(l->e[k].end, una)) {
        if (l->e[k].sacked)
            l->sacked -= l->e[k].end - l->e[k].start;
        k++;
    }
    if (k) {
        memmove(l->e, l->e + k, sizeof(*l->e) * (l->n - k));
        l->n -= k;
    }
    if (l->n && fn_seq_lt(l->e[0].start, una)) {
        if (l->e[0].sacked)
            l->sacked -= una - l->e[0].start;
        l->e[0].start = una;
    }
}

void fn_txlog_mark_lost(struct fn_txlog *l, uint32_t start, uint32_t end) {
    /* Without memory to split, whole overlapping entries are marked: a needless resend beats a
     * missed one. */
    split_at(l, start);
    split_at(l, end);
    for (uint32_t i = 0; i < l->n; i++)
        if (fn_seq_lt(l->e[i].start, end) && fn_seq_gt(l->e[i].end, start) && !l->e[i].sacked)
            l->e[i].lost = 1;
}

uint32_t fn_txlog_sack(struct fn_txlog *l, uint32_t start, uint32_t end) {
    if (!l->n || !fn_seq_lt(start, end))
        return 0;
    /* Clip to the log: a block beyond snd_max or below snd_una says nothing new. */
    if (fn_seq_lt(start, l->e[0].start))
        start = l->e[0].start;
    if (fn_seq_gt(end, l->e[l->n - 1].end))
        end = l->e[l->n - 1].end;
    if (!fn_seq_lt(start, end))
        return 0;
    /* Entry boundaries at both ends, unless the end falls in an entry already SACKed. */
    uint32_t i = inside(l, start);
    if (i == l->n || !l->e[i].sacked)
        split_at(l, start);
    i = inside(l, end);
    if (i == l->n || !l->e[i].sacked)
        split_at(l, end);
    uint32_t got = 0, lo = l->n, hi = 0;
    for (uint32_t k = 0; k < l->n; k++) {
        struct fn_txlog_ent *e = &l->e[k];
        if (!fn_seq_lt(e->start, end))
            break;
        /* Wholly inside only: where a split failed, the partly covered entry stays unSACKed. */
        if (e->sacked || fn_seq_lt(e->start, start) || fn_seq_gt(e->end, end))
            continue;
        e->sacked = 1;
        e->lost = 0;
        got += e->end - e->start;
        if (lo == l->n)
            lo = k;
        hi = k;
    }
    if (!got)
        return 0;
    l->sacked += got;
    /* Join the SACKed run around [lo, hi] into one entry. */
    if (lo > 0)
        lo--;
    if (hi + 1 < l->n)
        hi++;
    uint32_t w = lo;
    for (uint32_t k = lo; k <= hi; k++) {
        if (w > lo && l->e[w - 1].sacked && l->e[k].sacked) {
            struct fn_txlog_ent *a = &l->e[w - 1];
            a->end = l->e[k].end;
            if (l->e[k].sent > a->sent)
                a->sent = l->e[k].sent;
            a->rexmit |= l->e[k].rexmit;
            continue;
        }
        l->e[w++] = l->e[k];
    }
    if (w <= hi) {
        memmove(&l->e[w], &l->e[hi + 1], sizeof(l->e[0]) * (l->n - hi - 1));
        l->n -= hi + 1 - w;
    }
    return got;
}

void fn_txlog_clear_sacked(struct fn_txlog *l) {
    for (uint32_t i = 0; i < l->n; i++)
        l->e[i].sacked = 0;
    l->sacked = 0;
}

void fn_txlog_rxt_note(struct fn_txlog *l, uint32_t start, uint32_t end) {
    if (!l->rxt) {
        l->rxt = calloc(FN_TXLOG_RXT, sizeof(*l->rxt));
        if (!l->rxt)
            return;
    }
    uint32_t *r = l->rxt[l->rxt_next++ % FN_TXLOG_RXT];
    r[0] = start;
    r[1] = end;
}

int fn_txlog_rxt_match(struct fn_txlog *l, uint32_t start, uint32_t end) {
    if (!l->rxt)
        return 0;
    for (int i = 0; i < FN_TXLOG_RXT; i++) {
        uint32_t *r = l->rxt[i];
        if (r[0] != r[1] && fn_seq_lt(start, r[1]) && fn_seq_gt(end, r[0])) {
            r[0] = r[1] = 0;
            return 1;
        }
    }
    return 0;
}

void fn_txlog_free(struct fn_txlog *l) {
    free(l->e);
    free(l->rxt);
    memset(l, 0, sizeof(*l));
}

void fn_txlog_clear_lost(struct fn_txlog *l) {
    for (uint32_t i = 0; i < l->n; i++)
        l->e[i].lost = 0;
}
