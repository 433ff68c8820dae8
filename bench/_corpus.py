"""Deterministic corpora for the wire-layer benchmarks: random payload buffers and a mixed
frame corpus, plain functions so benchmarks, fixtures and callgrind snippets share them.

Everything comes from fixed seeds, so two runs (or two machines) time the same bytes.
"""

from __future__ import annotations

import ipaddress
import random

import numpy as np

from fastnet import wire

SEED = 20261127
PAYLOAD_SIZES = (64, 1500, 9000, 65536)

# The mixed corpus: roughly what a guest link carries during a bulk download with some DNS,
# pings and neighbour traffic. Counts add up to CORPUS_SIZE.
CORPUS_MIX = (
    ("tcp_data", 380),  # full-MSS (1514-byte frames) and a few short segments
    ("tcp_ack", 300),   # pure ACKs with timestamps, some with SACK blocks
    ("tcp_syn", 40),    # SYN / SYN-ACK with MSS, SACK_PERM, timestamps, window scale
    ("udp", 150),
    ("icmp", 50),
    ("arp", 30),
    ("ipv6", 50),       # TCP and UDP over IPv6
)
CORPUS_SIZE = sum(n for _, n in CORPUS_MIX)

_GUEST_MAC = bytes.fromhex("020000000003")
_GW_MAC = bytes.fromhex("f61636bcf9c6")
_GUEST = ipaddress.IPv4Address("192.168.65.3")
_HOSTS = [ipaddress.IPv4Address(a) for a in ("192.168.65.2", "192.168.65.1", "93.184.216.34", "140.82.112.3")]
_G6 = ipaddress.IPv6Address("fd00::3")
_H6 = ipaddress.IPv6Address("fd00::2")
_MSS4 = 1500 - 20 - 32  # IPv4 + TCP with timestamps
_MSS6 = 1500 - 40 - 32

_ACK = wire.TcpFlags.ACK
_PSH = wire.TcpFlags.PSH
_SYN = wire.TcpFlags.SYN


# ---------------------------------------------------------------------------------------------
# payload buffers (checksum)

def payload_buffer(size: int) -> bytes:
    """``size`` random bytes, seeded per size so adding a size does not change the others."""
    return np.random.default_rng(SEED + size).integers(0, 256, size, dtype=np.uint8).tobytes()


# ---------------------------------------------------------------------------------------------
# the mixed frame corpus

def _eth(ethertype, to_guest):
    return wire.EthernetFields(_GUEST_MAC if to_guest else _GW_MAC,
                               _GW_MAC if to_guest else _GUEST_MAC, ethertype)


def _ip4(r, proto, to_guest, df=True):
    host = r.choice(_HOSTS)
    src, dst = (host, _GUEST) if to_guest else (_GUEST, host)
    return wire.Ipv4Fields(src, dst, proto, ttl=64, ident=r.getrandbits(16), dont_fragment=df)


def _ts(r):
    return (r.getrandbits(32), r.getrandbits(32))


def _tcp_data(r):
    to_guest = r.random() < 0.8  # a download: most data flows towards the guest
    n = _MSS4 if r.random() < 0.8 else r.randint(1, _MSS4 - 1)
    tcp = wire.TcpFields(r.choice((443, 80)), r.randint(32768, 60999), seq=r.getrandbits(32),
                         ack=r.getrandbits(32), flags=_ACK | (_PSH if n < _MSS4 else 0),
                         window=r.randint(500, 65535), timestamps=_ts(r))
    return wire.build_frame(_eth(wire.ETHERTYPE_IPV4, to_guest),
                            _ip4(r, wire.IPPROTO_TCP, to_guest), tcp, r.randbytes(n))


def _tcp_ack(r):
    blocks = ()
    if r.random() < 0.2:  # a lossy moment: up to 3 SACK blocks fit next to timestamps
        left = r.getrandbits(31)
        blocks = tuple((left + i * 4000, left + i * 4000 + 1448) for i in range(r.randint(1, 3)))
    tcp = wire.TcpFields(r.randint(32768, 60999), r.choice((443, 80)), seq=r.getrandbits(32),
                         ack=r.getrandbits(32), flags=_ACK, window=r.randint(500, 65535),
                         timestamps=_ts(r), sack_blocks=blocks)
    return wire.build_frame(_eth(wire.ETHERTYPE_IPV4, False), _ip4(r, wire.IPPROTO_TCP, False), tcp)


