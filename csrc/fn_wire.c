/* Frame classification. Every read is preceded by a length check against `n` (the
 * captured bytes) or against a length already checked against it; the comment on each
 * block names the check that makes its reads safe. */
#include "fn_wire.h"

#include "fn_checksum.h"

int fn_parse_tcp_options(const uint8_t *p, size_t n, struct fn_tcp_opts *o, uint16_t *flags) {
    size_t i = 0;
    while (i < n) {
        uint8_t kind = p[i];
        if (kind == FN_TCPOPT_EOL)
            break;
        if (kind == FN_TCPOPT_NOP) {
            i++;
            continue;
        }
        /* Every other option has a length byte (RFC 9293 §3.1) counting kind and length. */
        if (i + 1 >= n)
            return FN_ETCP_OPT;
        uint8_t olen = p[i + 1];
        if (olen < 2 || i + olen > n)
            return FN_ETCP_OPT;
        const uint8_t *v = p + i + 2;
        switch (kind) {
        case FN_TCPOPT_MSS:
            if (olen != 4)
                return FN_ETCP_OPT;
            o->mss = fn_ld_be16(v);
            *flags |= FN_FRAME_TCP_MSS;
            break;
        case FN_TCPOPT_WSCALE: /* RFC 7323 §2.2 */
            if (olen != 3)
                return FN_ETCP_OPT;
            o->wscale = v[0];
            *flags |= FN_FRAME_TCP_WSCALE;
            break;
        case FN_TCPOPT_SACK_PERM: /* RFC 2018 §2 */
            if (olen != 2)
                return FN_ETCP_OPT;
            *flags |= FN_FRAME_TCP_SACK_PERM;
            break;
        case FN_TCPOPT_SACK: { /* RFC 2018 §3: 8*n + 2 bytes, at most 4 blocks fit */
            if (olen < 10 || (olen - 2) % 8 != 0)
                return FN_ETCP_OPT;
            size_t nb = (size_t)(olen - 2) / 8;
            o->nsack = (uint8_t)nb;
            for (size_t b = 0; b < nb; b++) {
                o->sack[b][0] = fn_ld_be32(v + 8 * b);
                o->sack[b][1] = fn_ld_be32(v + 8 * b + 4);
            }
            *flags |= FN_FRAME_TCP_SACK;
            break;
        }
        case FN_TCPOPT_TIMESTAMP: /* RFC 7323 §3.2 */
            if (olen != 10)
                return FN_ETCP_OPT;
            o->ts_val = fn_ld_be32(v);
            o->ts_ecr = fn_ld_be32(v + 4);
            *flags |= FN_FRAME_TCP_TS;
            break;
        default:
            break; /* unknown options are skipped by their length (RFC 9293 §3.1) */
        }
        i += olen;
    }
    return FN_OK;
}

/* L4 headers inside an IP datagram: [off, off + len) is inside the buffer (checked by the
 * callers against the IP length, which is checked against n). */
