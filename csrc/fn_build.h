/* Header builders: write headers in place into a caller's buffer, checksums filled.
 *
 * Each builder writes at p and returns the number of bytes written; the caller guarantees
 * room (the sizes are fixed or bounded: FN_TCP_MAX_HLEN for TCP). Addresses are given as
 * bytes in wire order. The L4 builders expect the payload to be in place already, right
 * after the header they write, because the checksum covers it. */
#ifndef FN_BUILD_H
#define FN_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "fn_wire.h"

size_t fn_build_eth(uint8_t *p, const uint8_t dst[6], const uint8_t src[6], uint16_t ethertype);
/* Ethernet header with an 802.1Q tag (18 bytes). */
size_t fn_build_eth_vlan(uint8_t *p, const uint8_t dst[6], const uint8_t src[6], uint16_t tci,
                         uint16_t ethertype);

size_t fn_build_arp(uint8_t *p, uint16_t oper, const uint8_t sha[6], const uint8_t spa[4],
                    const uint8_t tha[6], const uint8_t tpa[4]);

struct fn_ipv4_spec {
    uint8_t src[4];
    uint8_t dst[4];
    uint8_t proto;
    uint8_t ttl;
    uint8_t tos;
    uint8_t opt_len;      /* bytes of options (multiple of 4, at most 40) */
    uint16_t id;
    uint16_t frag;        /* flags (DF/MF) and offset, as in the header */
    const uint8_t *options;
};
/* IPv4 header with options; total length = header + payload_len; header checksum filled. */
size_t fn_build_ipv4(uint8_t *p, const struct fn_ipv4_spec *s, size_t payload_len);

/* IPv6 fixed header (no extension headers). */
size_t fn_build_ipv6(uint8_t *p, const uint8_t src[16], const uint8_t dst[16], uint8_t next_header,
                     uint8_t hop_limit, uint32_t flow_label, uint8_t traffic_class, size_t payload_len);

/* Which options fn_build_tcp writes. */
#define FN_TCPB_MSS 0x01
#define FN_TCPB_WSCALE 0x02
#define FN_TCPB_SACK_PERM 0x04
#define FN_TCPB_TS 0x08
#define FN_TCPB_SACK 0x10

struct fn_tcp_spec {
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint8_t flags;
    uint8_t opts;         /* FN_TCPB_* */
    uint16_t window;
    uint16_t urgent;
    struct fn_tcp_opts o; /* values for the options named in opts (nsack blocks for SACK) */
};

/* TCP header (options laid out as Linux does: 4-byte aligned with NOPs). The checksum field
 * is left zero: fill it with fn_tcp4_fill / fn_l4_fill once the payload is in place. */
size_t fn_build_tcp(uint8_t *p, const struct fn_tcp_spec *s);
/* Length fn_build_tcp would write. */
size_t fn_tcp_hlen(const struct fn_tcp_spec *s);

/* UDP header, length = 8 + payload_len; checksum left zero. */
size_t fn_build_udp(uint8_t *p, uint16_t sport, uint16_t dport, size_t payload_len);

/* ICMP (v4 or v6) header: type, code and the 4 "rest of header" bytes; checksum left zero. */
size_t fn_build_icmp(uint8_t *p, uint8_t type, uint8_t code, uint32_t rest);

/* Checksums over an IPv4 datagram at ip (header already built): L4 checksum for TCP, UDP
 * or ICMP according to the protocol field. */
void fn_ipv4_fill_l4(uint8_t *ip);
/* The same for an IPv6 datagram without extension headers. */
void fn_ipv6_fill_l4(uint8_t *ip);

#endif
