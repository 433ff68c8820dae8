"""The views over buffers: every buffer type, setters in place, checksums refilled, impossible
lengths rejected with the reason, and the buffer export held for the view's lifetime."""

from __future__ import annotations

import gc
import inspect
from ipaddress import IPv4Address as V4
from ipaddress import IPv6Address as V6

import numpy as np
import pytest

from fastnet import wire
from fastnet.errors import ChecksumError, FastnetError, MalformedPacket
from fastnet.wire import (
    ArpPacket,
    EthernetFrame,
    Icmpv4Packet,
    Icmpv6Packet,
    Ipv4Packet,
    Ipv6Packet,
    TcpPacket,
    UdpPacket,
)
from tests.data import frames as F
from tests.reference import checksum as ref

# name -> (view class, bytes the view is made over)
CASES = {
    "ethernet": (EthernetFrame, F.TCP4_DATA),
    "ethernet-vlan": (EthernetFrame, F.VLAN_UDP4),
    "arp": (ArpPacket, F.ARP_REQUEST[14:]),
    "ipv4": (Ipv4Packet, F.TCP4_DATA[14:]),
    "ipv4-options": (Ipv4Packet, F.IPV4_OPTIONS[14:]),
    "ipv4-padded": (Ipv4Packet, F.PADDED_TCP4_ACK[14:]),
    "ipv6": (Ipv6Packet, F.TCP6_SYNACK[14:]),
    "ipv6-ext": (Ipv6Packet, F.IPV6_EXT_UDP[14:]),
    "ipv6-fragment": (Ipv6Packet, F.IPV6_FRAG_LATER[14:]),
    "tcp": (TcpPacket, F.TCP4_SACK[34:]),
    "tcp-syn": (TcpPacket, F.TCP6_SYNACK[54:]),
    "udp": (UdpPacket, F.UDP4_DNS[34:]),
    "icmp4": (Icmpv4Packet, F.ICMP4_ECHO[34:]),
    "icmp6": (Icmpv6Packet, F.ICMP6_ECHO[54:]),
}


def snapshot(view) -> dict:
    """Every public property of a view, payloads as bytes."""
    out = {}
    for name, _ in inspect.getmembers(type(view), inspect.isgetsetdescriptor):
        if not name.startswith("_"):
            value = getattr(view, name)
            out[name] = bytes(value) if isinstance(value, memoryview) else value
    return out


@pytest.mark.parametrize("case", CASES)
def test_view_reads_the_same_from_every_buffer_type(case, as_buffer):
    cls, data = CASES[case]
    want = snapshot(cls(data))
    buf = as_buffer(data)
    view = cls(buf)
    assert snapshot(view) == want
    assert view.fields() == cls(data).fields()


@pytest.mark.parametrize("name", list(F.ALL))
def test_parse_frame_reads_the_same_from_every_buffer_type(name, as_buffer):
    data = F.ALL[name]
    want = wire.parse_frame(data)
    f = wire.parse_frame(as_buffer(data))
    for key in ("kind", "len", "flags", "l3_off", "l3_len", "l4_off", "l4_len", "payload_off",
                "payload_len", "vlan_tci", "frag_offset"):
        assert getattr(f, key) == getattr(want, key), key
    assert bytes(f.payload) == bytes(want.payload)
    assert f.eth.fields() == want.eth.fields()
    if want.ip is not None:
        assert f.ip.fields() == want.ip.fields()
    if want.l4 is not None:
        assert f.l4.fields() == want.l4.fields()
    assert f.verify_checksums()


def test_numpy_view_at_odd_offset_writes_only_its_own_bytes():
    big = np.full(200, 0xEE, dtype=np.uint8)
    seg = F.TCP4_SACK[34:]
    big[7:7 + len(seg)] = np.frombuffer(seg, dtype=np.uint8)
    view = TcpPacket(big[7:7 + len(seg)])
    view.src_port = 0x0102
    view.fill_checksum(V4("93.184.216.34"), V4("10.0.2.15"))
    assert bytes(big[7:9]) == b"\x01\x02"
    assert (big[:7] == 0xEE).all() and (big[7 + len(seg):] == 0xEE).all()
    assert TcpPacket(bytes(big[7:7 + len(seg)])).verify_checksum(V4("93.184.216.34"),
                                                                 V4("10.0.2.15"))


