#include "fn_stack.h"

#include <stdlib.h>
#include <string.h>

#include "fn_build.h"

int fn_stack_init(struct fn_stack *s, struct fn_link *link, struct fn_tcp *tcp, const uint8_t gw_mac[6],
                  uint32_t slow_cap) {
    memset(s, 0, sizeof(*s));
    s->link = link;
    s->tcp = tcp;
    memcpy(s->gw_mac, gw_mac, 6);
    s->slow_cap = slow_cap;
    s->slow = malloc(slow_cap);
    return s->slow ? 0 : -1;
}

void fn_stack_free(struct fn_stack *s) {
    free(s->slow);
    s->slow = NULL;
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

void fn_stack_input(struct fn_stack *s, const uint8_t *p, uint32_t len, int csum_ok, uint64_t now) {
    struct fn_frame f;
    s->st.frames++;
    s->st.bytes += len;
    int rc = fn_parse_frame(p, len, &f);
    if (rc != FN_OK) {
        s->st.malformed[(-rc) < FN_STACK_ERRS ? -rc : 0]++;
        return;
    }
    s->st.kind[f.kind]++;
    /* Frames for another station (vmnet switches between guests elsewhere) are not ours. */
    if (!(p[0] & 1) && memcmp(p, s->gw_mac, 6) != 0) {
        s->st.not_for_us++;
        return;
    }
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
    return n;
}
