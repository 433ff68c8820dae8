/* One-pass frame classification: Ethernet II (+ one 802.1Q tag) → ARP | IPv4 | IPv6
 * (+ extension headers) → TCP | UDP | ICMPv4 | ICMPv6.
 *
 * Contract: fn_parse_frame() reads only bytes inside [p, p + n). When it returns 0 (FN_OK)
 * every offset/length in the struct lies inside the buffer, so a caller may read the
 * headers it names without further checks. On failure it returns a negative FN_E* code
 * naming the first thing that is wrong (fn_strerror() spells it out) and the struct
 * holds what was parsed so far (kind is FN_KIND_INVALID).
 *
 * Offsets are from the start of the frame. A frame longer than its IP total length (the
 * Ethernet minimum-size padding) is accepted; `len` is the meaningful part. */
#ifndef FN_WIRE_H
#define FN_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "fn_bytes.h"

/* ---- field offsets and constants (RFC 894, 826, 791, 8200, 793, 768, 792, 4443) ---- */
#define FN_ETH_HLEN 14
#define FN_ETH_OFF_DST 0
#define FN_ETH_OFF_SRC 6
#define FN_ETH_OFF_TYPE 12
#define FN_VLAN_HLEN 4
#define FN_ETHERTYPE_IPV4 0x0800
#define FN_ETHERTYPE_ARP 0x0806
#define FN_ETHERTYPE_VLAN 0x8100
#define FN_ETHERTYPE_IPV6 0x86dd

#define FN_ARP_LEN 28
#define FN_ARP_OFF_HTYPE 0
#define FN_ARP_OFF_PTYPE 2
#define FN_ARP_OFF_HLEN 4
#define FN_ARP_OFF_PLEN 5
#define FN_ARP_OFF_OPER 6
#define FN_ARP_OFF_SHA 8
#define FN_ARP_OFF_SPA 14
#define FN_ARP_OFF_THA 18
#define FN_ARP_OFF_TPA 24

#define FN_IPV4_HLEN 20
#define FN_IPV4_OFF_VIHL 0
#define FN_IPV4_OFF_TOS 1
#define FN_IPV4_OFF_LEN 2
#define FN_IPV4_OFF_ID 4
#define FN_IPV4_OFF_FRAG 6
#define FN_IPV4_OFF_TTL 8
#define FN_IPV4_OFF_PROTO 9
#define FN_IPV4_OFF_CSUM 10
#define FN_IPV4_OFF_SRC 12
#define FN_IPV4_OFF_DST 16
#define FN_IPV4_FLAG_DF 0x4000
#define FN_IPV4_FLAG_MF 0x2000
#define FN_IPV4_FRAG_MASK 0x1fff

#define FN_IPV6_HLEN 40
#define FN_IPV6_OFF_PLEN 4
#define FN_IPV6_OFF_NXT 6
#define FN_IPV6_OFF_HLIM 7
#define FN_IPV6_OFF_SRC 8
#define FN_IPV6_OFF_DST 24
#define FN_IPV6_MAX_EXT 8 /* extension headers followed before giving up */

#define FN_IPPROTO_HOPOPTS 0
#define FN_IPPROTO_ICMP 1
#define FN_IPPROTO_TCP 6
#define FN_IPPROTO_UDP 17
#define FN_IPPROTO_ROUTING 43
#define FN_IPPROTO_FRAGMENT 44
#define FN_IPPROTO_AH 51
#define FN_IPPROTO_ICMPV6 58
#define FN_IPPROTO_NONE 59
#define FN_IPPROTO_DSTOPTS 60

#define FN_TCP_HLEN 20
#define FN_TCP_OFF_SPORT 0
#define FN_TCP_OFF_DPORT 2
#define FN_TCP_OFF_SEQ 4
#define FN_TCP_OFF_ACK 8
#define FN_TCP_OFF_DOFF 12
#define FN_TCP_OFF_FLAGS 13
#define FN_TCP_OFF_WIN 14
#define FN_TCP_OFF_CSUM 16
#define FN_TCP_OFF_URG 18
#define FN_TCP_MAX_HLEN 60
#define FN_TCP_FIN 0x01
#define FN_TCP_SYN 0x02
#define FN_TCP_RST 0x04
#define FN_TCP_PSH 0x08
#define FN_TCP_ACK 0x10
#define FN_TCP_URG 0x20
#define FN_TCP_ECE 0x40
#define FN_TCP_CWR 0x80
#define FN_TCPOPT_EOL 0
#define FN_TCPOPT_NOP 1
#define FN_TCPOPT_MSS 2
#define FN_TCPOPT_WSCALE 3
#define FN_TCPOPT_SACK_PERM 4
#define FN_TCPOPT_SACK 5
#define FN_TCPOPT_TIMESTAMP 8
#define FN_TCP_MAX_SACK 4

