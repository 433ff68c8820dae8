"""The Internet checksum (RFC 1071) and its incremental update (RFC 1624), against the slow
reference in tests/reference/checksum.py and against the RFCs' own worked numbers."""

from __future__ import annotations

import random
from ipaddress import IPv4Address as V4
from ipaddress import IPv6Address as V6

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastnet import wire
from tests.data import frames as F
from tests.reference import checksum as ref


class Fast:
    """fastnet.wire's checksum functions under the reference's names."""

    checksum = staticmethod(wire.checksum)
    partial_sum = staticmethod(wire.checksum_partial)


@pytest.fixture(params=["fastnet", "reference"])
def impl(request):
    """The fixed RFC examples hold for both the C checksum and the oracle."""
    return Fast if request.param == "fastnet" else ref


def at_offset(data: bytes, offset: int, kind: str = "bytearray"):
    """``data`` as a slice starting ``offset`` bytes into a bigger buffer (any alignment)."""
    if kind == "numpy":
        big = np.zeros(len(data) + offset + 8, dtype=np.uint8)
        big[offset:offset + len(data)] = np.frombuffer(data, dtype=np.uint8)
        return big[offset:offset + len(data)]
    big = bytearray(offset) + bytearray(data) + bytearray(8)
    return memoryview(big)[offset:offset + len(data)]


# ---------------------------------------------------------------------------------------------
# RFC worked examples (fixed cases)

RFC1071_BYTES = bytes.fromhex("0001f203f4f5f6f7")  # RFC 1071 §3, "numerical example"


def test_rfc1071_numerical_example(impl):
    # Words 0001 + f203 + f4f5 + f6f7 = 2ddf0; folded ddf2; checksum ~ddf2 = 220d.
    assert impl.partial_sum(RFC1071_BYTES) == 0xDDF2
    assert impl.checksum(RFC1071_BYTES) == 0x220D


def test_rfc1071_byte_order_independence(impl):
    # RFC 1071 §2(B): summing the byte-swapped words gives the byte-swapped sum (f2dd).
    swapped = bytes(b for i in range(0, 8, 2) for b in (RFC1071_BYTES[i + 1], RFC1071_BYTES[i]))
    assert impl.partial_sum(swapped) == 0xF2DD


def test_rfc1071_parallel_summation_of_pieces():
    # RFC 1071 §2(C)/(B): pieces summed apart and combined, odd first piece byte-swapped.
    a, b = RFC1071_BYTES[:4], RFC1071_BYTES[4:]
    assert (wire.checksum_partial(a), wire.checksum_partial(b)) == (0xF204, 0xEBED)
    assert wire.checksum_combine(0xF204, 0xEBED, 4) == 0xDDF2
    a, b = RFC1071_BYTES[:3], RFC1071_BYTES[3:]  # 0001 + f200 = f201; 03f4 + f5f6 + f700 = f0eb
    assert (wire.checksum_partial(a), wire.checksum_partial(b)) == (0xF201, 0xF0EB)
    assert wire.checksum_combine(0xF201, 0xF0EB, 3) == 0xDDF2


def test_verifying_data_that_holds_its_checksum_gives_zero(impl):
    data = RFC1071_BYTES + (0x220D).to_bytes(2, "big")
    assert impl.checksum(data) == 0
    assert impl.partial_sum(data) == 0xFFFF


def test_checksum_of_nothing_and_of_zeros():
    for n in (0, 1, 2, 3, 64):
        assert wire.checksum(bytes(n)) == ref.checksum(bytes(n)) == 0xFFFF
        assert wire.checksum_partial(bytes(n)) == 0


