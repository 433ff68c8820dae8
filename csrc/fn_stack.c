#include "fn_stack.h"

#include <stdlib.h>
#include <string.h>

#include "fn_build.h"
#include "fn_checksum.h"

int fn_stack_init(struct fn_stack *s, struct fn_link *link, struct fn_tcp *tcp, const uint8_t gw_mac[6],
                  uint32_t slow_cap) {
    memset(s, 0, sizeof(*s));
    s->link = link;
    s->tcp = tcp;
    memcpy(s->gw_mac, gw_mac, 6);
    s->slow_cap = slow_cap;
    s->slow = malloc(slow_cap);
    fn_frag_init(&s->frag, 30000000);
    return s->slow ? 0 : -1;
}

void fn_stack_free(struct fn_stack *s) {
    free(s->slow);
    s->slow = NULL;
    fn_frag_free(&s->frag);
}

void fn_stack_set_gateway(struct fn_stack *s, const uint8_t ip[4]) {
    memcpy(s->gw_ip, ip, 4);
    fn_stack_add_arp(s, ip);
}

/* Echo requests to the gateway address are answered here (RFC 792: swap the addresses,
 * type 0, same identifier, sequence and data). */
static void gw_echo(struct fn_stack *s, const uint8_t *mac, const uint8_t *ip, const uint8_t *icmp, uint32_t n) {
    uint32_t len = FN_ETH_HLEN + FN_IPV4_HLEN + n;
    uint8_t *out = fn_txq_reserve(&s->link->txq, len);
    if (!out)
        return;
    struct fn_ipv4_spec sp;
    memset(&sp, 0, sizeof(sp));
    memcpy(sp.src, ip + FN_IPV4_OFF_DST, 4);
    memcpy(sp.dst, ip + FN_IPV4_OFF_SRC, 4);
    sp.proto = FN_IPPROTO_ICMP;
    sp.ttl = 64;
    sp.id = fn_ld_be16(ip + FN_IPV4_OFF_ID);
    fn_build_eth(out, mac, s->gw_mac, FN_ETHERTYPE_IPV4);
    fn_build_ipv4(out + FN_ETH_HLEN, &sp, n);
    uint8_t *r = out + FN_ETH_HLEN + FN_IPV4_HLEN;
    memcpy(r, icmp, n);
    r[FN_ICMP_OFF_TYPE] = 0;
    fn_st_be16(r + FN_ICMP_OFF_CSUM, 0);
    fn_st_be16(r + FN_ICMP_OFF_CSUM, fn_checksum(r, n, 0));
    fn_txq_commit(&s->link->txq, out, len);
    s->st.gw_echo_replies++;
}

/* UDP and ICMP of a whole IPv4 datagram (from a frame, or reassembled from fragments). */
static int datagram(struct fn_stack *s, const uint8_t *mac, const uint8_t *ip, const struct fn_frame *f,
                    const uint8_t *base, uint64_t now) {
    const uint8_t *l4 = base + f->l4_off;
    if (f->kind == FN_KIND_UDP4) {
        /* DHCP (to the server port) is for the Python service; so is UDP from 0.0.0.0. */
        uint32_t src;
        memcpy(&src, ip + FN_IPV4_OFF_SRC, 4);
        if (fn_ld_be16(l4 + 2) == 67 || src == 0 || !s->dgram)
            return 0;
        fn_dgram_input(s->dgram, mac, ip, l4, f->l4_len, now);
        return 1;
    }
    if (f->kind == FN_KIND_ICMP4) {
        if (l4[FN_ICMP_OFF_TYPE] == 8 && memcmp(ip + FN_IPV4_OFF_DST, s->gw_ip, 4) == 0) {
            gw_echo(s, mac, ip, l4, f->l4_len);
            return 1;
        }
        if (l4[FN_ICMP_OFF_TYPE] == 8 && s->dgram) {
            fn_dgram_input(s->dgram, mac, ip, l4, f->l4_len, now);
            return 1;
        }
        s->st.dropped_proto++; /* ICMP errors and others from the guest have nowhere to go */
        return 1;
    }
    return 0;
}

int fn_stack_add_arp(struct fn_stack *s, const uint8_t ip[4]) {
    for (int i = 0; i < s->n_arp; i++)
        if (memcmp(s->arp_ip[i], ip, 4) == 0)
            return 0;
    if (s->n_arp == FN_STACK_MAX_ARP)
        return -1;
    memcpy(s->arp_ip[s->n_arp++], ip, 4);
    return 0;
}

