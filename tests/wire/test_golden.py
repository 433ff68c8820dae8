"""Golden frames (tests/data/frames.py): deconstruct, construct, and scapy in both directions.

- deconstruct: parse each golden frame and check every property of ``Frame`` and of every view
  against values written out here by hand (and the offsets against the reference parser);
- construct: ``build_frame`` from the same values gives the golden bytes where fastnet can
  express the layout, and scapy decodes what fastnet built to the same fields with valid
  checksums;
- scapy-built frames of every kind fastnet classifies, made at test time from seeded random
  values, checked field by field; and fastnet-built frames from random values checked by scapy.
"""

from __future__ import annotations

import inspect
import random
from ipaddress import IPv4Address as V4
from ipaddress import IPv6Address as V6

import pytest

from fastnet import wire
from fastnet.wire import (
    ArpFields,
    ArpPacket,
    EthernetFields,
    EthernetFrame,
    Frame,
    IcmpFields,
    Icmpv4Packet,
    Icmpv6Packet,
    Ipv4Fields,
    Ipv4Packet,
    Ipv6Fields,
    Ipv6Packet,
    Kind,
    TcpFields,
    TcpFlags,
    TcpPacket,
    UdpFields,
    UdpPacket,
)
from tests.data import frames as F
from tests.reference import parse as reference
from tests.wire import frame_flags

GUEST_MAC = bytes.fromhex("525400123456")
GW_MAC = bytes.fromhex("52550a000202")
BROADCAST = b"\xff" * 6
GUEST4, GW4, REMOTE4 = V4("10.0.2.15"), V4("10.0.2.2"), V4("93.184.216.34")
GUEST6, REMOTE6 = V6("fd00::15"), V6("2001:db8::1")


@pytest.fixture(scope="module")
def scapy_fields():
    return pytest.importorskip("tests.wire.scapy_fields", reason="scapy is a test dependency")


# ---------------------------------------------------------------------------------------------
# What each golden frame holds, written out by hand from the frame's definition.

def frame(kind, length, flags, l3, l4, payload, *, ethertype=0x0800, l4_proto=0, vlan_tci=None,
          frag_offset=0, more_fragments=False):
    return dict(kind=kind, len=length, flags=flags, ethertype=ethertype, vlan_tci=vlan_tci,
                l4_proto=l4_proto, l3_off=l3[0], l3_len=l3[1], l4_off=l4[0], l4_len=l4[1],
                payload_off=payload[0], payload_len=payload[1], frag_offset=frag_offset,
                more_fragments=more_fragments,
                is_fragment=kind in (Kind.IPV4_FRAG, Kind.IPV6_FRAG))


FRAMES = {
    "ARP_REQUEST": frame(Kind.ARP, 42, set(), (14, 28), (0, 0), (0, 0), ethertype=0x0806),
    "ARP_REPLY": frame(Kind.ARP, 42, {"padded"}, (14, 28), (0, 0), (0, 0), ethertype=0x0806),
    "TCP4_SYN": frame(Kind.TCP4, 74, {"df", "mss", "sack_perm", "ts", "wscale"}, (14, 60),
                      (34, 40), (74, 0), l4_proto=6),
    "TCP4_DATA": frame(Kind.TCP4, 103, {"df", "ts"}, (14, 89), (34, 69), (66, 37), l4_proto=6),
    "TCP4_SACK": frame(Kind.TCP4, 86, {"df", "ts", "sack"}, (14, 72), (34, 52), (86, 0),
                       l4_proto=6),
    "UDP4_DNS": frame(Kind.UDP4, 71, set(), (14, 57), (34, 37), (42, 29), l4_proto=17),
    "ICMP4_ECHO": frame(Kind.ICMP4, 98, {"df"}, (14, 84), (34, 64), (42, 56), l4_proto=1),
    "IPV4_OPTIONS": frame(Kind.UDP4, 57, {"ip_options"}, (14, 43), (42, 15), (50, 7),
                          l4_proto=17),
    "IPV4_FRAG_FIRST": frame(Kind.IPV4_FRAG, 98, {"mf"}, (14, 84), (34, 64), (34, 64),
                             l4_proto=17, more_fragments=True),
    "IPV4_FRAG_LATER": frame(Kind.IPV4_FRAG, 78, set(), (14, 64), (34, 44), (34, 44),
                             l4_proto=17, frag_offset=8),
    "VLAN_UDP4": frame(Kind.UDP4, 57, {"vlan"}, (18, 39), (38, 19), (46, 11), l4_proto=17,
                       vlan_tci=0x6064),
    "TCP6_SYNACK": frame(Kind.TCP6, 94, {"mss", "sack_perm", "ts", "wscale"}, (14, 80), (54, 40),
                         (94, 0), ethertype=0x86DD, l4_proto=6),
    "UDP6": frame(Kind.UDP6, 76, set(), (14, 62), (54, 22), (62, 14), ethertype=0x86DD,
                  l4_proto=17),
    "ICMP6_ECHO": frame(Kind.ICMP6, 78, set(), (14, 64), (54, 24), (62, 16), ethertype=0x86DD,
                        l4_proto=58),
    "IPV6_EXT_UDP": frame(Kind.UDP6, 84, {"ip_options"}, (14, 70), (70, 14), (78, 6),
                          ethertype=0x86DD, l4_proto=17),
    "IPV6_FRAG_FIRST": frame(Kind.IPV6_FRAG, 134, {"ip_options", "mf"}, (14, 120), (62, 72),
                             (62, 72), ethertype=0x86DD, l4_proto=17, more_fragments=True),
    "IPV6_FRAG_LATER": frame(Kind.IPV6_FRAG, 118, {"ip_options"}, (14, 104), (62, 56), (62, 56),
                             ethertype=0x86DD, l4_proto=17, frag_offset=9),
    "UNKNOWN_ETHERTYPE": frame(Kind.ETHERNET, 60, set(), (14, 0), (0, 0), (14, 46),
                              ethertype=0x88B5),
    "PADDED_TCP4_ACK": frame(Kind.TCP4, 54, {"df", "padded"}, (14, 40), (34, 20), (54, 0),
                             l4_proto=6),
}