static int parse_l4(const uint8_t *p, struct fn_frame *f, int v6) {
    uint32_t off = f->l4_off, len = f->l4_len;
    const uint8_t *l4 = p + off;
    switch (f->l4_proto) {
    case FN_IPPROTO_TCP: {
        if (len < FN_TCP_HLEN)
            return FN_ETRUNC_TCP;
        uint32_t hl = (uint32_t)(l4[FN_TCP_OFF_DOFF] >> 4) * 4;
        if (hl < FN_TCP_HLEN || hl > len)
            return FN_ETCP_DOFF;
        if (hl > FN_TCP_HLEN) {
            int rc = fn_parse_tcp_options(l4 + FN_TCP_HLEN, hl - FN_TCP_HLEN, &f->tcp, &f->flags);
            if (rc)
                return rc;
        }
        f->payload_off = off + hl;
        f->payload_len = len - hl;
        f->kind = v6 ? FN_KIND_TCP6 : FN_KIND_TCP4;
        return FN_OK;
    }
    case FN_IPPROTO_UDP: {
        if (len < FN_UDP_HLEN)
            return FN_ETRUNC_UDP;
        uint32_t ulen = fn_ld_be16(l4 + FN_UDP_OFF_LEN);
        /* RFC 768: the length covers header and data. Shorter than the IP payload is legal
         * (trailing bytes are ignored, as Linux does); longer is not. A jumbogram's 0 is not
         * supported (no IPv6 jumbo payloads here). */
        if (ulen < FN_UDP_HLEN || ulen > len)
            return FN_EUDP_LEN;
        if (ulen < len)
            f->flags |= FN_FRAME_UDP_TRAILER;
        f->l4_len = ulen;
        f->payload_off = off + FN_UDP_HLEN;
        f->payload_len = ulen - FN_UDP_HLEN;
        f->kind = v6 ? FN_KIND_UDP6 : FN_KIND_UDP4;
        return FN_OK;
    }
    case FN_IPPROTO_ICMP:
        if (v6)
            break;
        if (len < FN_ICMP_HLEN)
            return FN_ETRUNC_ICMP;
        f->payload_off = off + FN_ICMP_HLEN;
        f->payload_len = len - FN_ICMP_HLEN;
        f->kind = FN_KIND_ICMP4;
        return FN_OK;
    case FN_IPPROTO_ICMPV6: {
        if (!v6)
            break;
        if (len < FN_ICMPV6_MIN_LEN)
            return FN_ETRUNC_ICMP;
        /* Echo and the error messages carry 4 more header bytes; the rest start data at 4. */
        uint32_t hl = len >= FN_ICMP_HLEN ? FN_ICMP_HLEN : FN_ICMPV6_MIN_LEN;
        f->payload_off = off + hl;
        f->payload_len = len - hl;
        f->kind = FN_KIND_ICMP6;
        return FN_OK;
    }
    default:
        break;
    }
    f->payload_off = off;
    f->payload_len = len;
    f->kind = v6 ? FN_KIND_IPV6 : FN_KIND_IPV4;
    return FN_OK;
}

static int parse_ipv4(const uint8_t *p, size_t n, uint32_t off, struct fn_frame *f) {
    if (n - off < FN_IPV4_HLEN)
        return FN_ETRUNC_IPV4;
    const uint8_t *ip = p + off;
    if ((ip[FN_IPV4_OFF_VIHL] >> 4) != 4)
        return FN_EIP_VERSION;
    uint32_t hl = (uint32_t)(ip[FN_IPV4_OFF_VIHL] & 0x0f) * 4;
    if (hl < FN_IPV4_HLEN || hl > n - off)
        return FN_EIPV4_IHL;
    uint32_t tot = fn_ld_be16(ip + FN_IPV4_OFF_LEN);
    if (tot < hl || tot > n - off)
        return FN_EIPV4_TOTLEN;
    f->l3_off = off;
    f->l3_len = tot;
    f->l3_hlen = (uint16_t)hl;
    f->len = off + tot;
    if (off + tot < n)
        f->flags |= FN_FRAME_PADDED;
    if (hl > FN_IPV4_HLEN)
        f->flags |= FN_FRAME_IP_OPTIONS;
    uint16_t fr = fn_ld_be16(ip + FN_IPV4_OFF_FRAG);
    if (fr & FN_IPV4_FLAG_DF)
        f->flags |= FN_FRAME_DF;
    if (fr & FN_IPV4_FLAG_MF)
        f->flags |= FN_FRAME_MF;
    f->frag_off = fr & FN_IPV4_FRAG_MASK;
    f->l4_proto = ip[FN_IPV4_OFF_PROTO];
    f->l4_off = off + hl;
    f->l4_len = tot - hl;
    if ((fr & FN_IPV4_FLAG_MF) || f->frag_off) {
        /* A fragment's L4 header is only complete after reassembly (RFC 791 §3.2). */
        f->payload_off = f->l4_off;
        f->payload_len = f->l4_len;
        f->kind = FN_KIND_IPV4_FRAG;
        return FN_OK;
    }
    return parse_l4(p, f, 0);
}

