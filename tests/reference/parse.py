"""A small, slow, struct-based frame parser: the oracle for fastnet's one-pass C classifier.

It follows the RFC layouts and the acceptance rules written down in csrc/fn_wire.h (what is
malformed, and which error is named first) in the most direct way, header by header, and
returns a plain dict. It shares no code with fastnet.

``parse_frame(data)`` returns::

    kind          "ethernet" "arp" "ipv4" "ipv4-fragment" "tcp4" "udp4" "icmp4"
                  "ipv6" "ipv6-fragment" "tcp6" "udp6" "icmp6"   (fastnet.wire.kind_name)
    len           L2 header + IP datagram (+ 28 for ARP); the whole frame otherwise
    ethertype, vlan_tci (None when untagged), l4_proto
    l3_off, l3_len, l3_hlen, l4_off, l4_len, payload_off, payload_len   (from frame start)
    frag_offset (8-byte units), dont_fragment, more_fragments
    vlan, ip_options, padded, udp_trailer                               (booleans)
    mss, window_scale (None when absent), sack_permitted, timestamps ((val, ecr) or None),
    sack_blocks (tuple of (left, right))

and raises ``ReferenceMalformed`` (a ValueError) whose ``reason`` is the text fastnet uses
for the same defect (fn_strerror).
"""

from __future__ import annotations

import struct

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_IPV6 = 0x86DD

IPV6_EXT_HEADERS = {0: "hop-by-hop", 43: "routing", 44: "fragment", 51: "ah", 60: "destination"}
IPV6_MAX_EXT = 8
TCP, UDP, ICMP, ICMPV6, NO_NEXT = 6, 17, 1, 58, 59


