#include "fn_build.h"

#include "fn_checksum.h"

size_t fn_build_eth(uint8_t *p, const uint8_t dst[6], const uint8_t src[6], uint16_t ethertype) {
    memcpy(p + FN_ETH_OFF_DST, dst, 6);
    memcpy(p + FN_ETH_OFF_SRC, src, 6);
    fn_st_be16(p + FN_ETH_OFF_TYPE, ethertype);
    return FN_ETH_HLEN;
}

size_t fn_build_eth_vlan(uint8_t *p, const uint8_t dst[6], const uint8_t src[6], uint16_t tci,
                         uint16_t ethertype) {
    memcpy(p + FN_ETH_OFF_DST, dst, 6);
    memcpy(p + FN_ETH_OFF_SRC, src, 6);
    fn_st_be16(p + FN_ETH_OFF_TYPE, FN_ETHERTYPE_VLAN);
    fn_st_be16(p + FN_ETH_HLEN, tci);
    fn_st_be16(p + FN_ETH_HLEN + 2, ethertype);
    return FN_ETH_HLEN + FN_VLAN_HLEN;
}

size_t fn_build_arp(uint8_t *p, uint16_t oper, const uint8_t sha[6], const uint8_t spa[4],
                    const uint8_t tha[6], const uint8_t tpa[4]) {
    fn_st_be16(p + FN_ARP_OFF_HTYPE, 1);
    fn_st_be16(p + FN_ARP_OFF_PTYPE, FN_ETHERTYPE_IPV4);
    p[FN_ARP_OFF_HLEN] = 6;
    p[FN_ARP_OFF_PLEN] = 4;
    fn_st_be16(p + FN_ARP_OFF_OPER, oper);
    memcpy(p + FN_ARP_OFF_SHA, sha, 6);
    memcpy(p + FN_ARP_OFF_SPA, spa, 4);
    memcpy(p + FN_ARP_OFF_THA, tha, 6);
    memcpy(p + FN_ARP_OFF_TPA, tpa, 4);
    return FN_ARP_LEN;
}

size_t fn_build_ipv4(uint8_t *p, const struct fn_ipv4_spec *s, size_t payload_len) {
    size_t hl = FN_IPV4_HLEN + s->opt_len;
    p[FN_IPV4_OFF_VIHL] = (uint8_t)(0x40 | (hl / 4));
    p[FN_IPV4_OFF_TOS] = s->tos;
    fn_st_be16(p + FN_IPV4_OFF_LEN, (uint16_t)(hl + payload_len));
    fn_st_be16(p + FN_IPV4_OFF_ID, s->id);
    fn_st_be16(p + FN_IPV4_OFF_FRAG, s->frag);
    p[FN_IPV4_OFF_TTL] = s->ttl;
    p[FN_IPV4_OFF_PROTO] = s->proto;
    p[FN_IPV4_OFF_CSUM] = p[FN_IPV4_OFF_CSUM + 1] = 0;
    memcpy(p + FN_IPV4_OFF_SRC, s->src, 4);
    memcpy(p + FN_IPV4_OFF_DST, s->dst, 4);
    if (s->opt_len)
        memcpy(p + FN_IPV4_HLEN, s->options, s->opt_len);
    fn_st_be16(p + FN_IPV4_OFF_CSUM, fn_checksum(p, hl, 0));
    return hl;
}

size_t fn_build_ipv6(uint8_t *p, const uint8_t src[16], const uint8_t dst[16], uint8_t next_header,
                     uint8_t hop_limit, uint32_t flow_label, uint8_t traffic_class, size_t payload_len) {
    fn_st_be32(p, (6u << 28) | ((uint32_t)traffic_class << 20) | (flow_label & 0xfffffu));
    fn_st_be16(p + FN_IPV6_OFF_PLEN, (uint16_t)payload_len);
    p[FN_IPV6_OFF_NXT] = next_header;
    p[FN_IPV6_OFF_HLIM] = hop_limit;
    memcpy(p + FN_IPV6_OFF_SRC, src, 16);
    memcpy(p + FN_IPV6_OFF_DST, dst, 16);
    return FN_IPV6_HLEN;
}

size_t fn_tcp_hlen(const struct fn_tcp_spec *s) {
    size_t n = FN_TCP_HLEN;
    if (s->opts & FN_TCPB_MSS)
        n += 4;
    if (s->opts & FN_TCPB_TS)
        n += 12; /* NOP NOP TS, or SACK_PERM TS sharing the word below */
    else if (s->opts & FN_TCPB_SACK_PERM)
        n += 4;
    if (s->opts & FN_TCPB_WSCALE)
        n += 4;
    if ((s->opts & FN_TCPB_SACK) && s->o.nsack) {
        size_t room = (FN_TCP_MAX_HLEN - n - 4) / 8;
        size_t nb = s->o.nsack < room ? s->o.nsack : room;
        if (nb)
            n += 4 + 8 * nb;
    }
    return n;
}