# RFC 1624 §4. Worked from the formulas of §2-3 here, not copied (the RFC text was not at hand):
# the other header words sum to C0 = 0xCD7A and a word m = 0x5555 becomes m' = 0x3285.
#   HC  = ~(0xCD7A + 0x5555) = ~0x22D0 = 0xDD2F
#   HC' = ~(0xCD7A + 0x3285) = ~0xFFFF = 0x0000                 (from scratch)
#   eqn. 3: ~(~HC + ~m + m') = ~(0x22D0 + 0xAAAA + 0x3285) = ~0xFFFF = 0x0000
#   eqn. 2 (RFC 1141): HC + m + ~m' = 0xDD2F + 0x5555 + 0xCD7A = 0xFFFF: -0, the wrong zero.
RFC1624_C0, RFC1624_M, RFC1624_M2 = 0xCD7A, 0x5555, 0x3285


def test_rfc1624_example_by_recomputation(impl):
    assert impl.checksum((RFC1624_C0 << 16 | RFC1624_M).to_bytes(4, "big")) == 0xDD2F
    assert impl.checksum((RFC1624_C0 << 16 | RFC1624_M2).to_bytes(4, "big")) == 0x0000


def test_rfc1624_example_eqn3_gives_plus_zero():
    assert wire.checksum_update16(0xDD2F, RFC1624_M, RFC1624_M2) == 0x0000
    assert wire.checksum_update(0xDD2F, b"\x55\x55", b"\x32\x85") == 0x0000


def test_rfc1624_example_eqn2_would_give_minus_zero():
    # The failure eqn. 3 exists to avoid, computed with the reference: fastnet must not match it.
    eqn2 = ref.partial_sum(b"", 0xDD2F + RFC1624_M + (~RFC1624_M2 & 0xFFFF))
    assert eqn2 == 0xFFFF
    assert wire.checksum_update16(0xDD2F, RFC1624_M, RFC1624_M2) != eqn2


def test_rfc1624_unchanged_word_leaves_checksum_alone():
    # Erratum 4782 claims eqn. 3 turns HC = 0 into 0xFFFF when m' = m; worked out,
    # ~(0xFFFF + 0xAAAA + 0x5555) = ~0xFFFF = 0x0000, so HC stays 0. Any HC, any m:
    rng = random.Random(1624)
    for hc in [0x0000, 0xFFFF, 0x1234] + [rng.randrange(0x10000) for _ in range(200)]:
        m = rng.randrange(0x10000)
        want = 0 if hc == 0xFFFF else hc  # a header never holds -0 once updated
        assert wire.checksum_update16(hc, m, m) == want


# ---------------------------------------------------------------------------------------------
# whole-buffer checksum against the reference

def test_checksum_matches_reference_at_every_length_up_to_2000():
    rng = random.Random(1071)
    for n in range(2001):
        data = rng.randbytes(n)
        offset = n % 8
        buf = at_offset(data, offset, "numpy" if n % 3 == 0 else "bytearray")
        assert wire.checksum(buf) == ref.checksum(data), n
        assert wire.checksum_partial(buf) == ref.partial_sum(data), n


def test_checksum_matches_reference_at_every_alignment_for_short_lengths():
    rng = random.Random(8)
    for n in range(130):
        data = rng.randbytes(n)
        want = ref.checksum(data)
        for offset in range(8):
            assert wire.checksum(at_offset(data, offset)) == want, (n, offset)


def test_checksum_of_all_ones_does_not_fold_to_zero():
    # 0xffff words sum to 0xffff (-0), never to 0: the checksum is 0, not 0xffff.
    for n in (2, 4, 8, 30, 32, 34, 64, 1000, 4096):
        assert wire.checksum_partial(b"\xff" * n) == ref.partial_sum(b"\xff" * n) == 0xFFFF
        assert wire.checksum(b"\xff" * n) == 0


def test_checksum_of_a_large_buffer_does_not_overflow():
    data = np.full(1 << 22, 0xFF, dtype=np.uint8)  # 4 MiB of 0xff: many carries per word
    data[-1] = 0xFE
    # 2^21 words of 0xffff sum to -0; the last word is 0xfffe: total folds to 0xfffe.
    assert wire.checksum_partial(data) == 0xFFFE