# Views whose payload runs to the end of the bytes they are given.
PAYLOAD_CASES = {
    "ethernet": (EthernetFrame, F.TCP4_DATA),
    "ipv4": (Ipv4Packet, F.TCP4_DATA[14:]),
    "ipv6": (Ipv6Packet, F.UDP6[14:]),
    "tcp": (TcpPacket, F.TCP4_DATA[34:]),
    "udp": (UdpPacket, F.UDP4_DNS[34:]),
    "icmp4": (Icmpv4Packet, F.ICMP4_ECHO[34:]),
    "icmp6": (Icmpv6Packet, F.ICMP6_ECHO[54:]),
}


@pytest.mark.parametrize("case", PAYLOAD_CASES)
def test_payload_is_a_window_on_the_buffer_not_a_copy(case, as_writable):
    cls, data = PAYLOAD_CASES[case]
    buf = as_writable(data)
    payload = cls(buf).payload
    assert isinstance(payload, memoryview) and len(payload) > 0
    payload[-1] = data[-1] ^ 0xFF
    assert bytes(buf) == data[:-1] + bytes([data[-1] ^ 0xFF])


def test_payload_over_bytes_is_read_only():
    with pytest.raises(TypeError):
        UdpPacket(F.UDP4_DNS[34:]).payload[0] = 0


# ---------------------------------------------------------------------------------------------
# setters

# class -> [(property, new value, byte offset in the header, the bytes it must become)]
SETTERS = {
    EthernetFrame: [("dst", b"\x02\x00\x00\x00\x00\x01", 0, bytes.fromhex("020000000001")),
                    ("src", "0a:0b:0c:0d:0e:0f", 6, bytes.fromhex("0a0b0c0d0e0f")),
                    ("ethertype", 0x86DD, 12, b"\x86\xdd")],
    ArpPacket: [("oper", 2, 6, b"\x00\x02")],
    Ipv4Packet: [("tos", 0xB8, 1, b"\xb8"), ("ident", 0xBEEF, 4, b"\xbe\xef"),
                 ("dont_fragment", False, 6, b"\x00\x00"), ("more_fragments", True, 6, b"\x60\x00"),
                 ("frag_offset", 0x1ABC, 6, b"\x5a\xbc"), ("ttl", 7, 8, b"\x07"),
                 ("protocol", 17, 9, b"\x11"), ("checksum", 0x1234, 10, b"\x12\x34"),
                 ("src", V4("192.0.2.1"), 12, bytes([192, 0, 2, 1])),
                 ("dst", "198.51.100.7", 16, bytes([198, 51, 100, 7]))],
    Ipv6Packet: [("hop_limit", 3, 7, b"\x03"),
                 ("src", V6("2001:db8::99"), 8, V6("2001:db8::99").packed),
                 ("dst", "fe80::1", 24, V6("fe80::1").packed)],
    TcpPacket: [("src_port", 1, 0, b"\x00\x01"), ("dst_port", 65535, 2, b"\xff\xff"),
                ("seq", 0xFFFFFFFF, 4, b"\xff\xff\xff\xff"),
                ("ack", 0x01020304, 8, b"\x01\x02\x03\x04"),
                ("flags", wire.TcpFlags.FIN | wire.TcpFlags.ACK, 13, b"\x11"),
                ("window", 0x8000, 14, b"\x80\x00"), ("checksum", 0xABCD, 16, b"\xab\xcd")],
    UdpPacket: [("src_port", 5353, 0, b"\x14\xe9"), ("dst_port", 1, 2, b"\x00\x01"),
                ("checksum", 0, 6, b"\x00\x00")],
    Icmpv4Packet: [("type", 0, 0, b"\x00"), ("code", 3, 1, b"\x03"),
                   ("ident", 0x4242, 4, b"\x42\x42"), ("seq", 0xFFFF, 6, b"\xff\xff")],
    Icmpv6Packet: [],
}
SETTER_CASES = [(case, prop) for case in ("ethernet", "ethernet-vlan", "arp", "ipv4", "ipv6",
                                          "tcp", "udp", "icmp4")
                for prop, *_ in SETTERS[CASES[case][0]]]


