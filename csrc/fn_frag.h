/* IPv4 reassembly of the guest's fragments (RFC 791 §3.2, RFC 815's hole idea through
 * fn_assembler). A small fixed table of datagrams in progress, each with a 64 KiB buffer
 * allocated on first use; entries time out (RFC 1122 §3.3.2 suggests 60 s; 30 s here) and the
 * oldest is recycled when the table is full. A datagram whose fragments would exceed 65535
 * bytes, or conflict about its end, is dropped and counted. */
#ifndef FN_FRAG_H
#define FN_FRAG_H

#include <stdint.h>

#include "fn_assembler.h"
#include "fn_wire.h"

#define FN_FRAG_SLOTS 64

struct fn_frag_slot {
    uint8_t src[4], dst[4];
    uint16_t id;
    uint8_t proto;
    uint8_t used;
    uint8_t mac[6];
    uint16_t hlen;             /* header of the first fragment (offset 0), copied when seen */
    uint32_t total;            /* payload length once the last fragment (MF=0) arrived, else 0 */
    uint64_t deadline;
    struct fn_assembler have;  /* payload ranges received */
    uint8_t *buf;              /* IPv4 header (hlen) + payload */
};

struct fn_frag_stats {
    uint64_t fragments, reassembled, timeouts, dropped, recycled;
};

struct fn_frag {
    struct fn_frag_slot s[FN_FRAG_SLOTS];
    uint64_t timeout;
    struct fn_frag_stats st;
};

void fn_frag_init(struct fn_frag *r, uint64_t timeout);
void fn_frag_free(struct fn_frag *r);
/* A fragment (frame p parsed as f, kind FN_KIND_IPV4_FRAG). When it completes a datagram,
 * returns the whole IPv4 datagram (valid until the next call) and its length in *len, the
 * sender's MAC in mac. Otherwise NULL. */
const uint8_t *fn_frag_input(struct fn_frag *r, const uint8_t *p, const struct fn_frame *f, uint64_t now,
                             uint32_t *len, uint8_t mac[6]);
void fn_frag_expire(struct fn_frag *r, uint64_t now);

#endif