def eth(golden, dst, src, ethertype, end, vlan_tci=None):
    hl = 14 if vlan_tci is None else 18
    return dict(dst=dst, src=src, ethertype=ethertype, vlan_tci=vlan_tci, header_len=hl,
                payload=golden[hl:end], buffer_len=end)


def ipv4(golden, l3, src, dst, protocol, ident, ttl, checksum, *, tos=0, df=False, mf=False,
         frag_offset=0, options=b""):
    off, total = l3
    return dict(version=4, header_len=20 + len(options), tos=tos, total_len=total, ident=ident,
                dont_fragment=df, more_fragments=mf, frag_offset=frag_offset, ttl=ttl,
                protocol=protocol, checksum=checksum, src=src, dst=dst, options=options,
                payload=golden[off + 20 + len(options):off + total], buffer_len=total)


def ipv6(golden, l3, src, dst, next_header, protocol, hop_limit, *, header_len=40,
         traffic_class=0, flow_label=0, is_fragment=False):
    off, length = l3
    return dict(version=6, traffic_class=traffic_class, flow_label=flow_label,
                payload_len=length - 40, next_header=next_header, hop_limit=hop_limit, src=src,
                dst=dst, protocol=protocol, header_len=header_len, is_fragment=is_fragment,
                payload=golden[off + header_len:off + length], buffer_len=length)


def tcp(src_port, dst_port, seq, ack, flags, window, checksum, options, payload=b"", *,
        mss=None, window_scale=None, sack_permitted=False, timestamps=None, sack_blocks=()):
    hl = 20 + len(options)
    return dict(src_port=src_port, dst_port=dst_port, seq=seq, ack=ack, data_offset=hl // 4,
                header_len=hl, flags=flags, window=window, checksum=checksum, urgent=0,
                options=options, mss=mss, window_scale=window_scale,
                sack_permitted=sack_permitted, timestamps=timestamps, sack_blocks=sack_blocks,
                payload=payload, buffer_len=hl + len(payload))


def udp(src_port, dst_port, checksum, payload):
    return dict(src_port=src_port, dst_port=dst_port, length=8 + len(payload), checksum=checksum,
                payload=payload, buffer_len=8 + len(payload))


def icmp4(type_, code, checksum, ident, seq, payload):
    return dict(type=type_, code=code, checksum=checksum, rest=ident << 16 | seq, ident=ident,
                seq=seq, payload=payload, buffer_len=8 + len(payload))


def icmp6(type_, code, checksum, rest, payload):
    return dict(type=type_, code=code, checksum=checksum, rest=rest, payload=payload,
                buffer_len=8 + len(payload))


HTTP_GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
DNS_QUERY = bytes.fromhex("123401000001000000000000076578616d706c6503636f6d0000010001")

