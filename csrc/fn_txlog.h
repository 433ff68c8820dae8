/* The transmission log of a flow's outstanding data: [snd_una, snd_max) as ranges of sequence
 * numbers, each with the time it was last sent, whether the guest SACKed it and whether it is
 * deemed lost. It is what RACK (RFC 8985) needs: a segment is lost when something sent *after*
 * it was delivered, which sequence order alone cannot tell once retransmissions are in flight.
 * It is also the SACK scoreboard (RFC 6675 §3), as Linux keeps SACK state per buffer: a
 * separate list of SACKed ranges would be bounded by its own size (a window of thousands of
 * segments at 1 % loss holds dozens of holes) and SACKs it could not record would look lost.
 *
 * Ranges are contiguous, sorted and disjoint; one range per run of new segments sent within
 * FN_TXLOG_JOIN_US of the run's first, split when part of a range is retransmitted. The array grows
 * to at most FN_TXLOG_MAX entries (48 KiB); beyond that, the neighbours sent closest together
 * are merged (keeping the later time, which only delays a loss verdict). SACKed neighbours are
 * joined at once: nothing about them matters any more but that the guest holds them. Allocated
 * on first use, freed with the flow. */
#ifndef FN_TXLOG_H
#define FN_TXLOG_H

#include <stdint.h>

#ifndef FN_TXLOG_MAX /* tests build with a small one to exercise merging */
#define FN_TXLOG_MAX 2048
#endif
#define FN_TXLOG_JOIN_US 50
#define FN_TXLOG_RXT 16

struct fn_txlog_ent {
    uint32_t start, end;       /* sequence range */
    uint64_t sent;             /* µs of the last transmission (a joined run's first) */
    uint8_t lost;              /* deemed lost and not retransmitted since (never when SACKed) */
    uint8_t rexmit;            /* sent more than once */
    uint8_t sacked;            /* the guest holds it (RFC 2018) */
    uint8_t pad[5];
};

struct fn_txlog {
    uint32_t n, cap;
    uint32_t sacked;           /* bytes SACKed */
    struct fn_txlog_ent *e;
    /* The latest FN_TXLOG_RXT retransmitted ranges, kept after they are acknowledged: a D-SACK
     * usually arrives then, and only one for a range we resent says our retransmission was
     * needless (a link that duplicates frames makes D-SACKs too). Allocated on first use. */
    uint32_t (*rxt)[2];
    uint32_t rxt_next;
};

/* [start, end) was (re)sent at now. New data (start at the log's end) is appended; anything
 * else marks a retransmission: its time is updated and its lost mark cleared. 0, or -1 when
 * memory ran out and the log recorded a coarser picture (a later time for more bytes). */
int fn_txlog_sent(struct fn_txlog *l, uint32_t start, uint32_t end, uint64_t now);
/* Everything below una is acknowledged: forget it. */
void fn_txlog_acked(struct fn_txlog *l, uint32_t una);
/* Mark the un-SACKed part of [start, end) lost (RTO, a duplicate-ACK verdict). */
void fn_txlog_mark_lost(struct fn_txlog *l, uint32_t start, uint32_t end);
/* The guest SACKed [start, end): returns the bytes it newly holds (0 when it already held them
 * all). Without memory to split an entry, only entries wholly inside are marked: data it holds
 * but the log cannot say so is resent at worst, never skipped. */
uint32_t fn_txlog_sack(struct fn_txlog *l, uint32_t start, uint32_t end);
/* The guest dropped what it SACKed (reneging, RFC 2018 §8): forget every SACK. */
void fn_txlog_clear_sacked(struct fn_txlog *l);
/* Remember [start, end) as retransmitted (best effort: without memory it is not). */
void fn_txlog_rxt_note(struct fn_txlog *l, uint32_t start, uint32_t end);
/* Whether a D-SACK for [start, end) reports one of the remembered retransmissions; a match
 * is forgotten, so each retransmission counts once. */
int fn_txlog_rxt_match(struct fn_txlog *l, uint32_t start, uint32_t end);
/* A recovery was undone: nothing is lost after all. */
void fn_txlog_clear_lost(struct fn_txlog *l);
void fn_txlog_free(struct fn_txlog *l);

#endif