#define FN_UDP_HLEN 8
#define FN_UDP_OFF_SPORT 0
#define FN_UDP_OFF_DPORT 2
#define FN_UDP_OFF_LEN 4
#define FN_UDP_OFF_CSUM 6

#define FN_ICMP_HLEN 8
#define FN_ICMP_OFF_TYPE 0
#define FN_ICMP_OFF_CODE 1
#define FN_ICMP_OFF_CSUM 2
#define FN_ICMP_OFF_ID 4
#define FN_ICMP_OFF_SEQ 6
#define FN_ICMPV6_MIN_LEN 4

/* ---- results ---- */
enum fn_kind {
    FN_KIND_INVALID = 0,
    FN_KIND_ETHERNET,   /* an EtherType we do not look into */
    FN_KIND_ARP,
    FN_KIND_IPV4,       /* IPv4 with a protocol we do not parse */
    FN_KIND_IPV4_FRAG,  /* an IPv4 fragment (MF or offset != 0): no L4 view */
    FN_KIND_TCP4,
    FN_KIND_UDP4,
    FN_KIND_ICMP4,
    FN_KIND_IPV6,       /* IPv6 with a next header we do not parse */
    FN_KIND_IPV6_FRAG,
    FN_KIND_TCP6,
    FN_KIND_UDP6,
    FN_KIND_ICMP6,
    FN_KIND_COUNT
};

enum fn_error {
    FN_OK = 0,
    FN_ETRUNC_ETH = -1,       /* shorter than an Ethernet header */
    FN_ETRUNC_VLAN = -2,      /* 802.1Q tag cut off */
    FN_ETRUNC_ARP = -3,       /* shorter than an Ethernet/IPv4 ARP packet */
    FN_EARP_FORMAT = -4,      /* ARP hardware/protocol type or sizes other than Ethernet/IPv4 */
    FN_ETRUNC_IPV4 = -5,      /* shorter than an IPv4 header */
    FN_EIP_VERSION = -6,      /* IP version field does not match the EtherType */
    FN_EIPV4_IHL = -7,        /* IHL below 5 or beyond the captured bytes */
    FN_EIPV4_TOTLEN = -8,     /* total length below the header or beyond the captured bytes */
    FN_ETRUNC_IPV6 = -9,      /* shorter than an IPv6 header */
    FN_EIPV6_PLEN = -10,      /* payload length beyond the captured bytes */
    FN_EIPV6_EXT = -11,       /* extension header cut off or chain too long */
    FN_ETRUNC_TCP = -12,      /* shorter than a TCP header */
    FN_ETCP_DOFF = -13,       /* data offset below 5 or beyond the segment */
    FN_ETCP_OPT = -14,        /* malformed TCP option (length or known-option size) */
    FN_ETRUNC_UDP = -15,      /* shorter than a UDP header */
    FN_EUDP_LEN = -16,        /* UDP length below 8 or beyond the IP payload */
    FN_ETRUNC_ICMP = -17,     /* shorter than an ICMP header */
    FN_EIPV4_CSUM = -18,      /* IPv4 header checksum wrong (fn_ipv4_verify only) */
    FN_EL4_CSUM = -19,        /* TCP/UDP/ICMP checksum wrong (fn_l4_verify only) */
    FN_EFRAME_LEN = -20,      /* length prefix in a stream is zero or beyond the maximum */
    FN_ERROR_MIN = -20
};

/* fn_frame.flags */
#define FN_FRAME_VLAN 0x0001
#define FN_FRAME_IP_OPTIONS 0x0002 /* IPv4 options or IPv6 extension headers present */
#define FN_FRAME_DF 0x0004
#define FN_FRAME_MF 0x0008
#define FN_FRAME_TCP_MSS 0x0010
#define FN_FRAME_TCP_WSCALE 0x0020
#define FN_FRAME_TCP_SACK_PERM 0x0040
#define FN_FRAME_TCP_TS 0x0080
#define FN_FRAME_TCP_SACK 0x0100
#define FN_FRAME_PADDED 0x0200 /* bytes after the IP datagram (Ethernet padding) */
#define FN_FRAME_UDP_TRAILER 0x0400 /* UDP length shorter than the IP payload */