# name -> {layer: {property: value}}; layer "arp", "ip" and "l4" name the view type as well.
VIEWS = {
    "ARP_REQUEST": {
        "eth": eth(F.ARP_REQUEST, BROADCAST, GUEST_MAC, 0x0806, 42),
        "arp": dict(oper=1, sha=GUEST_MAC, spa=GUEST4, tha=b"\x00" * 6, tpa=GW4, buffer_len=28),
    },
    "ARP_REPLY": {
        "eth": eth(F.ARP_REPLY, GUEST_MAC, GW_MAC, 0x0806, 42),
        "arp": dict(oper=2, sha=GW_MAC, spa=GW4, tha=GUEST_MAC, tpa=GUEST4, buffer_len=28),
    },
    "TCP4_SYN": {
        "eth": eth(F.TCP4_SYN, GW_MAC, GUEST_MAC, 0x0800, 74),
        "ip": ipv4(F.TCP4_SYN, (14, 60), GUEST4, REMOTE4, 6, 0x3A1C, 64, 0xBEB6, df=True),
        "l4": tcp(40312, 80, 0x1F2E3D4C, 0, TcpFlags.SYN, 64240, 0x6554,
                  bytes.fromhex("020405b4 0402 080a841d277100000000 01 030307"), mss=1460,
                  window_scale=7, sack_permitted=True, timestamps=(2216503153, 0)),
    },
    "TCP4_DATA": {
        "eth": eth(F.TCP4_DATA, GW_MAC, GUEST_MAC, 0x0800, 103),
        "ip": ipv4(F.TCP4_DATA, (14, 89), GUEST4, REMOTE4, 6, 0x3A1D, 64, 0xBE98, df=True),
        "l4": tcp(40312, 80, 0x1F2E3D4D, 0x8A9B0C1E, TcpFlags.PSH | TcpFlags.ACK, 502, 0xA3B2,
                  bytes.fromhex("0101 080a841d27964f8bba1c"), HTTP_GET,
                  timestamps=(2216503190, 1334557212)),
    },
    "TCP4_SACK": {
        "eth": eth(F.TCP4_SACK, GUEST_MAC, GW_MAC, 0x0800, 86),
        "ip": ipv4(F.TCP4_SACK, (14, 72), REMOTE4, GUEST4, 6, 0, 56, 0x00C7, df=True),
        "l4": tcp(80, 40312, 0x8A9B0C1E, 0x1F2E3D72, TcpFlags.ACK, 501, 0xF6EF,
                  bytes.fromhex("0101 080a4f8bba74841d2796 0101 0512 1f2e40001f2e45b4"
                                "1f2e4b681f2e511c"),
                  timestamps=(1334557300, 2216503190),
                  sack_blocks=((0x1F2E4000, 0x1F2E45B4), (0x1F2E4B68, 0x1F2E511C))),
    },
    "UDP4_DNS": {
        "eth": eth(F.UDP4_DNS, GW_MAC, GUEST_MAC, 0x0800, 71),
        "ip": ipv4(F.UDP4_DNS, (14, 57), GUEST4, V4("10.0.2.3"), 17, 0x5C2E, 64, 0x0675),
        "l4": udp(53535, 53, 0x349C, DNS_QUERY),
    },
    "ICMP4_ECHO": {
        "eth": eth(F.ICMP4_ECHO, GW_MAC, GUEST_MAC, 0x0800, 98),
        "ip": ipv4(F.ICMP4_ECHO, (14, 84), GUEST4, REMOTE4, 1, 0x8E01, 64, 0x6ABE, df=True),
        "l4": icmp4(8, 0, 0x22E4, 0x1C46, 1, bytes(range(0x10, 0x48))),
    },
    "IPV4_OPTIONS": {
        "eth": eth(F.IPV4_OPTIONS, GW_MAC, GUEST_MAC, 0x0800, 57),
        "ip": ipv4(F.IPV4_OPTIONS, (14, 43), GUEST4, V4("224.0.0.22"), 17, 1, 1, 0x34D7, tos=0xC0,
                   options=bytes.fromhex("94040000 01 01 01 00")),
        "l4": udp(5353, 5353, 0x2D9D, b"fastnet"),
    },
    "IPV4_FRAG_FIRST": {
        "eth": eth(F.IPV4_FRAG_FIRST, GW_MAC, GUEST_MAC, 0x0800, 98),
        "ip": ipv4(F.IPV4_FRAG_FIRST, (14, 84), GUEST4, REMOTE4, 17, 0xABCD, 64, 0x6CE2, mf=True),
    },
    "IPV4_FRAG_LATER": {
        "eth": eth(F.IPV4_FRAG_LATER, GW_MAC, GUEST_MAC, 0x0800, 78),
        "ip": ipv4(F.IPV4_FRAG_LATER, (14, 64), GUEST4, REMOTE4, 17, 0xABCD, 64, 0x8CEE,
                   frag_offset=8),
    },
    "VLAN_UDP4": {
        "eth": eth(F.VLAN_UDP4, GW_MAC, GUEST_MAC, 0x0800, 57, vlan_tci=(3 << 13) | 100),
        "ip": ipv4(F.VLAN_UDP4, (18, 39), V4("192.168.100.15"), V4("192.168.100.1"), 17, 0x42, 64,
                   0x3123),
        "l4": udp(40000, 9999, 0xB440, b"hello, vlan"),
    },
    "TCP6_SYNACK": {
        "eth": eth(F.TCP6_SYNACK, GUEST_MAC, GW_MAC, 0x86DD, 94),
        "ip": ipv6(F.TCP6_SYNACK, (14, 80), REMOTE6, GUEST6, 6, 6, 60, flow_label=0x4F2A1),
        "l4": tcp(443, 51234, 0xDEADBEEF, 0x01020305, TcpFlags.SYN | TcpFlags.ACK, 65160, 0xF7A5,
                  bytes.fromhex("020405a0 0402 080ab2dfa813ee7a7213 01 030309"), mss=1440,
                  window_scale=9, sack_permitted=True, timestamps=(3001002003, 4001002003)),
    },
    "UDP6": {
        "eth": eth(F.UDP6, GW_MAC, GUEST_MAC, 0x86DD, 76),
        "ip": ipv6(F.UDP6, (14, 62), GUEST6, REMOTE6, 17, 17, 64, traffic_class=0x28,
                   flow_label=0x12345),
        "l4": udp(45000, 443, 0xE6BB, bytes.fromhex("c00000000108") + b"quic-ish"),
    },
    "ICMP6_ECHO": {
        "eth": eth(F.ICMP6_ECHO, GW_MAC, GUEST_MAC, 0x86DD, 78),
        "ip": ipv6(F.ICMP6_ECHO, (14, 64), GUEST6, REMOTE6, 58, 58, 64),
        "l4": icmp6(128, 0, 0xA83A, 0x7A7A0003, b"fastnet-ping-six"),
    },
    "IPV6_EXT_UDP": {
        "eth": eth(F.IPV6_EXT_UDP, GW_MAC, GUEST_MAC, 0x86DD, 84),
        "ip": ipv6(F.IPV6_EXT_UDP, (14, 70), GUEST6, V6("ff02::16"), 0, 17, 1, header_len=56),
        "l4": udp(546, 547, 0xC14F, b"dhcpv6"),
    },
    "IPV6_FRAG_FIRST": {
        "eth": eth(F.IPV6_FRAG_FIRST, GW_MAC, GUEST_MAC, 0x86DD, 134),
        "ip": ipv6(F.IPV6_FRAG_FIRST, (14, 120), GUEST6, REMOTE6, 44, 17, 64, header_len=48,
                   is_fragment=True),
    },
    "IPV6_FRAG_LATER": {
        "eth": eth(F.IPV6_FRAG_LATER, GW_MAC, GUEST_MAC, 0x86DD, 118),
        "ip": ipv6(F.IPV6_FRAG_LATER, (14, 104), GUEST6, REMOTE6, 44, 17, 64, header_len=48,
                   is_fragment=True),
    },
    "UNKNOWN_ETHERTYPE": {
        "eth": eth(F.UNKNOWN_ETHERTYPE, BROADCAST, GUEST_MAC, 0x88B5, 60),
    },
    "PADDED_TCP4_ACK": {
        "eth": eth(F.PADDED_TCP4_ACK, GUEST_MAC, GW_MAC, 0x0800, 54),
        "ip": ipv4(F.PADDED_TCP4_ACK, (14, 40), REMOTE4, GUEST4, 6, 0x1D2E, 56, 0xE3B8, df=True),
        "l4": tcp(80, 40312, 0x8A9B0C1E, 0x1F2E3D72, TcpFlags.ACK, 501, 0xDAD3, b""),
    },
}