@pytest.mark.parametrize("case,prop", SETTER_CASES)
def test_setter_writes_in_place(case, prop, as_writable):
    cls, data = CASES[case]
    _, value, off, raw = next(s for s in SETTERS[cls] if s[0] == prop)
    buf = as_writable(data)
    view = cls(buf)
    setattr(view, prop, value)
    after = bytes(buf)
    if cls is EthernetFrame and prop == "ethertype" and case == "ethernet-vlan":
        off += 4  # the EtherType after the 802.1Q tag
    assert after[off:off + len(raw)] == raw
    assert after[:off] == data[:off] and after[off + len(raw):] == data[off + len(raw):]
    want = wire.mac_to_bytes(value) if prop in ("dst", "src") and cls is EthernetFrame else value
    if prop in ("src", "dst") and cls in (Ipv4Packet, Ipv6Packet):
        want = type(getattr(view, prop))(value)
    assert getattr(view, prop) == want


@pytest.mark.parametrize("case,prop", SETTER_CASES)
def test_setter_on_read_only_buffer_raises_type_error(case, prop, as_readonly):
    cls, data = CASES[case]
    _, value, _, _ = next(s for s in SETTERS[cls] if s[0] == prop)
    buf = as_readonly(data)
    view = cls(buf)
    with pytest.raises(TypeError):
        setattr(view, prop, value)
    assert bytes(buf) == data


@pytest.mark.parametrize("cls", list(SETTERS))
def test_read_only_properties_refuse_assignment(cls):
    case = next(c for c, (k, _) in CASES.items() if k is cls)
    view = cls(bytearray(CASES[case][1]))
    settable = {s[0] for s in SETTERS[cls]}
    for name, _ in inspect.getmembers(cls, inspect.isgetsetdescriptor):
        if name.startswith("_") or name in settable:
            continue
        with pytest.raises(AttributeError):
            setattr(view, name, getattr(view, name))


def test_setters_reject_values_that_do_not_fit():
    ip = Ipv4Packet(bytearray(CASES["ipv4"][1]))
    with pytest.raises(OverflowError):
        ip.ttl = 256
    with pytest.raises(ValueError, match="13 bits"):
        ip.frag_offset = 0x2000
    with pytest.raises(ValueError):
        ip.src = b"\x01\x02\x03"
    eth = EthernetFrame(bytearray(F.TCP4_DATA))
    with pytest.raises(ValueError, match="6 bytes"):
        eth.dst = b"\x01\x02\x03\x04\x05"
    with pytest.raises(OverflowError):
        TcpPacket(bytearray(CASES["tcp"][1])).seq = 1 << 32


# ---------------------------------------------------------------------------------------------
# checksums after a change

def test_ipv4_fill_checksum_after_a_change_verifies_again(as_writable):
    buf = as_writable(F.TCP4_DATA[14:])
    ip = Ipv4Packet(buf)
    ip.ttl -= 1
    assert not ip.verify_checksum()
    ip.fill_checksum()
    assert ip.verify_checksum()
    assert ip.checksum == ref.ipv4_header_checksum(bytes(buf)[:20])


@pytest.mark.parametrize("case,src,dst,proto,csum_off", [
    ("tcp", V4("93.184.216.34"), V4("10.0.2.15"), 6, 16),
    ("tcp-syn", V6("2001:db8::1"), V6("fd00::15"), 6, 16),
    ("udp", V4("10.0.2.15"), V4("10.0.2.3"), 17, 6),
    ("icmp6", V6("fd00::15"), V6("2001:db8::1"), 58, 2),
])
def test_l4_fill_checksum_after_a_change_verifies_again(case, src, dst, proto, csum_off,
                                                        as_writable):
    cls, data = CASES[case]
    buf = as_writable(data)
    view = cls(buf)
    assert view.verify_checksum(src, dst)
    buf[len(data) - 1] ^= 0x5A  # the last payload byte
    assert not view.verify_checksum(src, dst)
    view.fill_checksum(src, dst)
    assert view.verify_checksum(src, dst)
    assert view.checksum == ref.transport_checksum(src, dst, proto, bytes(buf), csum_off)


def test_icmp4_fill_checksum_after_a_change_verifies_again(as_writable):
    buf = as_writable(F.ICMP4_ECHO[34:])
    icmp = Icmpv4Packet(buf)
    icmp.seq = 2
    assert not icmp.verify_checksum()
    icmp.fill_checksum()
    assert icmp.verify_checksum()
    assert icmp.checksum == ref.checksum(bytes(buf)[:2] + b"\0\0" + bytes(buf)[4:])


