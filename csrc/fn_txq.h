/* The transmit queue: frames for the guest, built in place in one arena and flushed in batches.
 *
 * Every frame gets `headroom` spare bytes in front of it, so a link can put its framing (a
 * length prefix, a virtio_net_hdr) there and send prefix and frame from one contiguous piece.
 * A frame's descriptor carries what a link with offloads needs: a GSO size when the frame is
 * a TCP super-frame to be segmented by the link (the TAP device does it in the kernel), and
 * where the checksum starts/goes when only the pseudo-header sum was filled in (csum_partial).
 *
 * When the arena or descriptor array is full, fn_txq_alloc() calls the flush callback; a link
 * that cannot take more right now (EAGAIN) leaves frames in the queue and the callback returns
 * < 0: producers then stop and retry after the link drains (back-pressure, no loss). */
#ifndef FN_TXQ_H
#define FN_TXQ_H

#include <stddef.h>
#include <stdint.h>

#define FN_TXD_CSUM_PARTIAL 0x01 /* L4 checksum holds the pseudo-header sum only */
#define FN_TXD_GSO_TCPV4 0x02    /* super-frame: the link segments it at gso_size */
#define FN_TXD_GSO_TCPV6 0x04

struct fn_txd {
    uint32_t off;        /* frame start in the arena (headroom lies just before) */
    uint32_t len;
    uint16_t gso_size;   /* payload bytes per segment for GSO frames */
    uint16_t csum_start; /* offset of the L4 header in the frame (CSUM_PARTIAL) */
    uint16_t csum_off;   /* offset of the checksum field from csum_start */
    uint8_t flags;
    uint8_t hdr_len;     /* Ethernet+IP+TCP header bytes (GSO frames) */
};

struct fn_txq;
typedef int (*fn_txq_flush_fn)(void *ctx, struct fn_txq *q);

struct fn_txq {
    uint8_t *buf;
    uint32_t cap;        /* arena bytes */
    uint32_t used;
    uint32_t headroom;
    struct fn_txd *d;
    uint32_t nd, cap_d;
    uint32_t head;       /* descriptors before this one were already sent (partial flush) */
    fn_txq_flush_fn flush;
    void *flush_ctx;
    uint64_t frames, bytes, flushes, full; /* counters */
};

/* Allocates the arena and descriptors. Returns 0 or -1 (out of memory). */
int fn_txq_init(struct fn_txq *q, uint32_t cap, uint32_t cap_d, uint32_t headroom);
void fn_txq_free(struct fn_txq *q);
/* Room for a frame of up to max_len bytes: a pointer to where the frame starts, or NULL if the
 * queue is full and the flush callback could not empty it. Nothing is committed yet. */
uint8_t *fn_txq_reserve(struct fn_txq *q, uint32_t max_len);
/* Commit the frame most recently reserved (at p) with its final length and metadata. Several
 * frames may be reserved back to back before committing them in order. */
struct fn_txd *fn_txq_commit(struct fn_txq *q, uint8_t *p, uint32_t len);
/* Reserve a run of k frames of max_len each, laid out back to back; returns the first frame
 * start and sets *stride to the distance between frames; NULL if they do not fit. */
uint8_t *fn_txq_reserve_run(struct fn_txq *q, uint32_t k, uint32_t max_len, uint32_t *stride);
/* Frames not yet taken by the link. */
static inline uint32_t fn_txq_pending(const struct fn_txq *q) { return q->nd - q->head; }
/* Drop descriptors [0, head) and reset the arena when everything was sent. */
void fn_txq_consumed(struct fn_txq *q, uint32_t n);
/* Whether reserving max_len would succeed without a flush. */
int fn_txq_room(const struct fn_txq *q, uint32_t max_len);
/* Ask the link to send what is queued (returns the callback's result, 0 when nothing queued). */
int fn_txq_flush(struct fn_txq *q);

#endif