/* ARP requests for our addresses get a reply from the gateway MAC (RFC 826 "Packet
 * Reception"); gratuitous ARP and requests for other addresses are left alone. */
static void arp(struct fn_stack *s, const uint8_t *p, const struct fn_frame *f) {
    const uint8_t *a = p + f->l3_off;
    if (fn_ld_be16(a + FN_ARP_OFF_OPER) != 1) {
        s->st.arp_ignored++;
        return;
    }
    const uint8_t *tpa = a + FN_ARP_OFF_TPA;
    int ours = 0;
    for (int i = 0; i < s->n_arp && !ours; i++)
        ours = memcmp(s->arp_ip[i], tpa, 4) == 0;
    if (!ours || memcmp(tpa, a + FN_ARP_OFF_SPA, 4) == 0) {
        s->st.arp_ignored++;
        return;
    }
    uint8_t *out = fn_txq_reserve(&s->link->txq, FN_ETH_HLEN + FN_ARP_LEN);
    if (!out)
        return;
    fn_build_eth(out, a + FN_ARP_OFF_SHA, s->gw_mac, FN_ETHERTYPE_ARP);
    fn_build_arp(out + FN_ETH_HLEN, 2, s->gw_mac, tpa, a + FN_ARP_OFF_SHA, a + FN_ARP_OFF_SPA);
    fn_txq_commit(&s->link->txq, out, FN_ETH_HLEN + FN_ARP_LEN);
    s->st.arp_replies++;
}

static void slow_path(struct fn_stack *s, const uint8_t *p, uint32_t len) {
    if (s->slow_cap - s->slow_len < len + 4) {
        s->st.slow_dropped++; /* bounded: Python did not keep up; counted, never unbounded */
        return;
    }
    memcpy(s->slow + s->slow_len, &len, 4);
    memcpy(s->slow + s->slow_len + 4, p, len);
    s->slow_len += 4 + len;
    s->slow_n++;
    s->st.slow_queued++;
}

void fn_switch_init(struct fn_switch *sw) { memset(sw, 0, sizeof(*sw)); }

int fn_switch_add(struct fn_switch *sw, struct fn_stack *s) {
    if (sw->n == FN_SWITCH_PORTS)
        return -1;
    sw->port[sw->n++] = s;
    s->sw = sw;
    return 0;
}

void fn_switch_remove(struct fn_switch *sw, struct fn_stack *s) {
    for (int i = 0; i < sw->n; i++)
        if (sw->port[i] == s) {
            sw->port[i] = sw->port[--sw->n];
            s->sw = NULL;
            return;
        }
}

void fn_switch_flush(struct fn_switch *sw, uint64_t now) {
    for (int i = 0; i < sw->n; i++)
        if (sw->port[i]->dirty) {
            sw->port[i]->dirty = 0;
            fn_link_write(sw->port[i]->link, now);
        }
}

static void switch_copy(struct fn_stack *to, const uint8_t *p, uint32_t len) {
    uint8_t *out = fn_txq_reserve(&to->link->txq, len);
    if (!out)
        return; /* that port's queue is full: dropped there, as a switch would */
    memcpy(out, p, len);
    fn_txq_commit(&to->link->txq, out, len);
    to->dirty = 1;
}

/* Returns 1 when the frame was for another guest only (nothing left to do here). */
static int switch_frame(struct fn_stack *s, const uint8_t *p, uint32_t len) {
    struct fn_switch *sw = s->sw;
    if (p[0] & 1) { /* broadcast/multicast: every other guest hears it, and so do we */
        if (sw && sw->n > 1) {
            for (int i = 0; i < sw->n; i++)
                if (sw->port[i] != s)
                    switch_copy(sw->port[i], p, len);
            sw->flooded++;
        }
        return 0;
    }
    if (memcmp(p, s->gw_mac, 6) == 0)
        return 0;
    if (sw) {
        for (int i = 0; i < sw->n; i++) {
            struct fn_stack *o = sw->port[i];
            if (o != s && o->has_guest_mac && memcmp(o->guest_mac, p, 6) == 0) {
                switch_copy(o, p, len);
                sw->switched++;
                return 1;
            }
        }
        sw->unknown++;
    }
    s->st.not_for_us++;
    return 1;
}

/* moby/vpnkit's vmnet client library (go/pkg/vmnet, which rootlesskit's vpnkit driver uses to
 * learn its address) sends its DHCP DISCOVER with the IPv4 header checksum left at 0, "as if
 * offloaded", and vpnkit answers it. Exactly that is let through: a zero checksum field on a
 * DHCP client message (UDP 68 -> 67); any other bad header checksum is still dropped. */
