/* Property check of the transmission log (csrc/fn_txlog.c), run under the sanitizers by
 * test_csrc_sanitized.py, against a shadow model that keeps one record per sequence unit.
 *
 * Random operations as the engine makes them (new data appended, retransmissions anywhere in
 * the outstanding range, cumulative ACKs, SACKs, loss marks, D-SACK bookkeeping), across the
 * 2^32 wrap. After every operation the log must be sorted, disjoint, non-empty per entry and cover
 * exactly [una, max). Built with a tiny FN_TXLOG_MAX the log must also stay coherent while it
 * merges neighbours to make room (a merged entry may only report a later send time, a joined one
 * one at most FN_TXLOG_JOIN_US earlier); built with
 * the real one (and sends spaced beyond FN_TXLOG_JOIN_US), its send times, SACK and loss marks
 * must equal the model's. Always: nothing is SACKed that the guest does not hold, nothing
 * SACKed is lost, and the SACKed byte count adds up. Exit 0: no finding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fn_seq.h"
#include "fn_txlog.h"

#define SPAN 4096 /* model units (sequence numbers) outstanding at most */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

struct unit {
    uint64_t sent;
    uint8_t lost, sacked;
};

static struct unit model[SPAN]; /* model[(seq - una) ] for seq in [una, max) */
static uint32_t una, max;

static int fail(const char *what, uint32_t a, uint32_t b) {
    fprintf(stderr, "txlog: %s (%u, %u) una=%u max=%u\n", what, a, b, una, max);
    return 1;
}

static int check_structure(const struct fn_txlog *l) {
    if (una == max)
        return l->n == 0 ? 0 : fail("entries with nothing outstanding", l->n, 0);
    if (l->n == 0)
        return fail("empty log with data outstanding", 0, 0);
    if (l->e[0].start != una || l->e[l->n - 1].end != max)
        return fail("log does not span [una, max)", l->e[0].start, l->e[l->n - 1].end);
    for (uint32_t i = 0; i < l->n; i++) {
        if (!fn_seq_lt(l->e[i].start, l->e[i].end))
            return fail("empty or inverted entry", l->e[i].start, l->e[i].end);
        if (i + 1 < l->n && l->e[i].end != l->e[i + 1].start)
            return fail("entries not contiguous", l->e[i].end, l->e[i + 1].start);
    }
    return 0;
}

static int check_values(const struct fn_txlog *l, int exact) {
    uint32_t sacked = 0;
    for (uint32_t i = 0; i < l->n; i++) {
        const struct fn_txlog_ent *e = &l->e[i];
        if (e->sacked && e->lost)
            return fail("entry both SACKed and lost", e->start, e->end);
        if (e->sacked)
            sacked += e->end - e->start;
        for (uint32_t s = e->start; s != e->end; s++) {
            const struct unit *u = &model[s - una];
            if (e->sacked && !u->sacked)
                return fail("SACKed in the log, not held by the guest", s, 0);
            if (exact && e->sacked != u->sacked)
                return fail("SACK mark differs from the model", s, u->sacked);
            if (e->sacked)
                continue; /* a SACKed range's time and loss mark no longer matter */
            /* New data joining an entry keeps the entry's first time: up to
             * FN_TXLOG_JOIN_US older than the send it records. */
            if (e->sent + FN_TXLOG_JOIN_US < u->sent)
                return fail("entry older than a send it covers", s, (uint32_t)(u->sent - e->sent));
            if (exact && (e->sent != u->sent || e->lost != u->lost))
                return fail("send time or loss mark differs from the model", s, e->lost);
        }
    }
    if (sacked != l->sacked)
        return fail("SACKed byte count is off", l->sacked, sacked);
    return 0;
}

