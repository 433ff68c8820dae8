/* The transmission log of a flow's outstanding data: [snd_una, snd_max) as ranges of sequence
 * numbers, each with the time it was last sent and whether it is deemed lost. It is what RACK
 * (RFC 8985) needs: a segment is lost when something sent *after* it was delivered, which sequence
 * order alone cannot tell once retransmissions are in flight.
 *
 * Ranges are contiguous, sorted and disjoint; one range per run of segments sent together (a
 * burst of up to 64 segments costs one entry), split when part of a range is retransmitted.
 * The array grows to at most FN_TXLOG_MAX entries; beyond that, neighbours are merged
 * (keeping the later time, which only delays a loss verdict). Allocated on first use. */
#ifndef FN_TXLOG_H
#define FN_TXLOG_H

#include <stdint.h>

#define FN_TXLOG_MAX 1024

struct fn_txlog_ent {
    uint32_t start, end;       /* sequence range */
    uint64_t sent;             /* µs of the last transmission */
    uint8_t lost;              /* deemed lost and not retransmitted since */
    uint8_t rexmit;            /* sent more than once */
    uint8_t pad[6];
};

struct fn_txlog {
    uint32_t n, cap;
    struct fn_txlog_ent *e;
};

/* [start, end) was (re)sent at now. New data (start at the log's end) is appended; anything
 * else marks a retransmission: its time is updated and its lost mark cleared. 0, or -1 when
 * memory ran out and the log recorded a coarser picture (a later time for more bytes). */
int fn_txlog_sent(struct fn_txlog *l, uint32_t start, uint32_t end, uint64_t now);
/* Everything below una is acknowledged: forget it. */
void fn_txlog_acked(struct fn_txlog *l, uint32_t una);
/* Mark [start, end) lost (RTO, a duplicate-ACK verdict). */
void fn_txlog_mark_lost(struct fn_txlog *l, uint32_t start, uint32_t end);
/* A recovery was undone: nothing is lost after all. */
void fn_txlog_clear_lost(struct fn_txlog *l);
void fn_txlog_free(struct fn_txlog *l);

#endif