@given(data=st.binary(max_size=2000), offset=st.integers(0, 7),
       kind=st.sampled_from(["bytearray", "numpy"]), initial=st.integers(0, 0xFFFFFFFF))
def test_checksum_with_initial_sum_matches_reference(data, offset, kind, initial):
    buf = at_offset(data, offset, kind)
    assert wire.checksum(buf, initial) == ref.checksum(data, initial)
    assert wire.checksum_partial(buf, initial) == ref.partial_sum(data, initial)


# ---------------------------------------------------------------------------------------------
# partial sums combined

@given(data=st.binary(max_size=1500), cut=st.integers(0, 1500))
def test_partial_sums_of_two_pieces_combine_to_the_whole(data, cut):
    cut = min(cut, len(data))
    a, b = data[:cut], data[cut:]
    combined = wire.checksum_combine(wire.checksum_partial(a), wire.checksum_partial(b), len(a))
    assert combined == ref.partial_sum(data)


@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=6))
def test_partial_sums_of_many_pieces_combine_to_the_whole(data, cuts):
    edges = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    total, length = 0, 0
    for lo, hi in zip(edges, edges[1:]):
        total = wire.checksum_combine(total, wire.checksum_partial(data[lo:hi]), length)
        length += hi - lo
    assert total == ref.partial_sum(data)
    assert wire.checksum_finish(total) == ref.checksum(data)


def test_combine_with_an_odd_first_piece_at_every_short_split():
    rng = random.Random(3)
    for n in range(1, 40):
        data = rng.randbytes(n)
        for cut in range(n + 1):
            a, b = data[:cut], data[cut:]
            got = wire.checksum_combine(wire.checksum_partial(a), wire.checksum_partial(b), cut)
            assert got == ref.partial_sum(data), (n, cut)


def test_partial_sum_continues_from_an_earlier_even_piece():
    rng = random.Random(4)
    for n in range(0, 200, 2):
        a, b = rng.randbytes(n), rng.randbytes(rng.randrange(100))
        assert wire.checksum_partial(b, wire.checksum_partial(a)) == ref.partial_sum(a + b)


# ---------------------------------------------------------------------------------------------
# pseudo-headers

addresses4 = st.integers(0, (1 << 32) - 1).map(V4)
addresses6 = st.integers(0, (1 << 128) - 1).map(V6)


@given(src=addresses4, dst=addresses4, proto=st.integers(0, 255), length=st.integers(0, 0xFFFF),
       form=st.sampled_from(["object", "str", "bytes"]))
def test_pseudo_header_sum_v4_matches_reference(src, dst, proto, length, form):
    conv = {"object": lambda a: a, "str": str, "bytes": lambda a: a.packed}[form]
    assert wire.pseudo_header_sum(conv(src), conv(dst), proto, length) == \
        ref.pseudo_header_sum(src, dst, proto, length)


@given(src=addresses6, dst=addresses6, proto=st.integers(0, 255),
       length=st.integers(0, 0xFFFFFFFF), form=st.sampled_from(["object", "str", "bytes"]))
def test_pseudo_header_sum_v6_matches_reference(src, dst, proto, length, form):
    conv = {"object": lambda a: a, "str": str, "bytes": lambda a: a.packed}[form]
    assert wire.pseudo_header_sum(conv(src), conv(dst), proto, length) == \
        ref.pseudo_header_sum(src, dst, proto, length)


def test_pseudo_header_sum_refuses_mixed_versions():
    with pytest.raises(ValueError):
        wire.pseudo_header_sum(V4("10.0.0.1"), V6("::1"), 6, 20)
    with pytest.raises(ValueError):
        wire.pseudo_header_sum(b"\x01\x02\x03", b"\x01\x02\x03", 6, 20)


