"""Hypothesis round trips: ``parse(build(x)) == x`` for every layer build_frame writes, with
checksums that verify. The strategies respect what the wire allows: SACK blocks only as many
as fit in 40 option bytes after the other options, IPv4 options in 4-byte multiples up to 40
bytes, fragments without an L4 header."""

from __future__ import annotations

from ipaddress import IPv4Address as V4
from ipaddress import IPv6Address as V6

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastnet import wire
from fastnet.wire import (
    ArpFields,
    EthernetFields,
    IcmpFields,
    Ipv4Fields,
    Ipv6Fields,
    Kind,
    TcpFields,
    UdpFields,
)

u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
macs = st.binary(min_size=6, max_size=6)
addresses4 = u32.map(V4)
addresses6 = st.integers(0, (1 << 128) - 1).map(V6)
payloads = st.one_of(st.binary(max_size=64), st.binary(min_size=64, max_size=1500))


def ethernet(ethertype):
    return st.builds(EthernetFields, macs, macs, st.just(ethertype), st.none() | u16)


# IPv4 options that look like real ones (RFC 791 §3.1), padded to a 4-byte multiple.
_ipv4_option = st.one_of(
    st.just(b"\x01"),                                            # no operation
    st.just(bytes.fromhex("94040000")),                          # router alert (RFC 2113)
    st.integers(1, 4).map(lambda n: bytes([0x07, 3 + 4 * n, 4]) + bytes(4 * n)),  # record route
    st.integers(1, 4).map(lambda n: bytes([0x44, 4 + 4 * n, 5, 0]) + bytes(4 * n)),  # timestamp
)


def _pad(opts: bytes) -> bytes:
    return opts + b"\x00" * (-len(opts) % 4)  # end-of-option-list bytes


ipv4_options = st.lists(_ipv4_option, max_size=6).map(b"".join).filter(
    lambda o: len(o) <= 40).map(_pad).filter(lambda o: len(o) <= 40)


def ipv4(protocol, *, fragment=False):
    if fragment:
        frag = st.one_of(st.tuples(st.just(True), st.integers(0, 0x1FFF)),
                         st.tuples(st.just(False), st.integers(1, 0x1FFF)))
    else:
        frag = st.just((False, 0))
    return st.builds(
        lambda src, dst, proto, ttl, ident, tos, df, mf_off, opts: Ipv4Fields(
            src, dst, proto, ttl, ident, tos, df, mf_off[0], mf_off[1], opts),
        addresses4, addresses4, protocol, u8, u16, u8, st.booleans(), frag, ipv4_options)


def ipv6(next_header):
    return st.builds(Ipv6Fields, addresses6, addresses6, next_header, u8, u8,
                     st.integers(0, 0xFFFFF))