struct fn_tcp_opts {
    uint16_t mss;
    uint8_t wscale;
    uint8_t nsack;
    uint32_t ts_val;
    uint32_t ts_ecr;
    uint32_t sack[FN_TCP_MAX_SACK][2]; /* [left, right) edges */
};

struct fn_frame {
    uint32_t len;         /* L2 header + IP datagram (excludes padding); whole frame if not IP */
    uint16_t flags;       /* FN_FRAME_* */
    uint8_t kind;         /* enum fn_kind */
    uint8_t l4_proto;     /* final IP protocol / next header (0 when not IP) */
    uint16_t ethertype;   /* after any VLAN tag */
    uint16_t vlan_tci;
    uint32_t l3_off;      /* start of ARP / IP header */
    uint32_t l3_len;      /* ARP: 28; IP: total datagram length */
    uint32_t l4_off;      /* start of the L4 header (after all IPv6 extension headers) */
    uint32_t l4_len;      /* L4 header + payload as the IP header says */
    uint32_t payload_off; /* start of the L4 payload (TCP: after options; ICMP: after 8 bytes) */
    uint32_t payload_len;
    uint16_t frag_off;    /* IPv4/IPv6 fragment offset in 8-byte units */
    uint16_t l3_hlen;     /* IPv4 IHL*4, IPv6 40 + extension headers */
    struct fn_tcp_opts tcp;
};

/* Parse frame p[0..n). Returns FN_OK or an FN_E* code; fills *f in both cases. */
int fn_parse_frame(const uint8_t *p, size_t n, struct fn_frame *f);

/* Parse an IP datagram without an Ethernet header (l3_off = 0); ethertype is set from the
 * version nibble. Used for IP views and for datagrams reassembled from fragments. */
int fn_parse_ip(const uint8_t *p, size_t n, struct fn_frame *f);

/* Parse TCP options p[0..n) into *o; returns FN_OK or FN_ETCP_OPT; *flags gets FN_FRAME_TCP_*. */
int fn_parse_tcp_options(const uint8_t *p, size_t n, struct fn_tcp_opts *o, uint16_t *flags);

/* IPv4 header checksum over the IHL bytes at p (p must hold them). FN_OK or FN_EIPV4_CSUM. */
int fn_ipv4_verify(const uint8_t *ip);

/* L4 checksum of a parsed frame (TCP, UDP, ICMPv4, ICMPv6). UDP checksum 0 over IPv4 means
 * "none" (RFC 768) and passes. FN_OK or FN_EL4_CSUM; FN_OK for kinds without L4. */
int fn_l4_verify(const uint8_t *p, const struct fn_frame *f);

/* Fill the L4 checksum of a parsed frame in place (TCP, UDP, ICMPv4, ICMPv6). */
void fn_l4_fill(uint8_t *p, const struct fn_frame *f);

const char *fn_strerror(int code);
const char *fn_kind_name(int kind);

/* ---- batches: frames back to back, each behind a length prefix ---- */
struct fn_summary {
    uint32_t off;         /* frame start (after its prefix) within the buffer */
    uint32_t len;         /* frame length from the prefix */
    int8_t status;        /* FN_OK or FN_E* */
    uint8_t kind;
    uint8_t l4_proto;
    uint8_t tcp_flags;    /* TCP flags byte for TCP kinds, else 0 */
    uint32_t l3_off;      /* relative to off */
    uint32_t l4_off;
    uint32_t payload_off;
    uint32_t payload_len;
};

/* Classify every complete frame in p[0..n), each preceded by a `prefix`-byte (2 or 4)
 * length in little- or big-endian order. Stops at out_cap frames, at a partial frame, or at a
 * zero/oversized length (which yields one summary with FN_EFRAME_LEN and stops: the stream
 * cannot be resynchronised). Returns the number of summaries; *consumed gets the bytes fully
 * used. max_frame bounds a prefix (0 = no bound beyond the prefix width). */
size_t fn_classify_stream(const uint8_t *p, size_t n, int prefix, int big_endian, size_t max_frame,
                          struct fn_summary *out, size_t out_cap, size_t *consumed);

/* The same for frames given as (offset, length) pairs into one buffer (datagram links). */
size_t fn_classify_spans(const uint8_t *p, size_t n, const uint32_t *offs, const uint32_t *lens,
                         size_t count, struct fn_summary *out);

#endif
