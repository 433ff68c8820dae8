"""scapy's reading of a frame, expressed as fastnet.wire field values, and scapy's opinion of its
checksums. scapy is the independent decoder the golden and construct tests compare against.

Header fields come from scapy's dissection; payloads are sliced from the bytes each layer was
dissected from (``layer.original``), so a payload scapy would re-encode differently (DNS, say)
still compares byte for byte.
"""

from __future__ import annotations

import ipaddress

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import NoPayload
from scapy.utils import mac2str

from fastnet.wire import (
    ArpFields,
    EthernetFields,
    IcmpFields,
    Ipv4Fields,
    Ipv6Fields,
    TcpFields,
    UdpFields,
)

IPV6_EXT = (IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting, IPv6ExtHdrFragment)


def tcp_fields(t) -> TcpFields:
    opts = dict(mss=None, window_scale=None, sack_permitted=False, timestamps=None, sack_blocks=())
    for name, value in t.options:
        if name == "MSS":
            opts["mss"] = value
        elif name == "WScale":
            opts["window_scale"] = value
        elif name == "SAckOK":
            opts["sack_permitted"] = True
        elif name == "Timestamp":
            opts["timestamps"] = tuple(value)
        elif name == "SAck":
            opts["sack_blocks"] = tuple(zip(value[0::2], value[1::2]))
    return TcpFields(t.sport, t.dport, t.seq, t.ack, int(t.flags), t.window, t.urgptr, **opts)


def _icmp(raw: bytes) -> IcmpFields:
    return IcmpFields(raw[0], raw[1], int.from_bytes(raw[4:8], "big"))


def decode(frame) -> dict:
    """{"eth", "arp", "ip", "l4", "payload", "fragment"}: what scapy finds, as fastnet field
    values (None where a layer is absent; "l4" is None for fragments, as in fastnet)."""
    p = Ether(bytes(frame))
    vlan_tci, inner = None, p.payload
    if isinstance(inner, Dot1Q):
        vlan_tci = (inner.prio << 13) | (inner.dei << 12) | inner.vlan
        ethertype, inner = inner.type, inner.payload
    else:
        ethertype = p.type
    out = {"eth": EthernetFields(mac2str(p.dst), mac2str(p.src), ethertype, vlan_tci),
           "arp": None, "ip": None, "l4": None, "payload": b"", "fragment": False}
    if isinstance(inner, ARP):
        out["arp"] = ArpFields(inner.op, mac2str(inner.hwsrc), ipaddress.IPv4Address(inner.psrc),
                               mac2str(inner.hwdst), ipaddress.IPv4Address(inner.pdst))
        return out
    if isinstance(inner, IP):
        ip = inner
        hl = ip.ihl * 4
        out["ip"] = Ipv4Fields(ipaddress.IPv4Address(ip.src), ipaddress.IPv4Address(ip.dst),
                               ip.proto, ip.ttl, ip.id, ip.tos, bool(ip.flags.DF),
                               bool(ip.flags.MF), ip.frag, bytes(ip.original[20:hl]))
        out["fragment"] = bool(ip.flags.MF) or ip.frag != 0
        upper, upper_bytes = ip.payload, bytes(ip.original[hl:ip.len])
    elif isinstance(inner, IPv6):
        ip = inner
        out["ip"] = Ipv6Fields(ipaddress.IPv6Address(ip.src), ipaddress.IPv6Address(ip.dst), ip.nh,
                               ip.hlim, ip.tc, ip.fl)
        upper = ip.payload
        while isinstance(upper, IPV6_EXT):
            if isinstance(upper, IPv6ExtHdrFragment) and (upper.m or upper.offset):
                out["fragment"] = True
            if isinstance(upper, IPv6ExtHdrFragment) and upper.offset:
                upper = upper.payload  # what follows a later fragment's header is data
                break
            upper = upper.payload
        upper_bytes = b"" if isinstance(upper, NoPayload) else bytes(upper.original)
    else:
        out["payload"] = bytes(p.original[18 if vlan_tci is not None else 14:])
        return out
    if out["fragment"]:
        out["payload"] = upper_bytes
    elif isinstance(upper, TCP):
        out["l4"] = tcp_fields(upper)
        out["payload"] = upper_bytes[upper.dataofs * 4:]
    elif isinstance(upper, UDP):
        out["l4"] = UdpFields(upper.sport, upper.dport)
        out["payload"] = upper_bytes[8:upper.len]
    elif (isinstance(upper, ICMP) and isinstance(ip, IP)) or (
            isinstance(ip, IPv6) and type(upper).__name__.startswith("ICMPv6")):
        out["l4"] = _icmp(upper_bytes)
        out["payload"] = upper_bytes[8:]
    else:
        out["payload"] = upper_bytes
    return out


def checksums_valid(frame) -> bool:
    """True when scapy, told to compute the checksums fastnet handles itself, builds the same
    bytes: the outer IPv4 header checksum and the TCP/UDP/ICMPv4/ICMPv6 checksum right after
    the IP header(s) (not a fragment's, which covers bytes the fragment does not hold; not an
    IPv4 UDP checksum of 0, which means none). Other layers scapy recognises (GRE, say, or
    the headers quoted in an ICMP error) are left as they are."""
    raw = bytes(frame)
    p = Ether(raw)
    fragment = decode(raw)["fragment"]
    ip = p.getlayer(IP) if p.getlayer(IP) is not None else p.getlayer(IPv6)
    if ip is None:
        return bytes(p) == raw
    if isinstance(ip, IP):
        ip.chksum = None
    upper = ip.payload
    while isinstance(upper, IPV6_EXT):
        upper = upper.payload
    is_l4 = isinstance(upper, (TCP, UDP)) or (isinstance(ip, IP) and isinstance(upper, ICMP)) or (
        isinstance(ip, IPv6) and type(upper).__name__.startswith("ICMPv6"))
    if is_l4 and not fragment:
        if isinstance(upper, UDP) and isinstance(ip, IP) and upper.chksum == 0:
            pass
        elif "cksum" in upper.fields:
            upper.cksum = None
        else:
            upper.chksum = None
    return bytes(p) == raw