@st.composite
def tcp(draw):
    mss = draw(st.none() | u16)
    window_scale = draw(st.none() | u8)
    sack_permitted = draw(st.booleans())
    timestamps = draw(st.none() | st.tuples(u32, u32))
    # build_frame's layout (see _tcp_spec): MSS 4, SACK-permitted+TS 12 (or NOP NOP
    # SACK-permitted 4), NOP WS 4, then NOP NOP SACK with 8 bytes a block, in 40 bytes.
    used = 4 * (mss is not None) + 4 * (window_scale is not None) + (
        12 if timestamps is not None else 4 * sack_permitted)
    room = min((40 - used - 4) // 8, 4)
    blocks = draw(st.lists(st.tuples(u32, u32), max_size=room).map(tuple))
    return TcpFields(draw(u16), draw(u16), draw(u32), draw(u32), draw(u8), draw(u16), draw(u16),
                     mss, window_scale, sack_permitted, timestamps, blocks)


udp = st.builds(UdpFields, u16, u16)
icmp = st.builds(IcmpFields, u8, u8, u32)

L4 = {
    Kind.TCP4: (tcp(), 6), Kind.UDP4: (udp, 17), Kind.ICMP4: (icmp, 1),
    Kind.TCP6: (tcp(), 6), Kind.UDP6: (udp, 17), Kind.ICMP6: (icmp, 58),
}


@st.composite
def l4_frames(draw, kind):
    l4_strategy, proto = L4[kind]
    v6 = kind in (Kind.TCP6, Kind.UDP6, Kind.ICMP6)
    eth = draw(ethernet(0x86DD if v6 else 0x0800))
    ip = draw(ipv6(st.just(proto)) if v6 else ipv4(st.just(proto)))
    return eth, ip, draw(l4_strategy), draw(payloads)


def assert_round_trip(built, eth, ip, l4, payload, kind):
    f = wire.parse_frame(built)
    assert f.kind == kind
    assert f.len == len(built)
    assert f.eth.fields() == eth
    assert f.ip.fields() == ip
    if l4 is None:
        assert f.l4 is None
    else:
        assert f.l4.fields() == l4
    assert bytes(f.payload) == payload
    assert f.verify_checksums()
    return f


@pytest.mark.parametrize("kind", list(L4), ids=lambda k: k.name.lower())
@given(data=st.data())
def test_l4_frame_round_trips(kind, data):
    eth, ip, l4, payload = data.draw(l4_frames(kind))
    built = wire.build_frame(eth, ip, l4, payload)
    f = assert_round_trip(built, eth, ip, l4, payload, kind)
    if kind in (Kind.TCP4, Kind.TCP6):
        assert f.l4.header_len == 20 + len(f.l4.options)
        assert f.l4.header_len <= 60


@given(eth=ethernet(0x0800), ip=ipv4(st.sampled_from([47, 50, 89, 132, 255])), payload=payloads)
def test_ipv4_with_unparsed_protocol_round_trips(eth, ip, payload):
    assert_round_trip(wire.build_frame(eth, ip, None, payload), eth, ip, None, payload, Kind.IPV4)


@given(eth=ethernet(0x0800), ip=ipv4(st.sampled_from([1, 6, 17, 47]), fragment=True),
       payload=payloads)
def test_ipv4_fragment_round_trips_without_l4(eth, ip, payload):
    f = assert_round_trip(wire.build_frame(eth, ip, None, payload), eth, ip, None, payload,
                          Kind.IPV4_FRAG)
    assert f.is_fragment
    assert (f.frag_offset, f.more_fragments) == (ip.frag_offset, ip.more_fragments)


@given(eth=ethernet(0x86DD), ip=ipv6(st.sampled_from([59, 47, 50, 89, 132])), payload=payloads)
def test_ipv6_with_unparsed_next_header_round_trips(eth, ip, payload):
    assert_round_trip(wire.build_frame(eth, ip, None, payload), eth, ip, None, payload, Kind.IPV6)


@given(eth=ethernet(0x0806), arp=st.builds(ArpFields, u16, macs, addresses4, macs, addresses4))
def test_arp_round_trips(eth, arp):
    built = wire.build_frame(eth, arp=arp)
    f = wire.parse_frame(built)
    assert f.kind == Kind.ARP
    assert (f.eth.fields(), f.arp.fields()) == (eth, arp)
    assert len(built) == (18 if eth.vlan_tci is not None else 14) + 28


@given(eth=st.builds(EthernetFields, macs, macs,
                     u16.filter(lambda t: t not in (0x0800, 0x0806, 0x86DD, 0x8100)),
                     st.none() | u16),
       payload=payloads)
def test_other_ethertype_round_trips(eth, payload):
    built = wire.build_frame(eth, payload=payload)
    f = wire.parse_frame(built)
    assert f.kind == Kind.ETHERNET
    assert f.eth.fields() == eth
    assert bytes(f.payload) == bytes(f.eth.payload) == payload


@given(data=st.data())
def test_tcp_options_survive_build_and_parse_in_every_combination(data):
    # Every subset of the options with the most SACK blocks that fit: the tightest layouts.
    mss, ws, sp, ts = (data.draw(st.booleans()) for _ in range(4))
    used = 4 * mss + 4 * ws + (12 if ts else 4 * sp)
    room = min((40 - used - 4) // 8, 4)
    t = TcpFields(1, 2, mss=1460 if mss else None, window_scale=7 if ws else None,
                  sack_permitted=sp, timestamps=(1, 2) if ts else None,
                  sack_blocks=tuple((i, i + 1) for i in range(room)))
    eth = EthernetFields(b"\x02" * 6, b"\x04" * 6, 0x0800)
    ip = Ipv4Fields(V4("10.0.0.1"), V4("10.0.0.2"), 6)
    assert_round_trip(wire.build_frame(eth, ip, t, b"x"), eth, ip, t, b"x", Kind.TCP4)


@pytest.mark.parametrize("opts,limit", [
    (dict(), 4),
    (dict(timestamps=(1, 2)), 3),  # RFC 2018 §3: three blocks with timestamps
    (dict(timestamps=(1, 2), mss=1460, window_scale=7, sack_permitted=True), 2),
])
def test_one_sack_block_more_than_fits_is_refused(opts, limit):
    eth = EthernetFields(b"\x02" * 6, b"\x04" * 6, 0x0800)
    ip = Ipv4Fields(V4("10.0.0.1"), V4("10.0.0.2"), 6)
    fits = TcpFields(1, 2, sack_blocks=tuple((i, i) for i in range(limit)), **opts)
    assert wire.parse_frame(wire.build_frame(eth, ip, fits)).l4.sack_blocks == fits.sack_blocks
    with pytest.raises(ValueError):
        too_many = tuple((i, i) for i in range(limit + 1))
        wire.build_frame(eth, ip, TcpFields(1, 2, sack_blocks=too_many, **opts))


def test_build_frame_refuses_an_l4_header_that_is_not_the_ip_protocol():
    # The checksum is placed by the IP protocol; a TCP protocol over an 8-byte UDP header
    # would put it past the end of the frame.
    eth4 = EthernetFields(b"\x02" * 6, b"\x04" * 6, 0x0800)
    eth6 = EthernetFields(b"\x02" * 6, b"\x04" * 6, 0x86DD)
    cases = [
        (eth4, Ipv4Fields(V4("10.0.0.1"), V4("10.0.0.2"), 6), UdpFields(1, 2)),
        (eth4, Ipv4Fields(V4("10.0.0.1"), V4("10.0.0.2"), 6), IcmpFields(8)),
        (eth4, Ipv4Fields(V4("10.0.0.1"), V4("10.0.0.2"), 17), TcpFields(1, 2)),
        (eth4, Ipv4Fields(V4("10.0.0.1"), V4("10.0.0.2"), 58), IcmpFields(8)),
        (eth6, Ipv6Fields(V6("::1"), V6("::2"), 6), UdpFields(1, 2)),
        (eth6, Ipv6Fields(V6("::1"), V6("::2"), 1), IcmpFields(128)),
    ]
    for eth, ip, l4 in cases:
        with pytest.raises(ValueError, match="does not match"):
            wire.build_frame(eth, ip, l4)


@pytest.mark.parametrize("ip,overhead", [
    (Ipv4Fields(V4("10.0.0.1"), V4("10.0.0.2"), 17), 20 + 8),
    (Ipv4Fields(V4("10.0.0.1"), V4("10.0.0.2"), 17, options=b"\x01" * 20), 40 + 8),
    (Ipv6Fields(V6("::1"), V6("::2"), 17), 8),
])
def test_largest_datagram_builds_and_one_byte_more_is_refused(ip, overhead):
    # IPv4 total length and IPv6 payload length are 16 bits. (An IPv4 header with 20 option
    # bytes is as long as an IPv6 header; the limit must still be the IPv4 one.)
    eth = EthernetFields(b"\x02" * 6, b"\x04" * 6, 0x86DD if isinstance(ip, Ipv6Fields) else 0x0800)
    biggest = wire.build_frame(eth, ip, UdpFields(1, 2), bytes(0xFFFF - overhead))
    f = wire.parse_frame(biggest)
    assert f.payload_len == 0xFFFF - overhead
    assert f.verify_checksums()
    with pytest.raises(ValueError, match="too large"):
        wire.build_frame(eth, ip, UdpFields(1, 2), bytes(0xFFFF - overhead + 1))


def test_build_frame_refuses_bad_ipv4_options_and_field_types():
    eth = EthernetFields(b"\x02" * 6, b"\x04" * 6, 0x0800)
    with pytest.raises(ValueError, match="multiple of 4"):
        wire.build_frame(eth, Ipv4Fields(V4("10.0.0.1"), V4("10.0.0.2"), 17, options=b"\x01" * 3))
    with pytest.raises(ValueError, match="multiple of 4"):
        wire.build_frame(eth, Ipv4Fields(V4("10.0.0.1"), V4("10.0.0.2"), 17, options=b"\x01" * 44))
    with pytest.raises(TypeError):
        wire.build_frame(eth, Ipv4Fields(V4("10.0.0.1"), V4("10.0.0.2"), 17), object())
    with pytest.raises(TypeError):
        wire.build_frame(eth, object())