# The view type each layer of each golden must come back as.
L4_VIEW = {Kind.TCP4: TcpPacket, Kind.TCP6: TcpPacket, Kind.UDP4: UdpPacket, Kind.UDP6: UdpPacket,
           Kind.ICMP4: Icmpv4Packet, Kind.ICMP6: Icmpv6Packet}
IP_VIEW = {0x0800: Ipv4Packet, 0x86DD: Ipv6Packet}
NAMES = list(F.ALL)


def test_every_golden_frame_has_expectations():
    assert set(FRAMES) == set(VIEWS) == set(F.ALL)


def views_of(name):
    """(layer name, view class, property table) for each layer of a golden frame."""
    exp = FRAMES[name]
    out = [("eth", EthernetFrame, VIEWS[name]["eth"])]
    if "arp" in VIEWS[name]:
        out.append(("arp", ArpPacket, VIEWS[name]["arp"]))
    if "ip" in VIEWS[name]:
        out.append(("ip", IP_VIEW[exp["ethertype"]], VIEWS[name]["ip"]))
    if "l4" in VIEWS[name]:
        out.append(("l4", L4_VIEW[exp["kind"]], VIEWS[name]["l4"]))
    return out


def public_properties(cls):
    return {n for n, v in inspect.getmembers(cls) if inspect.isgetsetdescriptor(v) and n[0] != "_"}


@pytest.mark.parametrize("cls", [EthernetFrame, ArpPacket, Ipv4Packet, Ipv6Packet, TcpPacket,
                                 UdpPacket, Icmpv4Packet, Icmpv6Packet])
def test_expectations_cover_every_property_of(cls):
    # Each property a view exposes is checked against a known value on some golden frame.
    checked = set()
    for name in NAMES:
        for _, view_cls, props in views_of(name):
            if view_cls is cls:
                assert not set(props) - public_properties(cls), f"{name}: no such property"
                checked |= set(props)
    assert checked == public_properties(cls)


def test_frame_expectations_cover_every_frame_property():
    layer_props = {"eth", "arp", "ip", "l4", "payload"}  # checked by the view tests below
    assert set(FRAMES["TCP4_SYN"]) | layer_props == public_properties(Frame)


# ---------------------------------------------------------------------------------------------
# deconstruct

@pytest.mark.parametrize("name", NAMES)
def test_parse_frame_gives_kind_offsets_and_flags(name, pcap_on_failure):
    data = F.ALL[name]
    pcap_on_failure(data)
    f = wire.parse_frame(data)
    got = {key: getattr(f, key) for key in FRAMES[name]}
    got["flags"] = frame_flags.names(f.flags)
    assert got == FRAMES[name]
    assert bytes(f.payload) == data[f.payload_off:f.payload_off + f.payload_len]
    assert wire.parse_status(data) == (0, FRAMES[name]["kind"])


@pytest.mark.parametrize("name", NAMES)
def test_reference_parser_agrees_on_golden(name):
    # The oracle itself is checked against the hand-written table, then fastnet against it
    # (the truncation tests lean on the oracle for frames nobody wrote a table for).
    r = reference.parse_frame(F.ALL[name])
    exp = FRAMES[name]
    assert r["kind"] == wire.kind_name(exp["kind"])
    for key in ("len", "ethertype", "vlan_tci", "l4_proto", "l3_off", "l3_len", "l4_off",
                "l4_len", "payload_off", "payload_len", "frag_offset", "more_fragments"):
        assert r[key] == exp[key], key
    assert frame_flags.names(frame_flags.from_reference(r)) == exp["flags"]


@pytest.mark.parametrize("name", NAMES)
def test_views_of_golden_give_known_values(name, pcap_on_failure):
    data = F.ALL[name]
    pcap_on_failure(data)
    f = wire.parse_frame(data)
    for layer, cls, props in views_of(name):
        view = getattr(f, layer)
        assert type(view) is cls, layer
        got = {p: getattr(view, p) for p in props}
        if "payload" in got:
            assert type(got["payload"]) is memoryview, layer
        got["payload"] = bytes(got["payload"]) if "payload" in got else None
        want = dict(props, payload=props.get("payload"))
        assert got == want, layer
        # Equal is not enough: MACs are bytes (not bytearray), addresses ipaddress objects,
        # flags bool, TCP flags a TcpFlags.
        assert {p: type(v) for p, v in got.items()} == {p: type(v) for p, v in want.items()}, layer
    present = {layer for layer, _, _ in views_of(name)}
    for layer in {"arp", "ip", "l4"} - present:
        assert getattr(f, layer) is None, layer


@pytest.mark.parametrize("name", NAMES)
def test_golden_checksums_verify(name):
    data = F.ALL[name]
    f = wire.parse_frame(data)
    assert f.verify_checksums()
    ip, l4 = f.ip, f.l4
    if isinstance(ip, Ipv4Packet):
        assert ip.verify_checksum()
    if isinstance(l4, Icmpv4Packet):
        assert l4.verify_checksum()
    elif l4 is not None:
        assert l4.verify_checksum(ip.src, ip.dst)