def _tcp_syn(r):
    synack = r.random() < 0.5
    tcp = wire.TcpFields(r.randint(32768, 60999), r.choice((443, 80)), seq=r.getrandbits(32),
                         ack=r.getrandbits(32) if synack else 0, flags=_SYN | (_ACK if synack else 0),
                         window=64240, mss=1460, window_scale=7, sack_permitted=True,
                         timestamps=(r.getrandbits(32), r.getrandbits(32) if synack else 0))
    return wire.build_frame(_eth(wire.ETHERTYPE_IPV4, synack), _ip4(r, wire.IPPROTO_TCP, synack), tcp)


def _udp(r):
    to_guest = r.random() < 0.5
    udp = wire.UdpFields(53, r.randint(32768, 60999)) if to_guest else wire.UdpFields(r.randint(32768, 60999), 53)
    return wire.build_frame(_eth(wire.ETHERTYPE_IPV4, to_guest), _ip4(r, wire.IPPROTO_UDP, to_guest, df=False),
                            udp, r.randbytes(r.randint(20, 512)))


def _icmp(r):
    to_guest = r.random() < 0.5
    icmp = wire.IcmpFields(0 if to_guest else 8, 0, (r.getrandbits(16) << 16) | r.getrandbits(16))
    return wire.build_frame(_eth(wire.ETHERTYPE_IPV4, to_guest), _ip4(r, wire.IPPROTO_ICMP, to_guest, df=False),
                            icmp, r.randbytes(56))


def _arp(r):
    host = r.choice(_HOSTS[:2])
    if r.random() < 0.5:
        return wire.build_frame(wire.EthernetFields(b"\xff" * 6, _GUEST_MAC, wire.ETHERTYPE_ARP),
                                arp=wire.ArpFields(1, _GUEST_MAC, _GUEST, b"\0" * 6, host))
    return wire.build_frame(_eth(wire.ETHERTYPE_ARP, True),
                            arp=wire.ArpFields(2, _GW_MAC, host, _GUEST_MAC, _GUEST))


def _ipv6(r):
    to_guest = r.random() < 0.5
    src, dst = (_H6, _G6) if to_guest else (_G6, _H6)
    eth = _eth(wire.ETHERTYPE_IPV6, to_guest)
    pick = r.random()
    if pick < 0.2:
        ip = wire.Ipv6Fields(src, dst, wire.IPPROTO_UDP)
        return wire.build_frame(eth, ip, wire.UdpFields(r.randint(32768, 60999), 53), r.randbytes(r.randint(20, 512)))
    ip = wire.Ipv6Fields(src, dst, wire.IPPROTO_TCP, flow_label=r.getrandbits(20))
    n = _MSS6 if pick < 0.6 else 0  # data segment or pure ACK
    tcp = wire.TcpFields(r.randint(32768, 60999), 443, seq=r.getrandbits(32), ack=r.getrandbits(32),
                         flags=_ACK, window=r.randint(500, 65535), timestamps=_ts(r))
    return wire.build_frame(eth, ip, tcp, r.randbytes(n))


_BUILDERS = {"tcp_data": _tcp_data, "tcp_ack": _tcp_ack, "tcp_syn": _tcp_syn, "udp": _udp,
             "icmp": _icmp, "arp": _arp, "ipv6": _ipv6}


def mixed_frames(seed: int = SEED) -> list[bytes]:
    """CORPUS_SIZE frames in the proportions of CORPUS_MIX, in a seeded shuffled order (so a
    branch predictor cannot learn a repeating pattern of kinds)."""
    r = random.Random(seed)
    kinds = [k for k, n in CORPUS_MIX for _ in range(n)]
    r.shuffle(kinds)
    # bytes, not bytearray: read-only input is what links hand over and what scapy accepts.
    return [bytes(_BUILDERS[k](r)) for k in kinds]


def join_frames(frames, prefix: int, byteorder: str) -> bytes:
    """Frames back to back behind length prefixes: (2, 'little') is HyperKit's framing,
    (4, 'big') QEMU's stream netdev."""
    return b"".join(len(f).to_bytes(prefix, byteorder) + f for f in frames)
