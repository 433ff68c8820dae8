"""The oracles themselves, checked against independent formulations and the golden frames'
own checksum fields (no fastnet here: an oracle must not lean on what it judges)."""

from __future__ import annotations

import random

import pytest

from tests.data import frames as F
from tests.reference import checksum as ref
from tests.reference import parse


def ones_complement_sum_by_modulo(data: bytes) -> int:
    """The folded sum is the plain sum modulo 0xffff, where a non-zero sum never folds to 0."""
    data = data + b"\x00" * (len(data) % 2)
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    return 0 if total == 0 else (total % 0xFFFF or 0xFFFF)


def test_partial_sum_equals_the_modulo_formulation():
    rng = random.Random(1071)
    for n in list(range(40)) + [rng.randrange(2000) for _ in range(200)]:
        data = rng.randbytes(n)
        assert ref.partial_sum(data) == ones_complement_sum_by_modulo(data), n
    assert ref.partial_sum(b"\xff\xff" * 3) == 0xFFFF
    assert ref.partial_sum(b"\x00" * 7) == 0


def test_partial_sum_with_initial_is_the_sum_of_the_concatenation():
    rng = random.Random(2)
    for _ in range(100):
        a, b = rng.randbytes(2 * rng.randrange(50)), rng.randbytes(rng.randrange(100))
        assert ref.partial_sum(b, ref.partial_sum(a)) == ref.partial_sum(a + b)


def test_pseudo_header_layouts():
    assert ref.pseudo_header("10.0.2.15", "93.184.216.34", 6, 40) == \
        bytes.fromhex("0a00020f 5db8d822 00 06 0028")
    v6 = ref.pseudo_header("fd00::15", "2001:db8::1", 17, 0x12345)
    assert len(v6) == 40 and v6[32:] == bytes.fromhex("00012345 000000 11")


@pytest.mark.parametrize("name,ip_csum,l4_csum_off,l4_csum", [
    ("TCP4_SYN", 0xBEB6, 16, 0x6554),
    ("UDP4_DNS", 0x0675, 6, 0x349C),
    ("IPV4_OPTIONS", 0x34D7, 6, 0x2D9D),
])
def test_oracle_reproduces_ipv4_golden_checksums(name, ip_csum, l4_csum_off, l4_csum):
    data = F.ALL[name]
    ihl = (data[14] & 0x0F) * 4
    ip = data[14:14 + ihl]
    assert ref.ipv4_header_checksum(ip) == ip_csum
    assert ref.verifies(ip)
    total = int.from_bytes(data[16:18], "big")
    seg = data[14 + ihl:14 + total]
    assert ref.transport_checksum(ip[12:16], ip[16:20], data[23], seg, l4_csum_off) == l4_csum


def test_oracle_reproduces_ipv6_and_icmp_golden_checksums():
    ip6 = F.ICMP6_ECHO[14:54]
    assert ref.transport_checksum(ip6[8:24], ip6[24:40], 58, F.ICMP6_ECHO[54:], 2) == 0xA83A
    icmp = bytearray(F.ICMP4_ECHO[34:])
    icmp[2:4] = b"\x00\x00"
    assert ref.checksum(icmp) == 0x22E4


def test_checksum_after_rewrite_is_a_recomputation():
    ip = bytearray(F.TCP4_DATA[14:34])
    new_ttl = ref.checksum_after_rewrite(ip, 10, 8, b"\x3f")
    ip[8], ip[10:12] = 0x3F, new_ttl.to_bytes(2, "big")
    assert ref.verifies(ip)


def test_tcp_option_oracle_on_hand_written_lists():
    opts = parse.parse_tcp_options(bytes.fromhex("020405b4 01 1e04abcd 030307 00 0000"))
    assert (opts["mss"], opts["window_scale"]) == (1460, 7)  # unknown kind 30 skipped
    assert parse.parse_tcp_options(bytes.fromhex("00 020405b4"))["mss"] is None  # after EOL
    for bad in ("02", "0203ffff", "0205000000", "050900000000000000", "0801", "04"):
        with pytest.raises(parse.ReferenceMalformed, match="malformed TCP option"):
            parse.parse_tcp_options(bytes.fromhex(bad))


def test_frame_oracle_names_the_first_defect():
    with pytest.raises(parse.ReferenceMalformed, match="truncated Ethernet header"):
        parse.parse_frame(b"\x00" * 13)
    cut = F.TCP4_SYN[:60]
    with pytest.raises(parse.ReferenceMalformed, match="bad IPv4 total length"):
        parse.parse_frame(cut)
    assert parse.parse_frame(F.PADDED_TCP4_ACK)["padded"] is True
