"""The Internet checksum the slow, obvious way: the oracle for fastnet's C checksum.

RFC 1071 §1: add the data as big-endian 16-bit words in ones'-complement arithmetic (an odd
last byte is the high byte of a word padded with zero), then complement. Here each word is
added and its carry folded back in at once, one word at a time, so there is nothing clever to
get wrong. The RFC 1624 reference is no formula at all: it rewrites the bytes and sums
everything again.

Conventions match fastnet.wire: a *sum* is folded and not complemented, in [0, 0xffff]; a
*checksum* is the complemented value written into a header.
"""

from __future__ import annotations

import ipaddress
import struct


def _fold(s: int) -> int:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def partial_sum(data, initial: int = 0) -> int:
    """Ones'-complement sum of ``data`` (big-endian words) added to the sum ``initial``."""
    data = bytes(data)
    if len(data) % 2:
        data += b"\x00"
    s = _fold(initial)
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)  # end-around carry
    return s


def checksum(data, initial: int = 0) -> int:
    """The 16-bit checksum field value: the complement of the sum."""
    return ~partial_sum(data, initial) & 0xFFFF


def verifies(data, initial: int = 0) -> bool:
    """True when ``data`` (with its checksum field filled in) sums to all ones."""
    return partial_sum(data, initial) == 0xFFFF


def pseudo_header(src, dst, protocol: int, length: int) -> bytes:
    """The pseudo-header bytes: RFC 793 §3.1 / RFC 768 for IPv4, RFC 8200 §8.1 for IPv6."""
    s = ipaddress.ip_address(src).packed if not isinstance(src, (bytes, bytearray)) else bytes(src)
    d = ipaddress.ip_address(dst).packed if not isinstance(dst, (bytes, bytearray)) else bytes(dst)
    if len(s) == 4:
        return s + d + struct.pack("!BBH", 0, protocol, length)
    return s + d + struct.pack("!I3xB", length, protocol)


def pseudo_header_sum(src, dst, protocol: int, length: int) -> int:
    return partial_sum(pseudo_header(src, dst, protocol, length))


def transport_checksum(src, dst, protocol: int, segment, csum_off: int) -> int:
    """The checksum a TCP/UDP/ICMPv6 segment should carry: field at ``csum_off`` taken as zero,
    pseudo-header included. (ICMPv4 has no pseudo-header: use ``checksum`` on the message.)"""
    seg = bytearray(segment)
    seg[csum_off:csum_off + 2] = b"\x00\x00"
    return checksum(pseudo_header(src, dst, protocol, len(seg)) + bytes(seg))


def ipv4_header_checksum(header) -> int:
    """The IPv4 header checksum (bytes 10-11 taken as zero) over the whole header given."""
    h = bytearray(header)
    h[10:12] = b"\x00\x00"
    return checksum(h)


def checksum_after_rewrite(data, csum_off: int, offset: int, new, initial: int = 0) -> int:
    """RFC 1624 by recomputation: the checksum ``data`` should carry after ``new`` is written
    at ``offset``, computed from scratch (checksum field at ``csum_off`` taken as zero)."""
    buf = bytearray(data)
    buf[offset:offset + len(new)] = bytes(new)
    buf[csum_off:csum_off + 2] = b"\x00\x00"
    return checksum(buf, initial)
