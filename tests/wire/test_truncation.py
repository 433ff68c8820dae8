"""Short and broken input: every golden frame cut at every length, through parse_frame and
through every view constructor; seeded random bytes; seeded mutations of the golden frames'
length fields. The answer is always either MalformedPacket or a parse whose every offset lies
inside the buffer, and for parse_frame it is the reference parser's answer. Nothing here
depends on timing (the file also runs against the -O0 debug build)."""

from __future__ import annotations

import inspect
import random

import pytest

from fastnet import wire
from fastnet.errors import MalformedPacket
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
from tests.reference import parse as reference
from tests.wire import frame_flags

VIEW_TYPES = [EthernetFrame, ArpPacket, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
              Icmpv4Packet, Icmpv6Packet]
OFFSET_KEYS = ("len", "ethertype", "vlan_tci", "l4_proto", "l3_off", "l3_len", "l4_off", "l4_len",
               "payload_off", "payload_len", "frag_offset", "more_fragments")


def assert_inside(f, n: int) -> None:
    """Every region a parsed Frame names lies inside the n bytes it was given, in order, and
    every view it hands out can be made (the views re-check what the parse promised)."""
    assert f.len <= n
    assert f.l3_off + f.l3_len <= n
    assert f.l4_off + f.l4_len <= n
    assert f.payload_off + f.payload_len <= n
    if f.ip is not None:
        assert f.l3_off <= f.l4_off <= f.payload_off
        assert f.payload_off + f.payload_len <= f.l4_off + f.l4_len <= f.l3_off + f.l3_len
        assert f.l3_off + f.l3_len == f.len
    assert len(f.payload) == f.payload_len
    f.eth.fields(), f.arp, f.l4
    if f.l4 is not None:
        f.l4.fields()
    assert f.verify_checksums() in (True, False)


def check_against_reference(data: bytes) -> None:
    """parse_frame and the reference parser agree: same error, or same offsets and flags."""
    try:
        want = reference.parse_frame(data)
    except reference.ReferenceMalformed as e:
        with pytest.raises(MalformedPacket) as exc:
            wire.parse_frame(data)
        assert exc.value.reason == e.reason, data.hex()
        assert wire.parse_status(data)[0] == exc.value.code
        return
    f = wire.parse_frame(data)
    assert_inside(f, len(data))
    assert wire.kind_name(f.kind) == want["kind"], data.hex()
    assert {k: getattr(f, k) for k in OFFSET_KEYS} == {k: want[k] for k in OFFSET_KEYS}, data.hex()
    assert f.flags == frame_flags.from_reference(want), data.hex()
    assert wire.parse_status(data) == (0, f.kind)


def read_everything(view) -> None:
    """Touch every property and method of a view that was accepted (must not crash)."""
    n = view.buffer_len
    for name, _ in inspect.getmembers(type(view), inspect.isgetsetdescriptor):
        if not name.startswith("_"):
            value = getattr(view, name)
            if name == "payload":
                assert len(value) <= n
    view.fields()
    if isinstance(view, (Ipv4Packet, Icmpv4Packet)):
        view.verify_checksum()
    elif isinstance(view, (TcpPacket, UdpPacket, Icmpv6Packet)):
        view.verify_checksum(b"\x01\x02\x03\x04", b"\x05\x06\x07\x08")


@pytest.mark.parametrize("name", list(F.ALL))
def test_every_truncation_of_golden_parses_or_is_malformed(name):
    data = F.ALL[name]
    for n in range(len(data) + 1):
        check_against_reference(data[:n])


@pytest.mark.parametrize("name", list(F.ALL))
def test_every_truncation_through_every_view_constructor(name):
    data = F.ALL[name]
    f = wire.parse_frame(data)
    for start in sorted({0, f.l3_off, f.l4_off}):
        for n in range(start, len(data) + 1):
            chunk = data[start:n]
            for cls in VIEW_TYPES:
                try:
                    view = cls(chunk)
                except MalformedPacket:
                    continue
                assert view.buffer_len <= len(chunk)
                read_everything(view)


def test_truncated_views_of_a_bytearray_release_it():
    # A constructor that raises must not leave the buffer exported.
    buf = bytearray(F.TCP4_SACK[34:50])
    with pytest.raises(MalformedPacket):
        TcpPacket(buf)
    buf.append(0)