class ReferenceMalformed(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _bad(reason: str):
    raise ReferenceMalformed(reason)


def parse_tcp_options(opts: bytes) -> dict:
    """RFC 9293 §3.1 option list: kind, length (counting kind and length), value."""
    out = {"mss": None, "window_scale": None, "sack_permitted": False, "timestamps": None,
           "sack_blocks": ()}
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:  # end of option list
            break
        if kind == 1:  # no-operation
            i += 1
            continue
        if i + 1 >= len(opts):
            _bad("malformed TCP option")
        olen = opts[i + 1]
        if olen < 2 or i + olen > len(opts):
            _bad("malformed TCP option")
        value = opts[i + 2:i + olen]
        if kind == 2:
            if olen != 4:
                _bad("malformed TCP option")
            (out["mss"],) = struct.unpack("!H", value)
        elif kind == 3:
            if olen != 3:
                _bad("malformed TCP option")
            out["window_scale"] = value[0]
        elif kind == 4:
            if olen != 2:
                _bad("malformed TCP option")
            out["sack_permitted"] = True
        elif kind == 5:
            if olen < 10 or (olen - 2) % 8:
                _bad("malformed TCP option")
            edges = struct.unpack(f"!{(olen - 2) // 4}I", value)
            out["sack_blocks"] = tuple(zip(edges[0::2], edges[1::2]))
        elif kind == 8:
            if olen != 10:
                _bad("malformed TCP option")
            out["timestamps"] = struct.unpack("!II", value)
        i += olen
    return out


def _l4(data: bytes, r: dict, v6: bool) -> None:
    """TCP, UDP or ICMP at r["l4_off"], r["l4_len"] bytes long (as the IP header says)."""
    off, length, proto = r["l4_off"], r["l4_len"], r["l4_proto"]
    seg = data[off:off + length]
    family = "6" if v6 else "4"
    if proto == TCP:
        if length < 20:
            _bad("truncated TCP header")
        doff = (seg[12] >> 4) * 4
        if doff < 20 or doff > length:
            _bad("bad TCP data offset")
        r.update(parse_tcp_options(seg[20:doff]))
        r.update(kind="tcp" + family, payload_off=off + doff, payload_len=length - doff)
        return
    if proto == UDP:
        if length < 8:
            _bad("truncated UDP header")
        (ulen,) = struct.unpack("!H", seg[4:6])
        if ulen < 8 or ulen > length:
            _bad("bad UDP length")
        r.update(kind="udp" + family, l4_len=ulen, payload_off=off + 8, payload_len=ulen - 8,
                 udp_trailer=ulen < length)
        return
    if proto == ICMP and not v6:
        if length < 8:
            _bad("truncated ICMP header")
        r.update(kind="icmp4", payload_off=off + 8, payload_len=length - 8)
        return
    if proto == ICMPV6 and v6:
        if length < 4:
            _bad("truncated ICMP header")
        hl = 8 if length >= 8 else 4  # echo and errors have 4 more header bytes
        r.update(kind="icmp6", payload_off=off + hl, payload_len=length - hl)
        return
    r.update(kind="ipv6" if v6 else "ipv4", payload_off=off, payload_len=length)


def _ipv4(data: bytes, off: int, r: dict) -> None:
    """RFC 791 §3.1."""
    if len(data) - off < 20:
        _bad("truncated IPv4 header")
    vihl, tos, total, ident, frag, ttl, proto, csum = struct.unpack("!BBHHHBBH", data[off:off + 12])
    if vihl >> 4 != 4:
        _bad("IP version does not match the EtherType")
    hl = (vihl & 0x0F) * 4
    if hl < 20 or hl > len(data) - off:
        _bad("bad IPv4 header length (IHL)")
    if total < hl or total > len(data) - off:
        _bad("bad IPv4 total length")
    r.update(l3_off=off, l3_len=total, l3_hlen=hl, len=off + total, padded=off + total < len(data),
             ip_options=hl > 20, dont_fragment=bool(frag & 0x4000),
             more_fragments=bool(frag & 0x2000), frag_offset=frag & 0x1FFF, l4_proto=proto,
             l4_off=off + hl, l4_len=total - hl)
    if r["more_fragments"] or r["frag_offset"]:
        r.update(kind="ipv4-fragment", payload_off=off + hl, payload_len=total - hl)
        return
    _l4(data, r, v6=False)


def _ipv6(data: bytes, off: int, r: dict) -> None:
    """RFC 8200 §3 and §4 (extension headers), RFC 4302 §2.2 (AH length in 4-byte units)."""
    if len(data) - off < 40:
        _bad("truncated IPv6 header")
    if data[off] >> 4 != 6:
        _bad("IP version does not match the EtherType")
    plen, nxt = struct.unpack("!HB", data[off + 4:off + 7])
    if plen > len(data) - off - 40:
        _bad("bad IPv6 payload length")
    r.update(l3_off=off, l3_len=40 + plen, len=off + 40 + plen, padded=off + 40 + plen < len(data))
    ip = data[off:off + 40 + plen]
    pos, count, fragment, later_fragment = 40, 0, False, False
    while nxt in IPV6_EXT_HEADERS:
        if len(ip) - pos < 8:
            _bad("bad IPv6 extension header")
        if nxt == 44:
            ext_len = 8
            (fo,) = struct.unpack("!H", ip[pos + 2:pos + 4])
            r["frag_offset"] = fo >> 3
            r["more_fragments"] = r["more_fragments"] or bool(fo & 1)
            # An atomic fragment (offset 0, M=0; RFC 6946) is a whole datagram.
            fragment = bool(fo & 1) or bool(fo >> 3)
            later_fragment = bool(fo >> 3)
        elif nxt == 51:
            ext_len = (ip[pos + 1] + 2) * 4
        else:
            ext_len = (ip[pos + 1] + 1) * 8
        if count >= IPV6_MAX_EXT or ext_len > len(ip) - pos:
            _bad("bad IPv6 extension header")
        r["ip_options"] = True
        nxt = ip[pos]
        pos += ext_len
        count += 1
        if later_fragment:
            # After a non-first fragment's header come bytes from the middle of the original
            # payload, not headers (RFC 8200 §4.5): there is nothing more to walk.
            break
    r.update(l3_hlen=pos, l4_proto=nxt, l4_off=off + pos, l4_len=40 + plen - pos)
    if fragment:
        r.update(kind="ipv6-fragment", payload_off=off + pos, payload_len=40 + plen - pos)
        return
    if nxt == NO_NEXT:
        r.update(kind="ipv6", payload_off=off + pos, payload_len=40 + plen - pos)
        return
    _l4(data, r, v6=True)


def _arp(data: bytes, off: int, r: dict) -> None:
    """RFC 826 for Ethernet/IPv4 only: htype 1, ptype 0x0800, hlen 6, plen 4."""
    if len(data) - off < 28:
        _bad("truncated ARP packet")
    if struct.unpack("!HHBB", data[off:off + 6]) != (1, ETHERTYPE_IPV4, 6, 4):
        _bad("ARP packet is not Ethernet/IPv4")
    r.update(kind="arp", l3_off=off, l3_len=28, len=off + 28, padded=off + 28 < len(data))


def parse_frame(data) -> dict:
    data = bytes(data)
    r = {"kind": None, "len": len(data), "ethertype": 0, "vlan_tci": None, "l4_proto": 0,
         "l3_off": 0, "l3_len": 0, "l3_hlen": 0, "l4_off": 0, "l4_len": 0, "payload_off": 0,
         "payload_len": 0, "frag_offset": 0, "dont_fragment": False, "more_fragments": False,
         "vlan": False, "ip_options": False, "padded": False, "udp_trailer": False, "mss": None,
         "window_scale": None, "sack_permitted": False, "timestamps": None, "sack_blocks": ()}
    if len(data) < 14:
        _bad("truncated Ethernet header")
    (ethertype,) = struct.unpack("!H", data[12:14])
    off = 14
    if ethertype == ETHERTYPE_VLAN:  # IEEE 802.1Q: TPID 0x8100, then TCI, then the EtherType
        if len(data) < 18:
            _bad("truncated 802.1Q tag")
        tci, ethertype = struct.unpack("!HH", data[14:18])
        r.update(vlan=True, vlan_tci=tci)
        off = 18
    r.update(ethertype=ethertype, l3_off=off)
    if ethertype == ETHERTYPE_IPV4:
        _ipv4(data, off, r)
    elif ethertype == ETHERTYPE_IPV6:
        _ipv6(data, off, r)
    elif ethertype == ETHERTYPE_ARP:
        _arp(data, off, r)
    else:
        r.update(kind="ethernet", payload_off=off, payload_len=len(data) - off)
    return r