@pytest.mark.parametrize("name", [n for n in NAMES if "l4" in VIEWS[n]])
def test_golden_l4_checksum_fails_after_a_payload_bit_flip(name):
    data = bytearray(F.ALL[name])
    f = wire.parse_frame(data)
    data[f.l4_off + f.l4_len - 1] ^= 0x01
    assert not f.verify_checksums()


# ---------------------------------------------------------------------------------------------
# construct

FIELD_TYPES = {EthernetFrame: EthernetFields, ArpPacket: ArpFields, Ipv4Packet: Ipv4Fields,
               Ipv6Packet: Ipv6Fields, TcpPacket: TcpFields, UdpPacket: UdpFields,
               Icmpv4Packet: IcmpFields, Icmpv6Packet: IcmpFields}


def expected_fields(name) -> dict:
    """The golden frame's header values as build_frame arguments (from the tables above)."""
    out = {}
    for layer, cls, props in views_of(name):
        ftype = FIELD_TYPES[cls]
        out[layer] = ftype(**{k: props[k] for k in ftype.__dataclass_fields__})
    exp = FRAMES[name]
    data = F.ALL[name]
    out["payload"] = data[exp["payload_off"]:exp["payload_off"] + exp["payload_len"]]
    return out


def build(fields: dict) -> bytearray:
    if "arp" in fields:
        return wire.build_frame(fields["eth"], arp=fields["arp"])
    return wire.build_frame(fields["eth"], fields.get("ip"), fields.get("l4"), fields["payload"])


# build_frame writes no IPv6 extension headers, so these three cannot be rebuilt byte for byte.
NOT_CONSTRUCTIBLE = {"IPV6_EXT_UDP", "IPV6_FRAG_FIRST", "IPV6_FRAG_LATER"}


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NOT_CONSTRUCTIBLE])
def test_build_frame_reproduces_golden(name, pcap_on_failure):
    data = F.ALL[name]
    built = build(expected_fields(name))
    pcap_on_failure(built)
    assert type(built) is bytearray
    assert bytes(built) == data[:FRAMES[name]["len"]]  # golden padding is not built


def test_not_constructible_goldens_are_exactly_those_with_ipv6_extension_headers():
    with_ext = {n for n in NAMES if FRAMES[n]["ethertype"] == 0x86DD
                and VIEWS[n]["ip"]["header_len"] > 40}
    assert with_ext == NOT_CONSTRUCTIBLE


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NOT_CONSTRUCTIBLE])
def test_scapy_decodes_fastnet_built_golden_with_valid_checksums(name, scapy_fields,
                                                                 pcap_on_failure):
    fields = expected_fields(name)
    built = build(fields)
    pcap_on_failure(built)
    got = scapy_fields.decode(built)
    for layer in ("eth", "arp", "ip", "l4", "payload"):
        assert got[layer] == fields.get(layer, b"" if layer == "payload" else None), layer
    assert scapy_fields.checksums_valid(built)


def test_scapy_checksum_check_catches_a_wrong_checksum(scapy_fields):
    # The helper above must be able to say no: a flipped bit in the TCP payload, and in the
    # IPv4 header's TTL, are both caught.
    for off in (len(F.TCP4_DATA) - 1, 14 + 8):
        data = bytearray(F.TCP4_DATA)
        data[off] ^= 0x01
        assert not scapy_fields.checksums_valid(data)