@pytest.mark.parametrize("name", ["TCP4_DATA", "UDP4_DNS", "ICMP4_ECHO", "VLAN_UDP4", "TCP6_SYNACK",
                                  "UDP6", "ICMP6_ECHO", "IPV6_EXT_UDP", "IPV4_OPTIONS"])
def test_frame_fill_checksums_after_a_nat_rewrite_verifies_again(name, as_writable):
    buf = as_writable(F.ALL[name])
    f = wire.parse_frame(buf)
    ip = f.ip
    ip.src = V4("203.0.113.9") if isinstance(ip, Ipv4Packet) else V6("2001:db8:ffff::9")
    assert not f.verify_checksums()
    f.fill_checksums()
    assert f.verify_checksums()
    assert bytes(buf) != F.ALL[name]


def test_fill_checksum_on_read_only_buffer_raises_type_error(as_readonly):
    with pytest.raises(TypeError):
        Ipv4Packet(as_readonly(F.TCP4_DATA[14:])).fill_checksum()
    with pytest.raises(TypeError):
        TcpPacket(as_readonly(F.TCP4_SACK[34:])).fill_checksum(V4("1.2.3.4"), V4("5.6.7.8"))


def test_frame_fill_checksums_on_bytes_raises_buffer_error():
    # Frame asks for a writable export, so bytes refuse with BufferError (views say TypeError).
    with pytest.raises(BufferError):
        wire.parse_frame(F.TCP4_DATA).fill_checksums()


def test_udp4_checksum_zero_means_none_but_udp6_zero_is_wrong():
    v4 = bytearray(F.UDP4_DNS)
    f = wire.parse_frame(v4)
    f.l4.checksum = 0
    assert f.l4.verify_checksum(f.ip.src, f.ip.dst)  # RFC 768: no checksum computed
    assert f.verify_checksums()
    v6 = bytearray(F.UDP6)
    f6 = wire.parse_frame(v6)
    f6.l4.checksum = 0
    assert not f6.l4.verify_checksum(f6.ip.src, f6.ip.dst)  # RFC 8200 §8.1: mandatory
    assert not f6.verify_checksums()


def _udp_summing_to_zero_checksum(src, dst):
    """A UDP datagram whose computed checksum is 0x0000 (chosen through its last two bytes)."""
    seg = bytearray(F.UDP4_DNS[34:])
    seg += b"\0" * (2 + len(seg) % 2)  # two more bytes, at an even offset
    seg[4:6] = len(seg).to_bytes(2, "big")
    seg[6:8] = b"\0\0"
    s = ref.partial_sum(ref.pseudo_header(src, dst, 17, len(seg)) + bytes(seg))
    seg[-2:] = ((~s) & 0xFFFF).to_bytes(2, "big")  # the sum becomes 0xffff: checksum 0
    assert ref.transport_checksum(src, dst, 17, seg, 6) == 0
    return seg


@pytest.mark.parametrize("src,dst", [(V4("10.0.2.15"), V4("10.0.2.3")),
                                     (V6("fd00::15"), V6("2001:db8::1"))])
def test_udp_fill_checksum_sends_a_computed_zero_as_all_ones(src, dst):
    seg = _udp_summing_to_zero_checksum(src, dst)
    udp = UdpPacket(seg)
    udp.fill_checksum(src, dst)
    assert udp.checksum == 0xFFFF  # RFC 768: 0 would mean "no checksum"
    assert udp.verify_checksum(src, dst)


def test_frame_fill_checksums_sends_a_computed_udp_zero_as_all_ones():
    src, dst = V4("10.0.2.15"), V4("10.0.2.3")
    seg = _udp_summing_to_zero_checksum(src, dst)
    data = wire.build_frame(wire.EthernetFields(b"\2" * 6, b"\4" * 6, 0x0800),
                            wire.Ipv4Fields(src, dst, 17), None, seg)
    f = wire.parse_frame(data)
    f.fill_checksums()
    assert f.l4.checksum == 0xFFFF
    assert f.verify_checksums()


# ---------------------------------------------------------------------------------------------
# impossible lengths: one byte short of what the header says