@pytest.mark.parametrize("name", ["TCP4_DATA", "UDP4_DNS", "TCP6_SYNACK", "UDP6", "ICMP6_ECHO",
                                  "IPV6_EXT_UDP"])
def test_pseudo_header_plus_segment_verifies_golden(name):
    data = F.ALL[name]
    f = wire.parse_frame(data)
    segment = data[f.l4_off:f.l4_off + f.l4_len]
    initial = wire.pseudo_header_sum(f.ip.src, f.ip.dst, f.l4_proto, f.l4_len)
    assert wire.checksum(segment, initial) == 0
    assert ref.checksum(ref.pseudo_header(f.ip.src, f.ip.dst, f.l4_proto, f.l4_len) + segment) == 0


# ---------------------------------------------------------------------------------------------
# RFC 1624 updates in real frames (what NAT does), against recomputation from scratch

def _rewrite(name: str, where: str, new: bytes):
    """Rewrite an address or port of a golden frame; return (old frame, new frame, parse)."""
    old = bytearray(F.ALL[name])
    f = wire.parse_frame(old)
    l3, l4 = f.l3_off, f.l4_off
    v6 = f.ethertype == 0x86DD
    off = {"src": l3 + (8 if v6 else 12), "dst": l3 + (24 if v6 else 16),
           "sport": l4, "dport": l4 + 2}[where]
    new_frame = bytearray(old)
    new_frame[off:off + len(new)] = new
    return old, new_frame, f, off


L4_CSUM_OFF = {wire.Kind.TCP4: 16, wire.Kind.TCP6: 16, wire.Kind.UDP4: 6, wire.Kind.UDP6: 6}


def _recomputed(frame: bytearray, f) -> tuple[int | None, int]:
    """(IPv4 header checksum or None, L4 checksum) of ``frame`` computed from scratch."""
    ip = bytes(frame[f.l3_off:f.l3_off + f.l3_len])
    seg = bytes(frame[f.l4_off:f.l4_off + f.l4_len])
    if f.ethertype == 0x0800:
        hl = (ip[0] & 0x0F) * 4
        src, dst, ip_csum = ip[12:16], ip[16:20], ref.ipv4_header_checksum(ip[:hl])
    else:
        src, dst, ip_csum = ip[8:24], ip[24:40], None
    return ip_csum, ref.transport_checksum(src, dst, f.l4_proto, seg, L4_CSUM_OFF[f.kind])


def _same_checksum(kind, got, want):
    # UDP sends a computed 0 as 0xffff (RFC 768); the two are the same ones'-complement zero.
    if kind in (wire.Kind.UDP4, wire.Kind.UDP6):
        return got == want or {got, want} == {0, 0xFFFF}
    return got == want


@given(new=st.integers(0, (1 << 32) - 1), where=st.sampled_from(["src", "dst"]),
       name=st.sampled_from(["TCP4_DATA", "TCP4_SACK", "UDP4_DNS", "VLAN_UDP4", "IPV4_OPTIONS"]))
def test_update32_after_ipv4_address_rewrite_equals_recomputation(new, where, name):
    old, frame, f, off = _rewrite(name, where, new.to_bytes(4, "big"))
    old_word = int.from_bytes(old[off:off + 4], "big")
    ip_csum_off = f.l3_off + 10
    l4_csum_off = f.l4_off + L4_CSUM_OFF[f.kind]
    ip_csum, l4_csum = _recomputed(frame, f)
    got_ip = wire.checksum_update32(int.from_bytes(old[ip_csum_off:ip_csum_off + 2], "big"),
                                    old_word, new)
    got_l4 = wire.checksum_update32(int.from_bytes(old[l4_csum_off:l4_csum_off + 2], "big"),
                                    old_word, new)
    assert got_ip == ip_csum
    assert _same_checksum(f.kind, got_l4, l4_csum)
    frame[ip_csum_off:ip_csum_off + 2] = got_ip.to_bytes(2, "big")
    frame[l4_csum_off:l4_csum_off + 2] = got_l4.to_bytes(2, "big")
    assert wire.parse_frame(frame).verify_checksums()