# The scapy expression each golden frame was made from (scapy 2.8); the bytes in
# tests/data/frames.py are what these build.
def _recipes():
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_EOL, IPOption_NOP, \
        IPOption_Router_Alert, fragment
    from scapy.layers.inet6 import IPv6, ICMPv6EchoRequest, IPv6ExtHdrDestOpt, \
        IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, PadN, RouterAlert, fragment6
    from scapy.layers.l2 import ARP, Dot1Q, Ether
    from scapy.packet import Padding, Raw

    guest, gw, bcast = "52:54:00:12:34:56", "52:55:0a:00:02:02", "ff:ff:ff:ff:ff:ff"
    g4, gw4, r4, g6, r6 = "10.0.2.15", "10.0.2.2", "93.184.216.34", "fd00::15", "2001:db8::1"
    up, down = Ether(dst=gw, src=guest), Ether(dst=guest, src=gw)
    syn_opts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (2216503153, 0)), ("NOP", None),
                ("WScale", 7)]
    frag4 = fragment(IP(src=g4, dst=r4, id=0xABCD, ttl=64) / UDP(sport=33434, dport=33435)
                     / Raw(bytes(range(100))), fragsize=64)
    frag6 = fragment6(IPv6(src=g6, dst=r6, hlim=64) / IPv6ExtHdrFragment(id=0x11223344)
                      / UDP(sport=50000, dport=50001) / Raw(bytes(range(120))), 120)
    return {
        "ARP_REQUEST": Ether(dst=bcast, src=guest) / ARP(op=1, hwsrc=guest, psrc=g4,
                                                         hwdst="00:00:00:00:00:00", pdst=gw4),
        "ARP_REPLY": down / ARP(op=2, hwsrc=gw, psrc=gw4, hwdst=guest, pdst=g4)
        / Padding(load=b"\x00" * 18),
        "TCP4_SYN": up / IP(src=g4, dst=r4, id=0x3A1C, flags="DF", ttl=64)
        / TCP(sport=40312, dport=80, seq=0x1F2E3D4C, flags="S", window=64240, options=syn_opts),
        "TCP4_DATA": up / IP(src=g4, dst=r4, id=0x3A1D, flags="DF", ttl=64)
        / TCP(sport=40312, dport=80, seq=0x1F2E3D4D, ack=0x8A9B0C1E, flags="PA", window=502,
              options=[("NOP", None), ("NOP", None), ("Timestamp", (2216503190, 1334557212))])
        / Raw(HTTP_GET),
        "TCP4_SACK": down / IP(src=r4, dst=g4, id=0, flags="DF", ttl=56)
        / TCP(sport=80, dport=40312, seq=0x8A9B0C1E, ack=0x1F2E3D72, flags="A", window=501,
              options=[("NOP", None), ("NOP", None), ("Timestamp", (1334557300, 2216503190)),
                       ("NOP", None), ("NOP", None),
                       ("SAck", (0x1F2E4000, 0x1F2E45B4, 0x1F2E4B68, 0x1F2E511C))]),
        "UDP4_DNS": up / IP(src=g4, dst="10.0.2.3", id=0x5C2E, ttl=64)
        / UDP(sport=53535, dport=53) / DNS(id=0x1234, rd=1, qd=DNSQR(qname="example.com")),
        "ICMP4_ECHO": up / IP(src=g4, dst=r4, id=0x8E01, flags="DF", ttl=64)
        / ICMP(type=8, id=0x1C46, seq=1) / Raw(bytes(range(0x10, 0x48))),
        "IPV4_OPTIONS": up / IP(src=g4, dst="224.0.0.22", id=1, ttl=1, tos=0xC0,
                                options=[IPOption_Router_Alert(), IPOption_NOP(), IPOption_NOP(),
                                         IPOption_NOP(), IPOption_EOL()])
        / UDP(sport=5353, dport=5353) / Raw(b"fastnet"),
        "IPV4_FRAG_FIRST": up / frag4[0],
        "IPV4_FRAG_LATER": up / frag4[1],
        "VLAN_UDP4": up / Dot1Q(prio=3, vlan=100)
        / IP(src="192.168.100.15", dst="192.168.100.1", id=0x42, ttl=64)
        / UDP(sport=40000, dport=9999) / Raw(b"hello, vlan"),
        "TCP6_SYNACK": down / IPv6(src=r6, dst=g6, fl=0x4F2A1, hlim=60)
        / TCP(sport=443, dport=51234, seq=0xDEADBEEF, ack=0x01020305, flags="SA", window=65160,
              options=[("MSS", 1440), ("SAckOK", b""), ("Timestamp", (3001002003, 4001002003)),
                       ("NOP", None), ("WScale", 9)]),
        "UDP6": up / IPv6(src=g6, dst=r6, tc=0x28, fl=0x12345, hlim=64)
        / UDP(sport=45000, dport=443) / Raw(bytes.fromhex("c00000000108") + b"quic-ish"),
        "ICMP6_ECHO": up / IPv6(src=g6, dst=r6, hlim=64)
        / ICMPv6EchoRequest(id=0x7A7A, seq=3, data=b"fastnet-ping-six"),
        "IPV6_EXT_UDP": up / IPv6(src=g6, dst="ff02::16", hlim=1)
        / IPv6ExtHdrHopByHop(options=[RouterAlert(value=0)])
        / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * 4)])
        / UDP(sport=546, dport=547) / Raw(b"dhcpv6"),
        "IPV6_FRAG_FIRST": up / frag6[0],
        "IPV6_FRAG_LATER": up / frag6[1],
        "UNKNOWN_ETHERTYPE": Ether(dst=bcast, src=guest, type=0x88B5)
        / Raw(b"fastnet local experimental ethertype".ljust(46, b"\x00")),
        "PADDED_TCP4_ACK": down / IP(src=r4, dst=g4, id=0x1D2E, flags="DF", ttl=56)
        / TCP(sport=80, dport=40312, seq=0x8A9B0C1E, ack=0x1F2E3D72, flags="A", window=501)
        / Padding(load=b"\x00" * 6),
    }


def test_scapy_recipes_build_the_golden_bytes(scapy_fields):
    recipes = _recipes()
    assert set(recipes) == set(F.ALL)
    for name, pkt in recipes.items():
        assert bytes(pkt) == F.ALL[name], name


@pytest.mark.parametrize("name", NAMES)
def test_scapy_reads_golden_as_fastnet_does(name, scapy_fields):
    data = F.ALL[name]
    f = wire.parse_frame(data)
    got = scapy_fields.decode(data)
    assert got["eth"] == f.eth.fields()
    assert got["arp"] == (f.arp.fields() if f.arp is not None else None)
    assert got["ip"] == (f.ip.fields() if f.ip is not None else None)
    assert got["l4"] == (f.l4.fields() if f.l4 is not None else None)
    assert got["payload"] == bytes(f.payload)
    assert got["fragment"] == f.is_fragment
    assert scapy_fields.checksums_valid(data)


# ---------------------------------------------------------------------------------------------
# frames of every kind, built by scapy from seeded random values

KINDS = ["arp", "ethernet", "ipv4", "ipv4-fragment", "tcp4", "udp4", "icmp4", "ipv6",
         "ipv6-fragment", "tcp6", "udp6", "icmp6"]
SEEDS = range(6)


def _rand_mac(rng):
    return ":".join(f"{rng.randrange(256):02x}" for _ in range(6))