static int unchecksummed_dhcp(const uint8_t *p, const struct fn_frame *f) {
    const uint8_t *ip = p + f->l3_off, *udp = p + f->l4_off;
    return f->kind == FN_KIND_UDP4 && ip[10] == 0 && ip[11] == 0 && f->l4_len >= 8 &&
           fn_ld_be16(udp) == 68 && fn_ld_be16(udp + 2) == 67;
}

/* A datagram whose (non-zero) L4 checksum is wrong: counted, and silently discarded
 * (RFC 1122 §4.1.3.4 / §3.2.2), never forwarded with a fresh one. */
static void bad_l4_csum(struct fn_stack *s) {
    if (s->dgram)
        s->dgram->st.bad_csum++;
    else
        s->st.malformed[-FN_EL4_CSUM]++;
}

void fn_stack_input(struct fn_stack *s, const uint8_t *p, uint32_t len, int csum_ok, uint64_t now) {
    struct fn_frame f;
    s->st.frames++;
    s->st.bytes += len;
    if (len >= FN_ETH_HLEN && !(p[6] & 1) && (!s->has_guest_mac || memcmp(s->guest_mac, p + 6, 6) != 0)) {
        memcpy(s->guest_mac, p + 6, 6); /* learn (or re-learn) this port's guest */
        s->has_guest_mac = 1;
    }
    int rc = fn_parse_frame(p, len, &f);
    if (rc != FN_OK) {
        s->st.malformed[(-rc) < FN_STACK_ERRS ? -rc : 0]++;
        return;
    }
    s->st.kind[f.kind]++;
    if (switch_frame(s, p, f.len))
        return;
    switch (f.kind) {
    case FN_KIND_ARP:
        arp(s, p, &f);
        return;
    case FN_KIND_TCP4:
        if (s->tcp) {
            fn_tcp_input(s->tcp, p, &f, csum_ok, now);
            return;
        }
        break;
    case FN_KIND_UDP4:
    case FN_KIND_ICMP4:
        if (!csum_ok && fn_ipv4_verify(p + f.l3_off) != FN_OK && !unchecksummed_dhcp(p, &f)) {
            s->st.malformed[-FN_EIPV4_CSUM]++;
            return;
        }
        if (!csum_ok && fn_l4_verify(p, &f) != FN_OK) {
            bad_l4_csum(s);
            return;
        }
        if (datagram(s, p + FN_ETH_OFF_SRC, p + f.l3_off, &f, p, now))
            return;
        break;
    case FN_KIND_IPV4_FRAG: {
        /* The same checks as whole datagrams (above): each fragment's header, then the
         * reassembled datagram's L4 checksum, which only the whole datagram carries. */
        if (!csum_ok && fn_ipv4_verify(p + f.l3_off) != FN_OK) {
            s->st.malformed[-FN_EIPV4_CSUM]++;
            return;
        }
        uint32_t len;
        uint8_t mac[6];
        const uint8_t *whole = fn_frag_input(&s->frag, p, &f, now, &len, mac);
        if (!whole)
            return;
        struct fn_frame g;
        if (fn_parse_ip(whole, len, &g) != FN_OK) {
            s->st.malformed[0]++;
            return;
        }
        if (fn_l4_verify(whole, &g) != FN_OK) {
            bad_l4_csum(s);
            return;
        }
        if (!datagram(s, mac, whole, &g, whole, now))
            s->st.dropped_proto++; /* fragmented DHCP or other protocols: nothing uses them */
        return;
    }
    default:
        break;
    }
    slow_path(s, p, f.len);
}

int fn_stack_output(struct fn_stack *s, uint64_t now) {
    if (s->tcp)
        fn_tcp_flush(s->tcp, now);
    int r = fn_link_write(s->link, now);
    if (r == 1)
        s->st.link_blocked++;
    else if (r == 0 && s->tcp && s->tcp->blocked_head != UINT32_MAX) {
        /* The queue drained by an ordinary write: flows parked while it was full may go on
         * (otherwise only a writability wake-up, which may never come, would release them). */
        fn_tcp_link_ready(s->tcp, now);
        r = fn_link_write(s->link, now);
    }
    return r;
}

int fn_stack_poll_link(struct fn_stack *s, uint64_t now) {
    s->st.polls++;
    int n = fn_link_read(s->link, now);
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        const struct fn_rxf *r = &s->link->rx[i];
        fn_stack_input(s, fn_link_frame(s->link, r), r->len, r->csum_ok, now);
    }
    fn_stack_output(s, now);
    if (s->sw)
        fn_switch_flush(s->sw, now);
    return n;
}