static int parse_ipv6(const uint8_t *p, size_t n, uint32_t off, struct fn_frame *f) {
    if (n - off < FN_IPV6_HLEN)
        return FN_ETRUNC_IPV6;
    const uint8_t *ip = p + off;
    if ((ip[0] >> 4) != 6)
        return FN_EIP_VERSION;
    uint32_t plen = fn_ld_be16(ip + FN_IPV6_OFF_PLEN);
    if (plen > n - off - FN_IPV6_HLEN)
        return FN_EIPV6_PLEN;
    f->l3_off = off;
    f->l3_len = FN_IPV6_HLEN + plen;
    f->len = off + FN_IPV6_HLEN + plen;
    if (f->len < n)
        f->flags |= FN_FRAME_PADDED;
    /* Walk the extension headers (RFC 8200 §4) inside the payload length. */
    uint8_t nxt = ip[FN_IPV6_OFF_NXT];
    uint32_t pos = FN_IPV6_HLEN, end = FN_IPV6_HLEN + plen;
    int frag = 0;
    for (int i = 0;; i++) {
        uint32_t el;
        if (nxt == FN_IPPROTO_HOPOPTS || nxt == FN_IPPROTO_ROUTING || nxt == FN_IPPROTO_DSTOPTS) {
            if (end - pos < 8)
                return FN_EIPV6_EXT;
            el = ((uint32_t)ip[pos + 1] + 1) * 8;
        } else if (nxt == FN_IPPROTO_FRAGMENT) {
            if (end - pos < 8)
                return FN_EIPV6_EXT;
            el = 8;
            uint16_t fo = fn_ld_be16(ip + pos + 2);
            f->frag_off = fo >> 3;
            if (fo & 1)
                f->flags |= FN_FRAME_MF;
            /* An atomic fragment (offset 0, M=0, RFC 6946) is a whole datagram. */
            frag = (fo & 1) || (fo >> 3);
        } else if (nxt == FN_IPPROTO_AH) {
            if (end - pos < 8)
                return FN_EIPV6_EXT;
            el = ((uint32_t)ip[pos + 1] + 2) * 4; /* RFC 4302 §2.2 counts 32-bit words */
        } else {
            break;
        }
        if (i >= FN_IPV6_MAX_EXT || el > end - pos)
            return FN_EIPV6_EXT;
        f->flags |= FN_FRAME_IP_OPTIONS;
        nxt = ip[pos];
        pos += el;
        /* After a non-first fragment's header come bytes from the middle of the original
         * payload, not headers (RFC 8200 §4.5): there is nothing more to walk. */
        if (frag && f->frag_off)
            break;
    }
    f->l3_hlen = (uint16_t)pos;
    f->l4_proto = nxt;
    f->l4_off = off + pos;
    f->l4_len = end - pos;
    if (frag) {
        f->payload_off = f->l4_off;
        f->payload_len = f->l4_len;
        f->kind = FN_KIND_IPV6_FRAG;
        return FN_OK;
    }
    if (nxt == FN_IPPROTO_NONE) {
        f->payload_off = f->l4_off;
        f->payload_len = f->l4_len;
        f->kind = FN_KIND_IPV6;
        return FN_OK;
    }
    return parse_l4(p, f, 1);
}

static int parse_arp(const uint8_t *p, size_t n, uint32_t off, struct fn_frame *f) {
    if (n - off < FN_ARP_LEN)
        return FN_ETRUNC_ARP;
    const uint8_t *a = p + off;
    /* Only Ethernet/IPv4 ARP (RFC 826 with htype 1, ptype 0x0800) has meaning here. */
    if (fn_ld_be16(a + FN_ARP_OFF_HTYPE) != 1 || fn_ld_be16(a + FN_ARP_OFF_PTYPE) != FN_ETHERTYPE_IPV4 ||
        a[FN_ARP_OFF_HLEN] != 6 || a[FN_ARP_OFF_PLEN] != 4)
        return FN_EARP_FORMAT;
    f->l3_off = off;
    f->l3_len = FN_ARP_LEN;
    f->len = off + FN_ARP_LEN;
    if (f->len < n)
        f->flags |= FN_FRAME_PADDED;
    f->kind = FN_KIND_ARP;
    return FN_OK;
}