def _with(data, **patch):
    """``data`` with bytes replaced: patch={"at_<offset>": bytes}."""
    b = bytearray(data)
    for key, value in patch.items():
        off = int(key[3:])
        b[off:off + len(value)] = value
    return bytes(b)


IPV4 = F.TCP4_DATA[14:]          # 89 bytes, IHL 5
IPV4_OPT = F.IPV4_OPTIONS[14:]   # 43 bytes, IHL 7
IPV6 = F.UDP6[14:]               # 62 bytes
IPV6_EXT = F.IPV6_EXT_UDP[14:]   # hop-by-hop 8 + dest-opts 8 + UDP 14
TCP = F.TCP4_SACK[34:]           # data offset 13 (52 bytes)
UDP = F.UDP4_DNS[34:]            # length 37

def short(whole: bytes) -> bytes:
    return whole[:-1]


IPV4_OPT_BARE = _with(IPV4_OPT[:28], at_2=b"\x00\x1c")  # IHL 7, total length 28: no payload
UDP_BARE = _with(UDP[:8], at_4=b"\x00\x08")  # length 8: no payload

# name -> (view, bytes, reason, code, the valid bytes they were cut from or None)
IMPOSSIBLE = {
    "ethernet-13": (EthernetFrame, F.TCP4_DATA[:13], "truncated Ethernet header", -1,
                    F.TCP4_DATA[:14]),
    "ethernet-vlan-17": (EthernetFrame, F.VLAN_UDP4[:17], "truncated 802.1Q tag", -2,
                         F.VLAN_UDP4[:18]),
    "arp-27": (ArpPacket, F.ARP_REQUEST[14:41], "truncated ARP packet", -3, F.ARP_REQUEST[14:]),
    "arp-hlen-5": (ArpPacket, _with(F.ARP_REQUEST[14:], at_4=b"\x05"),
                   "ARP packet is not Ethernet/IPv4", -4, None),
    "ipv4-19": (Ipv4Packet, IPV4[:19], "truncated IPv4 header", -5, None),
    "ipv4-version-6": (Ipv4Packet, _with(IPV4, at_0=b"\x65"),
                       "IP version does not match the EtherType", -6, None),
    "ipv4-ihl-4": (Ipv4Packet, _with(IPV4, at_0=b"\x44"), "bad IPv4 header length (IHL)", -7,
                   None),
    "ipv4-ihl-past-end": (Ipv4Packet, short(IPV4_OPT_BARE), "bad IPv4 header length (IHL)", -7,
                          IPV4_OPT_BARE),
    "ipv4-total-past-end": (Ipv4Packet, short(IPV4), "bad IPv4 total length", -8, IPV4),
    "ipv4-total-below-ihl": (Ipv4Packet, _with(IPV4_OPT, at_2=b"\x00\x1b"),
                             "bad IPv4 total length", -8, None),
    "ipv6-39": (Ipv6Packet, IPV6[:39], "truncated IPv6 header", -9, None),
    "ipv6-version-4": (Ipv6Packet, _with(IPV6, at_0=b"\x45"),
                       "IP version does not match the EtherType", -6, None),
    "ipv6-plen-past-end": (Ipv6Packet, short(IPV6), "bad IPv6 payload length", -10, IPV6),
    "ipv6-ext-past-plen": (Ipv6Packet, _with(IPV6_EXT, at_4=b"\x00\x0f"),
                           "bad IPv6 extension header", -11, None),
    "ipv6-ext-len-past-end": (Ipv6Packet, _with(IPV6_EXT, at_49=b"\x02"),
                              "bad IPv6 extension header", -11, None),
    "tcp-19": (TcpPacket, TCP[:19], "truncated TCP header", -12, None),
    "tcp-doff-past-end": (TcpPacket, short(TCP), "bad TCP data offset", -13, TCP),
    "tcp-doff-4": (TcpPacket, _with(TCP, at_12=b"\x40"), "bad TCP data offset", -13, None),
    "tcp-option-len-past-options": (TcpPacket, _with(TCP, at_35=b"\x13"), "malformed TCP option",
                                    -14, None),
    "tcp-ts-len-9": (TcpPacket, _with(TCP, at_23=b"\x09"), "malformed TCP option", -14, None),
    "udp-7": (UdpPacket, short(UDP_BARE), "truncated UDP header", -15, UDP_BARE),
    "udp-length-past-end": (UdpPacket, short(UDP), "bad UDP length", -16, UDP),
    "udp-length-7": (UdpPacket, _with(UDP, at_4=b"\x00\x07"), "bad UDP length", -16, None),
    "icmp4-7": (Icmpv4Packet, F.ICMP4_ECHO[34:41], "truncated ICMP header", -17,
                F.ICMP4_ECHO[34:42]),
    "icmp6-3": (Icmpv6Packet, F.ICMP6_ECHO[54:57], "truncated ICMP header", -17,
                F.ICMP6_ECHO[54:58]),
}


