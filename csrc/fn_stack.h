/* The per-frame core of the forwarder: frames from a link are classified (fn_parse_frame) and
 * dispatched in C — ARP and ICMP echo for the gateway answered here, TCP to the engine, UDP
 * and ICMP echo to the datagram NAT, IPv4 fragments reassembled first — and the rest (DHCP,
 * unknown protocols) is queued, bounded, for the Python services. One call handles a whole
 * read batch and ends with one engine flush and one link write.
 *
 * Counters are kept here, per frame kind and per malformed-frame reason, and read by Python. */
#ifndef FN_STACK_H
#define FN_STACK_H

#include <stdint.h>

#include "fn_dgram.h"
#include "fn_frag.h"
#include "fn_link.h"
#include "fn_tcp.h"
#include "fn_wire.h"

#define FN_STACK_MAX_ARP 16
#define FN_SWITCH_PORTS 64

struct fn_stack;

/* Guests on one virtual network (vmnet carries many VMs) see each other: a learning switch.
 * Frames addressed to another port's guest MAC are copied into that port's link; broadcast
 * and multicast go to every other port as well as to our own services. */
struct fn_switch {
    struct fn_stack *port[FN_SWITCH_PORTS];
    int n;
    uint64_t switched, flooded, unknown;
};

void fn_switch_init(struct fn_switch *sw);
int fn_switch_add(struct fn_switch *sw, struct fn_stack *s);
void fn_switch_remove(struct fn_switch *sw, struct fn_stack *s);
/* Write every port whose link got switched frames. */
void fn_switch_flush(struct fn_switch *sw, uint64_t now);
#define FN_STACK_ERRS 32

struct fn_stack_stats {
    uint64_t frames, bytes;
    uint64_t kind[FN_KIND_COUNT];
    uint64_t malformed[FN_STACK_ERRS];  /* by -error code */
    uint64_t arp_replies, arp_ignored;
    uint64_t slow_queued, slow_dropped;
    uint64_t not_for_us;                /* unicast to another MAC */
    uint64_t polls, link_blocked;
    uint64_t gw_echo_replies, dropped_proto;
};

struct fn_stack {
    struct fn_link *link;
    struct fn_tcp *tcp;
    struct fn_dgram *dgram;     /* UDP and ICMP echo NAT (optional) */
    struct fn_frag frag;
    uint8_t gw_ip[4];           /* echo requests to it are answered here */
    uint8_t gw_mac[6];
    uint8_t guest_mac[6];       /* learned from the frames this port's guest sends */
    int has_guest_mac;
    int dirty;                  /* frames were switched into this port's link */
    struct fn_switch *sw;
    uint8_t arp_ip[FN_STACK_MAX_ARP][4];
    int n_arp;
    /* The slow path: frames for Python, each as a u32 length then the bytes. */
    uint8_t *slow;
    uint32_t slow_len, slow_cap, slow_n;
    struct fn_stack_stats st;
};

int fn_stack_init(struct fn_stack *s, struct fn_link *link, struct fn_tcp *tcp, const uint8_t gw_mac[6],
                  uint32_t slow_cap);
void fn_stack_free(struct fn_stack *s);
int fn_stack_add_arp(struct fn_stack *s, const uint8_t ip[4]);
void fn_stack_set_gateway(struct fn_stack *s, const uint8_t ip[4]);
/* Read and handle one batch from the link. Returns frames handled, or -1 when the link failed
 * or closed (link->eof / link->err say which). */
int fn_stack_poll_link(struct fn_stack *s, uint64_t now);
/* Handle one frame (for frames injected from elsewhere, e.g. tests or another link). */
void fn_stack_input(struct fn_stack *s, const uint8_t *p, uint32_t len, int csum_ok, uint64_t now);
/* After host-socket events or timers were handed to the engine: flush it and write the link. */
int fn_stack_output(struct fn_stack *s, uint64_t now);

#endif