size_t fn_build_tcp(uint8_t *p, const struct fn_tcp_spec *s) {
    uint8_t *o = p + FN_TCP_HLEN;
    fn_st_be16(p + FN_TCP_OFF_SPORT, s->sport);
    fn_st_be16(p + FN_TCP_OFF_DPORT, s->dport);
    fn_st_be32(p + FN_TCP_OFF_SEQ, s->seq);
    fn_st_be32(p + FN_TCP_OFF_ACK, s->ack);
    p[FN_TCP_OFF_FLAGS] = s->flags;
    fn_st_be16(p + FN_TCP_OFF_WIN, s->window);
    p[FN_TCP_OFF_CSUM] = p[FN_TCP_OFF_CSUM + 1] = 0;
    fn_st_be16(p + FN_TCP_OFF_URG, s->urgent);
    /* Layout follows Linux's SYN options: MSS, SACK_PERM+TS (or NOP NOP TS), NOP WS. */
    if (s->opts & FN_TCPB_MSS) {
        o[0] = FN_TCPOPT_MSS;
        o[1] = 4;
        fn_st_be16(o + 2, s->o.mss);
        o += 4;
    }
    if (s->opts & FN_TCPB_TS) {
        if (s->opts & FN_TCPB_SACK_PERM) {
            o[0] = FN_TCPOPT_SACK_PERM;
            o[1] = 2;
        } else {
            o[0] = o[1] = FN_TCPOPT_NOP;
        }
        o[2] = FN_TCPOPT_TIMESTAMP;
        o[3] = 10;
        fn_st_be32(o + 4, s->o.ts_val);
        fn_st_be32(o + 8, s->o.ts_ecr);
        o += 12;
    } else if (s->opts & FN_TCPB_SACK_PERM) {
        o[0] = o[1] = FN_TCPOPT_NOP;
        o[2] = FN_TCPOPT_SACK_PERM;
        o[3] = 2;
        o += 4;
    }
    if (s->opts & FN_TCPB_WSCALE) {
        o[0] = FN_TCPOPT_NOP;
        o[1] = FN_TCPOPT_WSCALE;
        o[2] = 3;
        o[3] = s->o.wscale;
        o += 4;
    }
    if ((s->opts & FN_TCPB_SACK) && s->o.nsack) {
        /* As many blocks as fit in the 40 option bytes (RFC 2018 §3: 3 with timestamps). */
        size_t room = (size_t)(p + FN_TCP_MAX_HLEN - o - 4) / 8;
        size_t nb = s->o.nsack < room ? s->o.nsack : room;
        if (nb) {
            o[0] = o[1] = FN_TCPOPT_NOP;
            o[2] = FN_TCPOPT_SACK;
            o[3] = (uint8_t)(2 + 8 * nb);
            o += 4;
            for (size_t b = 0; b < nb; b++) {
                fn_st_be32(o, s->o.sack[b][0]);
                fn_st_be32(o + 4, s->o.sack[b][1]);
                o += 8;
            }
        }
    }
    size_t hl = (size_t)(o - p);
    p[FN_TCP_OFF_DOFF] = (uint8_t)((hl / 4) << 4);
    return hl;
}

size_t fn_build_udp(uint8_t *p, uint16_t sport, uint16_t dport, size_t payload_len) {
    fn_st_be16(p + FN_UDP_OFF_SPORT, sport);
    fn_st_be16(p + FN_UDP_OFF_DPORT, dport);
    fn_st_be16(p + FN_UDP_OFF_LEN, (uint16_t)(FN_UDP_HLEN + payload_len));
    p[FN_UDP_OFF_CSUM] = p[FN_UDP_OFF_CSUM + 1] = 0;
    return FN_UDP_HLEN;
}

size_t fn_build_icmp(uint8_t *p, uint8_t type, uint8_t code, uint32_t rest) {
    p[FN_ICMP_OFF_TYPE] = type;
    p[FN_ICMP_OFF_CODE] = code;
    p[FN_ICMP_OFF_CSUM] = p[FN_ICMP_OFF_CSUM + 1] = 0;
    fn_st_be32(p + 4, rest);
    return FN_ICMP_HLEN;
}

static void fill_l4(uint8_t *l4, size_t l4_len, uint8_t proto, uint32_t pseudo) {
    size_t co;
    switch (proto) {
    case FN_IPPROTO_TCP: co = FN_TCP_OFF_CSUM; break;
    case FN_IPPROTO_UDP: co = FN_UDP_OFF_CSUM; break;
    case FN_IPPROTO_ICMP: co = FN_ICMP_OFF_CSUM; pseudo = 0; break;
    case FN_IPPROTO_ICMPV6: co = FN_ICMP_OFF_CSUM; break;
    default: return;
    }
    l4[co] = l4[co + 1] = 0;
    uint16_t v = fn_checksum(l4, l4_len, pseudo);
    if (v == 0 && proto == FN_IPPROTO_UDP)
        v = 0xffff; /* RFC 768: zero is "no checksum" */
    fn_st_be16(l4 + co, v);
}

void fn_ipv4_fill_l4(uint8_t *ip) {
    size_t hl = (size_t)(ip[0] & 0x0f) * 4;
    size_t l4_len = fn_ld_be16(ip + FN_IPV4_OFF_LEN) - hl;
    uint8_t proto = ip[FN_IPV4_OFF_PROTO];
    fill_l4(ip + hl, l4_len, proto,
            fn_csum_pseudo4(ip + FN_IPV4_OFF_SRC, ip + FN_IPV4_OFF_DST, proto, (uint32_t)l4_len));
}

void fn_ipv6_fill_l4(uint8_t *ip) {
    size_t l4_len = fn_ld_be16(ip + FN_IPV6_OFF_PLEN);
    uint8_t proto = ip[FN_IPV6_OFF_NXT];
    fill_l4(ip + FN_IPV6_HLEN, l4_len, proto,
            fn_csum_pseudo6(ip + FN_IPV6_OFF_SRC, ip + FN_IPV6_OFF_DST, proto, (uint32_t)l4_len));
}
