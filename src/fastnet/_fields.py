"""Value types for header fields: what a view's ``fields()`` returns and what the builders take.

Addresses are ``ipaddress`` objects, MAC addresses 6-byte ``bytes``; every other field is an
``int`` (or ``bool`` for single-bit flags). The types are frozen, so ``parse(build(x)) == x``
is a plain equality.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IPv4Address = ipaddress.IPv4Address
IPv6Address = ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class EthernetFields:
    dst: bytes
    src: bytes
    ethertype: int
    vlan_tci: int | None = None


@dataclass(frozen=True, slots=True)
class ArpFields:
    oper: int
    sha: bytes
    spa: IPv4Address
    tha: bytes
    tpa: IPv4Address


@dataclass(frozen=True, slots=True)
class Ipv4Fields:
    src: IPv4Address
    dst: IPv4Address
    protocol: int
    ttl: int = 64
    ident: int = 0
    tos: int = 0
    dont_fragment: bool = False
    more_fragments: bool = False
    frag_offset: int = 0  # in 8-byte units, as in the header
    options: bytes = b""


@dataclass(frozen=True, slots=True)
class Ipv6Fields:
    src: IPv6Address
    dst: IPv6Address
    next_header: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0


@dataclass(frozen=True, slots=True)
class TcpFields:
    src_port: int
    dst_port: int
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 0
    urgent: int = 0
    mss: int | None = None
    window_scale: int | None = None
    sack_permitted: bool = False
    timestamps: tuple[int, int] | None = None
    sack_blocks: tuple[tuple[int, int], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class UdpFields:
    src_port: int
    dst_port: int


@dataclass(frozen=True, slots=True)
class IcmpFields:
    """ICMPv4 or ICMPv6: type, code and the 32-bit rest of header (ident << 16 | seq for echo)."""

    type: int
    code: int = 0
    rest: int = 0

    @property
    def ident(self) -> int:
        return self.rest >> 16

    @property
    def seq(self) -> int:
        return self.rest & 0xFFFF