static int run(uint32_t start, int ops, int exact) {
    struct fn_txlog l;
    memset(&l, 0, sizeof(l));
    una = max = start;
    uint64_t now = 1000;
    for (int k = 0; k < ops; k++) {
        /* Steps below FN_TXLOG_JOIN_US let sends join; the exact run keeps them apart. */
        now += exact ? FN_TXLOG_JOIN_US + 1 + rnd() % 50 : 1 + rnd() % 100;
        uint32_t out = max - una, r = rnd() % 100;
        if (r < 40 && out < SPAN - 64) { /* new data */
            uint32_t n = 1 + rnd() % 48;
            if (fn_txlog_sent(&l, max, max + n, now) < 0 && exact)
                return fail("append failed", max, n);
            for (uint32_t i = 0; i < n; i++)
                model[out + i] = (struct unit){now, 0, 0};
            max += n;
        } else if (r < 60 && out) { /* retransmission inside the outstanding range */
            uint32_t a = rnd() % out, n = 1 + rnd() % 16;
            if (a + n > out)
                n = out - a;
            if (fn_txlog_sent(&l, una + a, una + a + n, now) < 0 && exact)
                return fail("retransmission log failed", una + a, n);
            for (uint32_t i = a; i < a + n; i++)
                model[i] = (struct unit){now, 0, model[i].sacked};
        } else if (r < 70 && out) { /* SACK */
            uint32_t a = rnd() % out, n = 1 + rnd() % 96, fresh = 0;
            if (a + n > out + 8)
                n = out + 8 - a; /* a block may reach past snd_max: it is clipped */
            for (uint32_t i = a; i < a + n && i < out; i++)
                fresh += !model[i].sacked;
            uint32_t got = fn_txlog_sack(&l, una + a, una + a + n);
            if (exact && got != fresh)
                return fail("newly SACKed bytes miscounted", got, fresh);
            for (uint32_t i = a; i < a + n && i < out; i++)
                model[i].sacked = 1, model[i].lost = 0;
        } else if (r < 80 && out) { /* cumulative ACK */
            uint32_t n = rnd() % (out + 1);
            fn_txlog_acked(&l, una + n);
            memmove(model, model + n, sizeof(model[0]) * (out - n));
            una += n;
        } else if (r < 92 && out) { /* loss mark */
            uint32_t a = rnd() % out, n = 1 + rnd() % 64;
            if (a + n > out)
                n = out - a;
            fn_txlog_mark_lost(&l, una + a, una + a + n);
            for (uint32_t i = a; i < a + n; i++)
                model[i].lost = !model[i].sacked;
        } else if (r < 96) { /* D-SACK bookkeeping */
            uint32_t a = una + rnd() % (out + 1);
            fn_txlog_rxt_note(&l, a, a + 10);
            if (!fn_txlog_rxt_match(&l, a + 2, a + 5) || fn_txlog_rxt_match(&l, a + 2, a + 5))
                return fail("a noted retransmission matches exactly once", a, 0);
        } else if (out && rnd() % 4) {
            fn_txlog_clear_lost(&l);
            for (uint32_t i = 0; i < out; i++)
                model[i].lost = 0;
        } else if (out) { /* reneging */
            fn_txlog_clear_sacked(&l);
            for (uint32_t i = 0; i < out; i++)
                model[i].sacked = 0;
            /* A joined SACKed run keeps its latest time, which now counts again. */
            for (uint32_t i = 0; i < l.n; i++)
                for (uint32_t s = l.e[i].start; s != l.e[i].end; s++)
                    if (model[s - una].sent < l.e[i].sent)
                        model[s - una].sent = l.e[i].sent;
        }
        if (check_structure(&l))
            return 1;
        if (check_values(&l, exact))
            return 1;
        if (!exact) /* merges may raise send times, widen loss marks and lose SACKs: the model follows */
            for (uint32_t i = 0; i < l.n; i++)
                for (uint32_t s = l.e[i].start; s != l.e[i].end; s++) {
                    if (model[s - una].sent < l.e[i].sent)
                        model[s - una].sent = l.e[i].sent;
                    model[s - una].lost = l.e[i].lost;
                    model[s - una].sacked = l.e[i].sacked;
                }
    }
    fn_txlog_free(&l);
    return 0;
}

int main(void) {
    int exact = FN_TXLOG_MAX >= 1024;
    static const uint32_t starts[] = {0, 1000, 0xfffff000u, 0x7ffff800u};
    for (unsigned i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
        if (run(starts[i], exact ? 20000 : 40000, exact))
            return 1;
    printf("ok txlog max=%d\n", FN_TXLOG_MAX);
    return 0;
}