static void frame_init(struct fn_frame *f, size_t n) {
    memset(f, 0, sizeof(*f));
    f->len = (uint32_t)n;
}

int fn_parse_frame(const uint8_t *p, size_t n, struct fn_frame *f) {
    frame_init(f, n);
    if (n < FN_ETH_HLEN)
        return FN_ETRUNC_ETH;
    if (n > 0xffffffffu - 1)
        return FN_EFRAME_LEN;
    uint32_t off = FN_ETH_HLEN;
    uint16_t et = fn_ld_be16(p + FN_ETH_OFF_TYPE);
    if (et == FN_ETHERTYPE_VLAN) {
        if (n < FN_ETH_HLEN + FN_VLAN_HLEN)
            return FN_ETRUNC_VLAN;
        f->flags |= FN_FRAME_VLAN;
        f->vlan_tci = fn_ld_be16(p + FN_ETH_HLEN); /* TCI follows the 0x8100 TPID */
        et = fn_ld_be16(p + FN_ETH_HLEN + 2);
        off += FN_VLAN_HLEN;
    }
    f->ethertype = et;
    f->l3_off = off;
    int rc;
    switch (et) {
    case FN_ETHERTYPE_IPV4:
        rc = parse_ipv4(p, n, off, f);
        break;
    case FN_ETHERTYPE_IPV6:
        rc = parse_ipv6(p, n, off, f);
        break;
    case FN_ETHERTYPE_ARP:
        rc = parse_arp(p, n, off, f);
        break;
    default:
        f->kind = FN_KIND_ETHERNET;
        f->payload_off = off;
        f->payload_len = (uint32_t)n - off;
        return FN_OK;
    }
    if (rc)
        f->kind = FN_KIND_INVALID;
    return rc;
}

int fn_parse_ip(const uint8_t *p, size_t n, struct fn_frame *f) {
    frame_init(f, n);
    if (n < 1)
        return FN_ETRUNC_IPV4;
    if (n > 0xffffffffu - 1)
        return FN_EFRAME_LEN;
    int rc;
    if ((p[0] >> 4) == 6) {
        f->ethertype = FN_ETHERTYPE_IPV6;
        rc = parse_ipv6(p, n, 0, f);
    } else {
        f->ethertype = FN_ETHERTYPE_IPV4;
        rc = parse_ipv4(p, n, 0, f);
    }
    if (rc)
        f->kind = FN_KIND_INVALID;
    return rc;
}

int fn_ipv4_verify(const uint8_t *ip) {
    uint32_t hl = (uint32_t)(ip[0] & 0x0f) * 4;
    return fn_csum_partial(ip, hl, 0) == 0xffff ? FN_OK : FN_EIPV4_CSUM;
}

/* The destination for an IPv6 pseudo-header (RFC 8200 §8.1): the final one. With a Routing
 * header whose Segments Left is not zero the packet is still on its way through waypoints and
 * the header's destination is the next of them; the final destination is the last address of
 * a type 0 or 2 header, and Segment List[0] of a Segment Routing header (type 4, RFC 8754
 * §2: the list is in reverse order). The headers were validated by the parse. */
