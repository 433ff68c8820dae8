/* Datagram NAT: the guest's UDP flows and ICMP echo flows, each re-originated on a host socket.
 *
 *  - UDP: one connected host UDP socket per guest flow (4-tuple), so the kernel demultiplexes
 *    replies; an idle timeout (default 60 s) and a bounded table with least-recently-used
 *    eviction. A datagram larger than the guest link's MTU goes out as IPv4 fragments; guest
 *    fragments are reassembled before they reach this table (fn_frag).
 *  - ICMP echo: one "ping" socket (SOCK_DGRAM, IPPROTO_ICMP) per (guest, destination, echo
 *    id); the kernel picks its own identifier, which is mapped back to the guest's on replies.
 *    A raw socket (privileged) works too: then the guest's identifier is kept and the checksum
 *    is ours to fill. Only replies that really arrive are forwarded: nothing is forged.
 *  - ICMP errors from the host side (port unreachable, TTL exceeded, host unreachable) reach
 *    the socket through IP_RECVERR and are translated back into ICMP errors to the guest that
 *    quote the guest's own datagram, so traceroute and "connection refused" work.
 *
 * As with TCP, the first datagram of a new flow raises an event; the Python policy answers
 * with a socket (a real one, or one end of a socketpair for a Python service such as DNS)
 * or a refusal. Datagrams that arrive meanwhile wait in a small per-flow queue. */
#ifndef FN_DGRAM_H
#define FN_DGRAM_H

#include <stdint.h>

#include "fn_flowtab.h"
#include "fn_txq.h"

enum fn_dgram_state { FN_DG_FREE = 0, FN_DG_PENDING, FN_DG_ACTIVE };

#define FN_DG_RAW 0x01          /* the fd is a raw ICMP socket (no id rewriting, we fill checksums) */

struct fn_dgram_config {
    uint8_t gw_mac[6];
    uint16_t mtu;               /* guest link MTU (IP datagram size) */
    uint32_t max_flows;
    uint64_t udp_idle;          /* µs */
    uint64_t icmp_idle;         /* µs */
    uint32_t pending_bytes;     /* per pending flow */
};

void fn_dgram_config_default(struct fn_dgram_config *c);

struct fn_dgram_flow {
    struct fn_flowkey key;      /* proto UDP: ports; proto ICMP: guest_port = guest echo id */
    uint8_t guest_mac[6];
    uint8_t state;
    uint8_t flags;
    uint32_t gen;
    int fd;
    uint8_t ttl;                /* the guest's TTL, applied to the host socket (traceroute) */
    uint64_t last;
    uint32_t lru_prev, lru_next, next_free;
    uint8_t *pend;              /* pending datagrams: u16 length then payload, repeated */
    uint32_t pend_len;
    uint64_t pkts_g2h, pkts_h2g, bytes_g2h, bytes_h2g;
};

enum fn_dgram_event_type { FN_DEV_NEW_FLOW = 1, FN_DEV_CLOSED };

struct fn_dgram_event {
    uint64_t flow;
    uint8_t type;
    uint8_t proto;
    int32_t err;
};

struct fn_dgram_stats {
    uint64_t datagrams_in, datagrams_out, bytes_in, bytes_out;
    uint64_t flows_opened, flows_closed, flows_active, evicted, expired;
    uint64_t pending_dropped, send_errors, icmp_errors_in, icmp_errors_out;
    uint64_t fragments_out, oversize_dropped, refused, bad_csum;
};

struct fn_dgram {
    struct fn_dgram_config cfg;
    struct fn_txq *txq;
    struct fn_flowtab tab;
    struct fn_dgram_flow *fl;
    uint32_t nfl, cap, free_head;
    uint32_t lru_head[2], lru_tail[2]; /* per protocol (0 UDP, 1 ICMP); head = least recently used */
    int epfd;
    struct fn_dgram_event *ev;
    uint32_t ev_head, ev_tail, ev_cap;
    uint8_t *rbuf;                    /* receive scratch (one datagram at a time, 64 KiB) */
    uint64_t now;
    uint16_t ip_id;
    struct fn_dgram_stats st;
};

struct fn_dgram *fn_dgram_new(const struct fn_dgram_config *cfg, struct fn_txq *txq, uint64_t seed);
void fn_dgram_free(struct fn_dgram *d);
/* A UDP datagram or ICMP echo request from the guest: ip points at its IPv4 header (a whole,
 * reassembled datagram), l4 at the UDP/ICMP header, l4_len bytes long. mac: guest's MAC. */
int fn_dgram_input(struct fn_dgram *d, const uint8_t mac[6], const uint8_t *ip, const uint8_t *l4, uint32_t l4_len,
                   uint64_t now);
/* epoll of every host socket (readable when one has data or an error). */
static inline int fn_dgram_fd(const struct fn_dgram *d) { return d->epfd; }
/* Drain ready host sockets into frames for the guest. */
void fn_dgram_poll(struct fn_dgram *d, uint64_t now);
/* Expire idle flows; returns the next deadline (µs) or 0. */
uint64_t fn_dgram_timers(struct fn_dgram *d, uint64_t now);
int fn_dgram_attach(struct fn_dgram *d, uint64_t flow, int fd, int raw, uint64_t now);
/* Refuse a pending flow: how < 0 drop silently, else the ICMP unreachable code to send
 * (3 port, 13 administratively prohibited, 0 net, 1 host). */
int fn_dgram_refuse(struct fn_dgram *d, uint64_t flow, int how, uint64_t now);
/* A UDP flow opened from the host side (a published port's client): datagrams read from fd go
 * to guest_ip:guest_port as if from remote_ip:remote_port, and the guest's replies to that
 * address go out on fd. fd must be a connected UDP socket. Returns the flow id, or 0. */
uint64_t fn_dgram_open(struct fn_dgram *d, const uint8_t guest_mac[6], const uint8_t guest_ip[4], uint16_t guest_port,
                       const uint8_t remote_ip[4], uint16_t remote_port, int fd, uint64_t now);
int fn_dgram_close(struct fn_dgram *d, uint64_t flow);
int fn_dgram_next_event(struct fn_dgram *d, struct fn_dgram_event *ev);
const struct fn_dgram_flow *fn_dgram_get(const struct fn_dgram *d, uint64_t flow);
uint64_t fn_dgram_iter(const struct fn_dgram *d, uint32_t *cursor);

/* Build a UDP datagram to the guest, fragmenting above the MTU (also used for Python-made
 * replies such as DHCP). Returns 0, or -1 when the transmit queue is full. */
int fn_dgram_emit_udp(struct fn_txq *q, const uint8_t dst_mac[6], const uint8_t src_mac[6],
                      const uint8_t src_ip[4], uint16_t sport, const uint8_t dst_ip[4], uint16_t dport,
                      const uint8_t *payload, uint32_t len, uint16_t mtu, uint16_t ip_id, uint8_t ttl);

#endif
