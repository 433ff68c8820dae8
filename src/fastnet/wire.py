"""The wire layer: zero-copy views, checksums, builders and batch classification.

Everything here is implemented in C (csrc/) behind the Cython module ``fastnet._wire``; this
module is the public name for it.
"""

from fastnet._fields import (
    ArpFields,
    EthernetFields,
    IcmpFields,
    Ipv4Fields,
    Ipv6Fields,
    TcpFields,
    UdpFields,
)
from fastnet._wire import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_VLAN,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SUMMARY_DTYPE,
    ArpPacket,
    EthernetFrame,
    Frame,
    Icmpv4Packet,
    Icmpv6Packet,
    Ipv4Packet,
    Ipv6Packet,
    Kind,
    TcpFlags,
    TcpPacket,
    UdpPacket,
    build_frame,
    checksum,
    checksum_combine,
    checksum_finish,
    checksum_partial,
    checksum_update,
    checksum_update16,
    checksum_update32,
    classify_spans,
    classify_stream,
    format_mac,
    kind_name,
    mac_to_bytes,
    parse_frame,
    parse_status,
    pseudo_header_sum,
    strerror,
)
from fastnet.errors import ChecksumError, MalformedPacket

__all__ = [
    "ArpFields", "ArpPacket", "ChecksumError", "ETHERTYPE_ARP", "ETHERTYPE_IPV4", "ETHERTYPE_IPV6",
    "ETHERTYPE_VLAN", "EthernetFields", "EthernetFrame", "Frame", "IPPROTO_ICMP", "IPPROTO_ICMPV6",
    "IPPROTO_TCP", "IPPROTO_UDP", "IcmpFields", "Icmpv4Packet", "Icmpv6Packet", "Ipv4Fields",
    "Ipv4Packet", "Ipv6Fields", "Ipv6Packet", "Kind", "MalformedPacket", "SUMMARY_DTYPE",
    "TcpFields", "TcpFlags", "TcpPacket", "UdpFields", "UdpPacket", "build_frame", "checksum",
    "checksum_combine", "checksum_finish", "checksum_partial", "checksum_update",
    "checksum_update16", "checksum_update32", "classify_spans", "classify_stream", "format_mac",
    "kind_name", "mac_to_bytes", "parse_frame", "parse_status", "pseudo_header_sum", "strerror",
]