static const uint8_t *ipv6_final_dst(const uint8_t *ip, const struct fn_frame *f) {
    const uint8_t *dst = ip + FN_IPV6_OFF_DST;
    uint8_t nxt = ip[FN_IPV6_OFF_NXT];
    uint32_t pos = FN_IPV6_HLEN, end = f->l4_off - f->l3_off;
    while (pos + 8 <= end) {
        uint32_t el;
        if (nxt == FN_IPPROTO_HOPOPTS || nxt == FN_IPPROTO_ROUTING || nxt == FN_IPPROTO_DSTOPTS)
            el = ((uint32_t)ip[pos + 1] + 1) * 8;
        else if (nxt == FN_IPPROTO_FRAGMENT)
            el = 8;
        else if (nxt == FN_IPPROTO_AH)
            el = ((uint32_t)ip[pos + 1] + 2) * 4;
        else
            break;
        if (el > end - pos)
            break;
        if (nxt == FN_IPPROTO_ROUTING && ip[pos + 3] != 0 && el >= 24) {
            uint8_t type = ip[pos + 2];
            if (type == 0 || type == 2)
                dst = ip + pos + 8 + ((el - 8) / 16 - 1) * 16;
            else if (type == 4)
                dst = ip + pos + 8;
        }
        nxt = ip[pos];
        pos += el;
    }
    return dst;
}

/* Sum of pseudo-header (if any) and the L4 bytes; 0xffff means the checksum verifies. */
static uint32_t l4_sum(const uint8_t *p, const struct fn_frame *f) {
    const uint8_t *ip = p + f->l3_off;
    uint32_t s = 0;
    switch (f->kind) {
    case FN_KIND_TCP4:
    case FN_KIND_UDP4:
        s = fn_csum_pseudo4(ip + FN_IPV4_OFF_SRC, ip + FN_IPV4_OFF_DST, f->l4_proto, f->l4_len);
        break;
    case FN_KIND_TCP6:
    case FN_KIND_UDP6:
    case FN_KIND_ICMP6:
        s = fn_csum_pseudo6(ip + FN_IPV6_OFF_SRC,
                            (f->flags & FN_FRAME_IP_OPTIONS) ? ipv6_final_dst(ip, f) : ip + FN_IPV6_OFF_DST,
                            f->l4_proto, f->l4_len);
        break;
    default: /* ICMPv4 has no pseudo-header (RFC 792) */
        break;
    }
    return fn_csum_partial(p + f->l4_off, f->l4_len, s);
}

static int csum_field_off(int kind) {
    switch (kind) {
    case FN_KIND_TCP4:
    case FN_KIND_TCP6:
        return FN_TCP_OFF_CSUM;
    case FN_KIND_UDP4:
    case FN_KIND_UDP6:
        return FN_UDP_OFF_CSUM;
    case FN_KIND_ICMP4:
    case FN_KIND_ICMP6:
        return FN_ICMP_OFF_CSUM;
    default:
        return -1;
    }
}

int fn_l4_verify(const uint8_t *p, const struct fn_frame *f) {
    int co = csum_field_off(f->kind);
    if (co < 0)
        return FN_OK;
    if (f->kind == FN_KIND_UDP4 && fn_ld_be16(p + f->l4_off + co) == 0)
        return FN_OK; /* RFC 768: zero means the sender computed none */
    return l4_sum(p, f) == 0xffff ? FN_OK : FN_EL4_CSUM;
}

void fn_l4_fill(uint8_t *p, const struct fn_frame *f) {
    int co = csum_field_off(f->kind);
    if (co < 0)
        return;
    uint8_t *c = p + f->l4_off + co;
    c[0] = c[1] = 0;
    uint16_t v = fn_csum_finish(l4_sum(p, f));
    /* RFC 768 / RFC 8200 §8.1: a computed UDP checksum of 0 is sent as all ones. */
    if (v == 0 && (f->kind == FN_KIND_UDP4 || f->kind == FN_KIND_UDP6))
        v = 0xffff;
    fn_st_be16(c, v);
}