@given(new=st.integers(0, 0xFFFF), where=st.sampled_from(["sport", "dport"]),
       name=st.sampled_from(["TCP4_DATA", "TCP4_SYN", "UDP4_DNS", "TCP6_SYNACK", "UDP6",
                             "IPV6_EXT_UDP"]))
def test_update16_after_port_rewrite_equals_recomputation(new, where, name):
    old, frame, f, off = _rewrite(name, where, new.to_bytes(2, "big"))
    l4_csum_off = f.l4_off + L4_CSUM_OFF[f.kind]
    _, l4_csum = _recomputed(frame, f)
    got = wire.checksum_update16(int.from_bytes(old[l4_csum_off:l4_csum_off + 2], "big"),
                                 int.from_bytes(old[off:off + 2], "big"), new)
    assert _same_checksum(f.kind, got, l4_csum)
    assert got == wire.checksum_update(int.from_bytes(old[l4_csum_off:l4_csum_off + 2], "big"),
                                       old[off:off + 2], new.to_bytes(2, "big"))
    frame[l4_csum_off:l4_csum_off + 2] = got.to_bytes(2, "big")
    assert wire.parse_frame(frame).verify_checksums()


@given(new=st.binary(min_size=16, max_size=16), where=st.sampled_from(["src", "dst"]),
       name=st.sampled_from(["TCP6_SYNACK", "UDP6", "ICMP6_ECHO"]))
def test_update_bytes_after_ipv6_address_rewrite_equals_recomputation(new, where, name):
    old, frame, f, off = _rewrite(name, where, new)
    csum_off = f.l4_off + (2 if f.kind == wire.Kind.ICMP6 else L4_CSUM_OFF[f.kind])
    seg = bytes(frame[f.l4_off:f.l4_off + f.l4_len])
    ip = bytes(frame[f.l3_off:f.l3_off + 40])
    want = ref.transport_checksum(ip[8:24], ip[24:40], f.l4_proto, seg, csum_off - f.l4_off)
    got = wire.checksum_update(int.from_bytes(old[csum_off:csum_off + 2], "big"),
                               old[off:off + 16], new)
    assert _same_checksum(f.kind, got, want)
    frame[csum_off:csum_off + 2] = got.to_bytes(2, "big")
    assert wire.parse_frame(frame).verify_checksums()


@given(check=st.integers(0, 0xFFFF), old=st.integers(0, 0xFFFF), new=st.integers(0, 0xFFFF))
def test_update16_is_rfc1624_eqn3(check, old, new):
    # ~(~HC + ~m + m') with the reference's ones'-complement addition.
    want = ~ref.partial_sum(b"", (~check & 0xFFFF) + (~old & 0xFFFF) + new) & 0xFFFF
    assert wire.checksum_update16(check, old, new) == want


@given(check=st.integers(0, 0xFFFF), old=st.integers(0, (1 << 32) - 1),
       new=st.integers(0, (1 << 32) - 1))
def test_update32_is_two_update16(check, old, new):
    step = wire.checksum_update16(check, old >> 16, new >> 16)
    step = wire.checksum_update16(step, old & 0xFFFF, new & 0xFFFF)
    assert _same_checksum(wire.Kind.UDP4, wire.checksum_update32(check, old, new), step)
    assert wire.checksum_update32(check, old, new) == wire.checksum_update(
        check, old.to_bytes(4, "big"), new.to_bytes(4, "big"))


def test_update_bytes_refuses_odd_or_unequal_lengths():
    with pytest.raises(ValueError):
        wire.checksum_update(0x1234, b"\x00\x01\x02", b"\x00\x01\x03")
    with pytest.raises(ValueError):
        wire.checksum_update(0x1234, b"\x00\x01", b"\x00\x01\x02\x03")