def _rand_tcp_options(rng):
    """A random mix of the options fastnet decodes, in random order, within 40 bytes."""
    pool = [("MSS", rng.randrange(1 << 16)), ("SAckOK", b""), ("WScale", rng.randrange(15)),
            ("Timestamp", (rng.randrange(1 << 32), rng.randrange(1 << 32))), ("NOP", None)]
    opts = rng.sample(pool, rng.randrange(len(pool) + 1))
    size = {"MSS": 4, "SAckOK": 2, "WScale": 3, "Timestamp": 10, "NOP": 1}
    used = sum(size[n] for n, _ in opts)
    nblocks = min((40 - used - 2) // 8, 4)
    if nblocks > 0 and rng.random() < 0.6:
        edges = [rng.randrange(1 << 32) for _ in range(2 * rng.randint(1, nblocks))]
        opts.insert(rng.randrange(len(opts) + 1), ("SAck", tuple(edges)))
    return opts


def scapy_frame(kind: str, rng: random.Random, vlan: bool):
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_Router_Alert
    from scapy.layers.inet6 import IPv6, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6ExtHdrFragment
    from scapy.layers.l2 import ARP, Dot1Q, Ether
    from scapy.packet import Raw

    payload = Raw(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
    v6 = kind in ("ipv6", "ipv6-fragment", "tcp6", "udp6", "icmp6")
    ethertype = {"arp": 0x0806, "ethernet": rng.choice([0x88B5, 0x88CC, 0x9000])}.get(
        kind, 0x86DD if v6 else 0x0800)
    l2 = Ether(dst=_rand_mac(rng), src=_rand_mac(rng))
    if vlan:
        l2 = l2 / Dot1Q(prio=rng.randrange(8), dei=rng.randrange(2), vlan=rng.randrange(4096),
                        type=ethertype)
    else:
        l2.type = ethertype
    if kind == "arp":
        return l2 / ARP(op=rng.choice([1, 2]), hwsrc=_rand_mac(rng), hwdst=_rand_mac(rng),
                        psrc=str(V4(rng.randrange(1 << 32))), pdst=str(V4(rng.randrange(1 << 32))))
    if kind == "ethernet":
        return l2 / payload
    if v6:
        ip = IPv6(src=str(V6(rng.randrange(1 << 128))), dst=str(V6(rng.randrange(1 << 128))),
                  tc=rng.randrange(256), fl=rng.randrange(1 << 20), hlim=rng.randrange(256))
    else:
        options = rng.choice([[], [IPOption_Router_Alert()], [IPOption_NOP()] * 4,
                              [IPOption_Router_Alert(), IPOption_NOP(), IPOption_NOP(),
                               IPOption_NOP(), IPOption_NOP()]])
        ip = IP(src=str(V4(rng.randrange(1 << 32))), dst=str(V4(rng.randrange(1 << 32))),
                ttl=rng.randrange(256), id=rng.randrange(1 << 16), tos=rng.randrange(256),
                flags="DF" if rng.random() < 0.5 else 0, options=options)
    ports = dict(sport=rng.randrange(1 << 16), dport=rng.randrange(1 << 16))
    if kind in ("tcp4", "tcp6"):
        l4 = TCP(seq=rng.randrange(1 << 32), ack=rng.randrange(1 << 32), flags=rng.randrange(256),
                 window=rng.randrange(1 << 16), urgptr=rng.randrange(1 << 16),
                 options=_rand_tcp_options(rng), **ports) / payload
    elif kind in ("udp4", "udp6"):
        l4 = UDP(**ports) / payload
    elif kind == "icmp4":
        l4 = ICMP(type=rng.choice([0, 8, 13]), code=0, id=rng.randrange(1 << 16),
                  seq=rng.randrange(1 << 16)) / payload
    elif kind == "icmp6":
        echo = rng.choice([ICMPv6EchoRequest, ICMPv6EchoReply])
        l4 = echo(id=rng.randrange(1 << 16), seq=rng.randrange(1 << 16), data=payload.load)
    elif kind == "ipv4":
        ip.proto = rng.choice([47, 50, 132])  # GRE, ESP, SCTP: not looked into
        l4 = payload
    elif kind == "ipv6":
        ip.nh = rng.choice([59, 47, 132])  # no next header, GRE, SCTP
        l4 = payload
    elif kind == "ipv4-fragment":
        more = rng.random() < 0.5
        ip.proto, ip.flags = 17, "MF" if more else 0
        ip.frag = rng.randrange(8192) if more else rng.randrange(1, 8192)
        l4 = payload
    else:  # ipv6-fragment
        offset, m = rng.randrange(8192), rng.randrange(2)
        if not (offset or m):
            m = 1
        l4 = IPv6ExtHdrFragment(nh=17, offset=offset, m=m, id=rng.randrange(1 << 32)) / payload
    return l2 / ip / l4


@pytest.mark.parametrize("vlan", [False, True], ids=["untagged", "vlan"])
@pytest.mark.parametrize("kind", KINDS)
def test_scapy_built_frame_parses_field_by_field(kind, vlan, scapy_fields):
    for seed in SEEDS:
        rng = random.Random(f"{kind}/{vlan}/{seed}")
        data = bytes(scapy_frame(kind, rng, vlan))
        f = wire.parse_frame(data)
        assert wire.kind_name(f.kind) == kind, seed
        want = scapy_fields.decode(data)
        assert f.eth.fields() == want["eth"], seed
        assert (f.arp.fields() if f.arp is not None else None) == want["arp"], seed
        assert (f.ip.fields() if f.ip is not None else None) == want["ip"], seed
        assert (f.l4.fields() if f.l4 is not None else None) == want["l4"], seed
        assert bytes(f.payload) == want["payload"], seed
        assert f.verify_checksums(), seed
        r = reference.parse_frame(data)
        for key in ("len", "l3_off", "l3_len", "l4_off", "l4_len", "payload_off", "payload_len",
                    "frag_offset", "more_fragments", "vlan_tci", "l4_proto"):
            assert getattr(f, key) == r[key], (seed, key)
        assert f.flags == frame_flags.from_reference(r), seed


# ---------------------------------------------------------------------------------------------
# frames built by fastnet from seeded random values, read back by scapy

def random_fields(kind: str, rng: random.Random) -> dict:
    """build_frame arguments for one frame of ``kind``, every value drawn from ``rng``."""
    v6 = kind in ("tcp6", "udp6", "icmp6", "ipv6")
    ethertype = {"arp": 0x0806, "ethernet": 0x88B5}.get(kind, 0x86DD if v6 else 0x0800)
    vlan = rng.randrange(1 << 16) if rng.random() < 0.3 else None
    mac = lambda: bytes(rng.randrange(256) for _ in range(6))  # noqa: E731
    out = {"eth": EthernetFields(mac(), mac(), ethertype, vlan),
           "payload": bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))}
    if kind == "arp":
        out["arp"] = ArpFields(rng.choice([1, 2]), mac(), V4(rng.randrange(1 << 32)), mac(),
                               V4(rng.randrange(1 << 32)))
        out["payload"] = b""
        return out
    if kind == "ethernet":
        return out
    proto = {"tcp": 6, "udp": 17, "icmp": 58 if v6 else 1, "ipv": 47}[kind[:4].rstrip("46")]
    if v6:
        out["ip"] = Ipv6Fields(V6(rng.randrange(1 << 128)), V6(rng.randrange(1 << 128)), proto,
                               rng.randrange(256), rng.randrange(256), rng.randrange(1 << 20))
    else:
        opts = rng.choice([b"", b"\x01" * 4, bytes.fromhex("94040000"),
                           bytes.fromhex("9404000001010100")])
        out["ip"] = Ipv4Fields(V4(rng.randrange(1 << 32)), V4(rng.randrange(1 << 32)), proto,
                               rng.randrange(256), rng.randrange(1 << 16), rng.randrange(256),
                               rng.random() < 0.5, False, 0, opts)
    if kind.startswith("tcp"):
        mss = rng.choice([None, rng.randrange(1 << 16)])
        wscale = rng.choice([None, rng.randrange(15)])
        sack_perm = rng.random() < 0.5
        ts = rng.choice([None, (rng.randrange(1 << 32), rng.randrange(1 << 32))])
        # As many SACK blocks as fit after the other options (build_frame's layout).
        used = (mss is not None) * 4 + (wscale is not None) * 4 + (12 if ts else 4 * sack_perm)
        room = min((40 - used - 4) // 8, 4)
        blocks = tuple((rng.randrange(1 << 32), rng.randrange(1 << 32))
                       for _ in range(rng.randrange(room + 1)))
        out["l4"] = TcpFields(rng.randrange(1 << 16), rng.randrange(1 << 16),
                              rng.randrange(1 << 32), rng.randrange(1 << 32), rng.randrange(256),
                              rng.randrange(1 << 16), rng.randrange(1 << 16), mss, wscale,
                              sack_perm, ts, blocks)
    elif kind.startswith("udp"):
        out["l4"] = UdpFields(rng.randrange(1 << 16), rng.randrange(1 << 16))
    elif kind.startswith("icmp"):
        out["l4"] = IcmpFields(rng.choice([128, 129] if v6 else [0, 8]), 0, rng.randrange(1 << 32))
    return out


BUILD_KINDS = ["arp", "ethernet", "ipv4", "tcp4", "udp4", "icmp4", "ipv6", "tcp6", "udp6", "icmp6"]


@pytest.mark.parametrize("kind", BUILD_KINDS)
def test_scapy_reads_fastnet_built_frame_with_valid_checksums(kind, scapy_fields):
    for seed in range(10):
        fields = random_fields(kind, random.Random(f"{kind}/{seed}"))
        built = build(fields)
        got = scapy_fields.decode(built)
        for layer in ("eth", "arp", "ip", "l4", "payload"):
            assert got[layer] == fields.get(layer, b"" if layer == "payload" else None), (seed,
                                                                                          layer)
        assert scapy_fields.checksums_valid(built), seed


@pytest.mark.parametrize("routing", ["type0", "srh", "srh-arrived", "type0-arrived"])
def test_ipv6_routing_header_checksum_uses_the_final_destination(scapy_fields, routing):
    """RFC 8200 §8.1: with a Routing header whose Segments Left is not zero, the pseudo-header
    holds the final destination (the last address of a type 0/2 header, Segment List[0] of a
    Segment Routing header, RFC 8754), not the next waypoint in the IPv6 header; once Segments
    Left is 0 the IPv6 header's destination is the final one."""
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrRouting, IPv6ExtHdrSegmentRouting
    from scapy.layers.l2 import Ether

    rh = {"type0": IPv6ExtHdrRouting(addresses=["2001:db8::99"], segleft=1),
          "type0-arrived": IPv6ExtHdrRouting(addresses=["2001:db8::99"], segleft=0),
          "srh": IPv6ExtHdrSegmentRouting(addresses=["2001:db8::99", "2001:db8::1"], segleft=1),
          "srh-arrived": IPv6ExtHdrSegmentRouting(addresses=["2001:db8::1", "2001:db8::98"], segleft=0)}[routing]
    pkt = (Ether(dst="52:55:0a:00:02:02", src="52:54:00:12:34:56")
           / IPv6(src="fd00::15", dst="2001:db8::1") / rh
           / UDP(sport=1000, dport=2000) / b"via a waypoint")
    data = bytes(pkt)
    assert scapy_fields.checksums_valid(data)
    f = wire.parse_frame(data)
    assert f.verify_checksums()
    broken = bytearray(data)
    broken[-1] ^= 1
    assert not wire.parse_frame(bytes(broken)).verify_checksums()
