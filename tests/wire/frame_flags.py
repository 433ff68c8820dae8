"""The FN_FRAME_* bits of ``Frame.flags`` (csrc/fn_wire.h): fastnet.wire exports no names for
them, so the tests spell them out here, and translate the reference parser's booleans."""

from __future__ import annotations

VLAN = 0x0001
IP_OPTIONS = 0x0002  # IPv4 options or IPv6 extension headers
DF = 0x0004
MF = 0x0008
TCP_MSS = 0x0010
TCP_WSCALE = 0x0020
TCP_SACK_PERM = 0x0040
TCP_TS = 0x0080
TCP_SACK = 0x0100
PADDED = 0x0200
UDP_TRAILER = 0x0400

NAMES = {VLAN: "vlan", IP_OPTIONS: "ip_options", DF: "df", MF: "mf", TCP_MSS: "mss",
         TCP_WSCALE: "wscale", TCP_SACK_PERM: "sack_perm", TCP_TS: "ts", TCP_SACK: "sack",
         PADDED: "padded", UDP_TRAILER: "udp_trailer"}


def names(flags: int) -> set[str]:
    """{'df', 'mss', ...} for a flags word; an unknown bit shows up as its hex value."""
    out = {name for bit, name in NAMES.items() if flags & bit}
    rest = flags & ~sum(NAMES)
    if rest:
        out.add(hex(rest))
    return out


def from_reference(r: dict) -> int:
    """The flags word fastnet should report for a tests.reference.parse result."""
    return (
        (VLAN if r["vlan"] else 0)
        | (IP_OPTIONS if r["ip_options"] else 0)
        | (DF if r["dont_fragment"] else 0)
        | (MF if r["more_fragments"] else 0)
        | (TCP_MSS if r["mss"] is not None else 0)
        | (TCP_WSCALE if r["window_scale"] is not None else 0)
        | (TCP_SACK_PERM if r["sack_permitted"] else 0)
        | (TCP_TS if r["timestamps"] is not None else 0)
        | (TCP_SACK if r["sack_blocks"] else 0)
        | (PADDED if r["padded"] else 0)
        | (UDP_TRAILER if r["udp_trailer"] else 0)
    )