def test_random_bytes_parse_or_are_malformed():
    rng = random.Random(20261127)
    heads = [b"\x08\x00\x45", b"\x08\x00\x46", b"\x86\xdd\x60", b"\x08\x06\x00\x01\x08\x00\x06\x04",
             b"\x81\x00\x00\x01\x08\x00\x45", b"\x81\x00\x00\x01\x86\xdd\x60"]
    for i in range(2000):
        n = rng.randrange(0, 160)
        body = bytearray(rng.randbytes(n))
        if i % 4 and n >= 20:  # mostly a plausible EtherType and IP version, then noise
            head = rng.choice(heads)
            body[12:12 + len(head)] = head
            del body[n:]
        check_against_reference(bytes(body))


def _near(rng, n: int) -> int:
    """A length that is usually right (n or less) and sometimes a little too long."""
    shorter = rng.choice([0, 0, 0, 0, 1, 2, rng.randrange(n + 1)])
    return max(0, n - shorter + rng.choice([0] * 8 + [1, 2]))


def plausible_frame(rng: random.Random) -> bytes:
    """Random bytes whose length fields are mostly consistent, so the parse gets deep: IPv4
    options, IPv6 extension header chains, TCP options, UDP lengths, fragments."""
    l2 = bytearray(rng.randbytes(12))
    if rng.random() < 0.2:
        l2 += b"\x81\x00" + rng.randbytes(2)
    v6 = rng.random() < 0.5
    l2 += b"\x86\xdd" if v6 else b"\x08\x00"
    protos = [6, 6, 17, 17, 1, 58, 59, 47] + ([0, 43, 44, 51, 60] if v6 else [])
    size = rng.randrange(0, 120)
    l4_proto = rng.choice(protos)
    body = bytearray(rng.randbytes(size))
    # L4 header: a data offset or length that mostly fits, TCP options from the known kinds.
    if l4_proto == 6 and size >= 20:
        hl = rng.choice([20, 24, 32, 40, 44, 60, 64])
        body[12] = (min(hl, 60) // 4) << 4
        opts = bytearray()
        while len(opts) < hl - 20:
            kind = rng.choice([0, 1, 1, 2, 3, 4, 5, 8, 30])
            length = {2: 4, 3: 3, 4: 2, 5: 2 + 8 * rng.randint(1, 4), 8: 10}.get(kind, 4)
            length += rng.choice([0] * 6 + [-1, 1])
            opts += bytes([kind]) if kind < 2 else bytes([kind, max(0, length)]) + rng.randbytes(
                max(0, length - 2))
        body[20:20 + min(len(opts), hl - 20)] = opts[:hl - 20]
        del body[size:]
    elif l4_proto == 17 and size >= 8:
        body[4:6] = _near(rng, size).to_bytes(2, "big")
    if v6:
        ext = bytearray()
        nxt = l4_proto
        for _ in range(rng.choice([0, 0, 1, 2, 3, 9])):  # a chain, innermost first
            kind = rng.choice([0, 43, 44, 51, 60])
            units = rng.choice([0, 0, 1, 2])
            length = 8 if kind == 44 else (units + 2) * 4 if kind == 51 else (units + 1) * 8
            hdr = bytearray(rng.randbytes(length))
            hdr[0], hdr[1] = nxt, (units if kind != 44 else hdr[1])
            if kind == 44 and rng.random() < 0.5:
                hdr[2:4] = (rng.choice([0, 0, 1, 8, 9]) << 3 | rng.randrange(2)).to_bytes(2, "big")
            ext = hdr + ext
            nxt = kind
        payload = ext + body
        ip = bytearray(rng.randbytes(40))
        ip[0] = 0x60 | (ip[0] & 0x0F)
        ip[4:6] = _near(rng, len(payload)).to_bytes(2, "big")
        ip[6] = nxt
    else:
        ihl = rng.choice([5, 5, 5, 6, 7, 15, 4])
        payload = body
        ip = bytearray(rng.randbytes(ihl * 4 if ihl >= 5 else 20))
        ip[0] = 0x40 | ihl
        ip[2:4] = _near(rng, len(ip) + len(payload)).to_bytes(2, "big")
        frag = rng.choice([0, 0, 0, 0x4000, 0x2000, 0x0008, rng.randrange(1 << 16)])
        ip[6:8] = frag.to_bytes(2, "big")
        ip[9] = l4_proto
    return bytes(l2 + ip + payload + rng.randbytes(rng.choice([0, 0, 0, 6, 20])))


def test_plausible_random_frames_agree_with_the_reference():
    rng = random.Random(8200)
    seen = set()
    for _ in range(15000):
        data = plausible_frame(rng)
        check_against_reference(data)
        rc, kind = wire.parse_status(data)
        seen.add(wire.kind_name(kind) if rc == 0 else rc)
    # The generator reaches every kind behind an IP header and most errors past the IP header.
    assert {"tcp4", "udp4", "icmp4", "ipv4", "ipv4-fragment", "tcp6", "udp6", "icmp6", "ipv6",
            "ipv6-fragment"} <= seen
    assert {-7, -8, -10, -11, -12, -13, -14, -15, -16} <= seen


def _length_fields(data: bytes) -> list[int]:
    """Offsets of the bytes that hold lengths (and the fields that steer the parse) in a
    golden frame: EtherType, IHL, total/payload length, fragment field, protocol, extension
    header lengths, TCP data offset and option lengths, UDP length."""
    f = wire.parse_frame(data)
    offs = [12, 13]
    l3, l4 = f.l3_off, f.l4_off
    if f.ethertype == 0x0800 and f.ip is not None:
        offs += [l3, l3 + 2, l3 + 3, l3 + 6, l3 + 7, l3 + 9]
    if f.ethertype == 0x86DD:
        offs += [l3, l3 + 4, l3 + 5, l3 + 6]
        nxt, pos = data[l3 + 6], l3 + 40
        while pos < l4:  # each extension header's next-header and length bytes
            offs += [pos, pos + 1] + ([pos + 2, pos + 3] if nxt == 44 else [])
            nxt, pos = data[pos], pos + (8 if nxt == 44 else (data[pos + 1] + 1) * 8)
    if f.kind in (wire.Kind.TCP4, wire.Kind.TCP6):
        offs += [l4 + 12] + list(range(l4 + 20, f.payload_off))
    if f.kind in (wire.Kind.UDP4, wire.Kind.UDP6):
        offs += [l4 + 4, l4 + 5]
    return [o for o in offs if o < len(data)]


@pytest.mark.parametrize("name", list(F.ALL))
def test_bit_flips_in_length_fields_parse_or_are_malformed(name):
    data = F.ALL[name]
    offsets = _length_fields(data)
    for off in offsets:  # every single-bit flip of every length byte
        for bit in range(8):
            mutated = bytearray(data)
            mutated[off] ^= 1 << bit
            check_against_reference(bytes(mutated))
    rng = random.Random(name)
    for _ in range(150):  # and a few at once, anywhere, then cut somewhere
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            off = rng.choice(offsets) if rng.random() < 0.7 else rng.randrange(len(data))
            mutated[off] = rng.randrange(256) if rng.random() < 0.3 else mutated[off] ^ (
                1 << rng.randrange(8))
        check_against_reference(bytes(mutated[:rng.randint(len(data) // 2, len(data))]))


def test_ipv6_later_fragment_is_not_walked_into():
    # A non-first fragment whose original payload began with a destination options header:
    # what follows the fragment header is the middle of that payload (RFC 8200 §4.5), not a
    # header, so its bytes must not be read as one (they used to fail as "bad IPv6 extension
    # header", or give a wrong upper-layer offset).
    data = bytearray(F.IPV6_FRAG_LATER)
    data[54] = 60  # fragment header's next header: destination options
    f = wire.parse_frame(data)
    assert f.kind == wire.Kind.IPV6_FRAG
    assert (f.l4_proto, f.l4_off, f.payload_off, f.frag_offset) == (60, 62, 62, 9)
    check_against_reference(bytes(data))
    data[63] = 0  # the "length" byte of the would-be header: 8 bytes, inside the payload
    assert wire.parse_frame(data).l4_off == 62