const char *fn_strerror(int code) {
    switch (code) {
    case FN_OK: return "ok";
    case FN_ETRUNC_ETH: return "truncated Ethernet header";
    case FN_ETRUNC_VLAN: return "truncated 802.1Q tag";
    case FN_ETRUNC_ARP: return "truncated ARP packet";
    case FN_EARP_FORMAT: return "ARP packet is not Ethernet/IPv4";
    case FN_ETRUNC_IPV4: return "truncated IPv4 header";
    case FN_EIP_VERSION: return "IP version does not match the EtherType";
    case FN_EIPV4_IHL: return "bad IPv4 header length (IHL)";
    case FN_EIPV4_TOTLEN: return "bad IPv4 total length";
    case FN_ETRUNC_IPV6: return "truncated IPv6 header";
    case FN_EIPV6_PLEN: return "bad IPv6 payload length";
    case FN_EIPV6_EXT: return "bad IPv6 extension header";
    case FN_ETRUNC_TCP: return "truncated TCP header";
    case FN_ETCP_DOFF: return "bad TCP data offset";
    case FN_ETCP_OPT: return "malformed TCP option";
    case FN_ETRUNC_UDP: return "truncated UDP header";
    case FN_EUDP_LEN: return "bad UDP length";
    case FN_ETRUNC_ICMP: return "truncated ICMP header";
    case FN_EIPV4_CSUM: return "bad IPv4 header checksum";
    case FN_EL4_CSUM: return "bad L4 checksum";
    case FN_EFRAME_LEN: return "bad frame length prefix";
    default: return "unknown error";
    }
}

const char *fn_kind_name(int kind) {
    static const char *const names[FN_KIND_COUNT] = {
        "invalid", "ethernet", "arp", "ipv4", "ipv4-fragment", "tcp4", "udp4", "icmp4",
        "ipv6", "ipv6-fragment", "tcp6", "udp6", "icmp6"};
    return kind >= 0 && kind < FN_KIND_COUNT ? names[kind] : "unknown";
}

static void summarise(const uint8_t *p, size_t len, uint32_t off, struct fn_summary *s) {
    struct fn_frame f;
    int rc = fn_parse_frame(p + off, len, &f);
    s->off = off;
    s->len = (uint32_t)len;
    s->status = (int8_t)rc;
    s->kind = f.kind;
    s->l4_proto = f.l4_proto;
    s->tcp_flags = (f.kind == FN_KIND_TCP4 || f.kind == FN_KIND_TCP6) ? p[off + f.l4_off + FN_TCP_OFF_FLAGS] : 0;
    s->l3_off = f.l3_off;
    s->l4_off = f.l4_off;
    s->payload_off = f.payload_off;
    s->payload_len = f.payload_len;
}

size_t fn_classify_stream(const uint8_t *p, size_t n, int prefix, int big_endian, size_t max_frame,
                          struct fn_summary *out, size_t out_cap, size_t *consumed) {
    size_t pos = 0, k = 0;
    if (prefix != 2 && prefix != 4) {
        *consumed = 0;
        return 0;
    }
    while (k < out_cap && n - pos >= (size_t)prefix) {
        const uint8_t *h = p + pos;
        size_t len;
        if (prefix == 2)
            len = big_endian ? fn_ld_be16(h) : fn_ld_le16(h);
        else
            len = big_endian ? fn_ld_be32(h) : fn_ld_le32(h);
        if (len == 0 || (max_frame && len > max_frame) || len > 0xffff0000u) {
            memset(&out[k], 0, sizeof(out[k]));
            out[k].off = (uint32_t)(pos + prefix);
            out[k].len = (uint32_t)(len > 0xffffffffu ? 0xffffffffu : len);
            out[k].status = FN_EFRAME_LEN;
            k++;
            break;
        }
        if (n - pos - prefix < len)
            break; /* partial frame: the caller keeps the tail for the next read */
        summarise(p, len, (uint32_t)(pos + prefix), &out[k]);
        k++;
        pos += prefix + len;
    }
    *consumed = pos;
    return k;
}

size_t fn_classify_spans(const uint8_t *p, size_t n, const uint32_t *offs, const uint32_t *lens,
                         size_t count, struct fn_summary *out) {
    size_t k;
    for (k = 0; k < count; k++) {
        if ((size_t)offs[k] > n || (size_t)lens[k] > n - offs[k]) {
            memset(&out[k], 0, sizeof(out[k]));
            out[k].off = offs[k];
            out[k].len = lens[k];
            out[k].status = FN_EFRAME_LEN;
            continue;
        }
        summarise(p, lens[k], offs[k], &out[k]);
    }
    return k;
}