@pytest.mark.parametrize("case", IMPOSSIBLE)
def test_impossible_length_is_malformed_with_reason(case, as_buffer):
    cls, data, reason, code, _ = IMPOSSIBLE[case]
    with pytest.raises(MalformedPacket) as exc:
        cls(as_buffer(data))
    assert exc.value.reason == reason
    assert str(exc.value) == reason
    assert exc.value.code == code
    assert wire.strerror(code) == reason


@pytest.mark.parametrize("case", [c for c, v in IMPOSSIBLE.items() if v[4] is not None])
def test_one_byte_more_is_accepted(case):
    # The cases cut from valid bytes are exactly one byte short: with it back, they parse.
    cls, data, _, _, whole = IMPOSSIBLE[case]
    assert whole[:-1] == data
    cls(whole)


def test_malformed_packet_is_a_value_error():
    assert issubclass(MalformedPacket, ValueError)
    assert issubclass(MalformedPacket, FastnetError)
    assert issubclass(ChecksumError, MalformedPacket)
    with pytest.raises(ValueError):
        wire.parse_frame(b"\x00" * 13)


def test_parse_frame_reports_the_layer_that_is_wrong():
    with pytest.raises(MalformedPacket, match="bad TCP data offset") as exc:
        wire.parse_frame(_with(F.TCP4_SACK, at_46=b"\xf0"))
    assert exc.value.code == -13
    assert wire.parse_status(_with(F.TCP4_SACK, at_46=b"\xf0")) == (-13, wire.Kind.INVALID)


# ---------------------------------------------------------------------------------------------
# the buffer export

@pytest.mark.parametrize("case", CASES)
def test_view_keeps_a_bytearray_from_being_resized(case):
    cls, data = CASES[case]
    buf = bytearray(data)
    view = cls(buf)
    with pytest.raises(BufferError):
        buf.append(0)
    with pytest.raises(BufferError):
        del buf[-1:]
    assert view.buffer_len > 0
    del view
    gc.collect()
    buf.append(0)  # released with the view
    assert len(buf) == len(data) + 1


def test_frame_does_not_hold_its_buffer_but_notices_it_shrank():
    buf = bytearray(F.TCP4_DATA)
    f = wire.parse_frame(buf)
    del buf[40:]  # allowed: a Frame keeps no export between calls
    with pytest.raises(BufferError):
        f.verify_checksums()
    with pytest.raises(BufferError):
        f.fill_checksums()
    with pytest.raises(MalformedPacket):
        f.l4  # the view over the shorter bytes checks its lengths again


def test_ipv4_view_keeps_the_header_length_it_validated():
    # The bytearray's owner rewrites the IHL under the view to 15 (60 bytes) on a 28-byte
    # datagram: the view must not read the 40 "option" bytes that are not there.
    buf = bytearray(F.ICMP4_ECHO[14:42])
    buf[2:4] = (28).to_bytes(2, "big")
    view = Ipv4Packet(buf)
    buf[0] = 0x4F
    assert view.header_len == 20
    assert view.options == b""
    assert len(view.payload) == 8
    view.fill_checksum()
    assert view.verify_checksum()
    assert ref.partial_sum(bytes(buf[:20])) == 0xFFFF


def test_frame_verify_uses_the_parsed_ipv4_header_length():
    buf = bytearray(F.ICMP4_ECHO[:42])
    buf[16:18] = (28).to_bytes(2, "big")
    f = wire.parse_frame(buf)
    f.fill_checksums()
    buf[14] = 0x4F  # IHL 15 on a 28-byte datagram, after the parse
    assert not f.verify_checksums()  # and no read past the 42 bytes
    f.fill_checksums()
    assert ref.partial_sum(bytes(buf[14:34])) == 0xFFFF
