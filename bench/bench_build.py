"""Building one full-MSS TCP data frame (1514 bytes, timestamps option, checksums filled):
``fastnet.wire.build_frame`` against scapy and dpkt.

Each round builds the header objects from plain values and serialises them, as a sender does
per segment (seq, ack and timestamps change every time); the addresses and the payload are
made once. All of them produce the same bytes (checked below), so they do the same work.
"""

from __future__ import annotations

import ipaddress
import struct

import dpkt
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from _corpus import payload_buffer
from fastnet import wire

SRC_MAC, DST_MAC = bytes.fromhex("f61636bcf9c6"), bytes.fromhex("020000000003")
SRC_IP, DST_IP = "93.184.216.34", "192.168.65.3"
SPORT, DPORT, SEQ, ACK, WINDOW, IDENT, TS = 443, 40000, 123456789, 987654321, 502, 4242, (1000, 2000)
PAYLOAD = payload_buffer(1448)  # 1500 MTU - 20 (IPv4) - 32 (TCP with timestamps)

_src4, _dst4 = ipaddress.IPv4Address(SRC_IP), ipaddress.IPv4Address(DST_IP)
_scapy_src_mac, _scapy_dst_mac = wire.format_mac(SRC_MAC), wire.format_mac(DST_MAC)
_dpkt_src_ip, _dpkt_dst_ip = _src4.packed, _dst4.packed
# A plain int, as a sender keeps it: or-ing two IntFlag members costs ~0.6 us in Python.
_ACK_PSH = int(wire.TcpFlags.ACK | wire.TcpFlags.PSH)


def build_fastnet():
    return wire.build_frame(
        wire.EthernetFields(DST_MAC, SRC_MAC, wire.ETHERTYPE_IPV4),
        wire.Ipv4Fields(_src4, _dst4, wire.IPPROTO_TCP, ttl=64, ident=IDENT, dont_fragment=True),
        wire.TcpFields(SPORT, DPORT, seq=SEQ, ack=ACK, flags=_ACK_PSH,
                       window=WINDOW, timestamps=TS),
        PAYLOAD)


def build_fastnet_packed():
    # The same with 4-byte addresses: build_frame turns an IPv4Address into bytes by
    # re-parsing it (IPv4Address(addr).packed, ~3 us each) but takes bytes as they are, so
    # the gap between this and build_fastnet is that conversion.
    return wire.build_frame(
        wire.EthernetFields(DST_MAC, SRC_MAC, wire.ETHERTYPE_IPV4),
        wire.Ipv4Fields(_dpkt_src_ip, _dpkt_dst_ip, wire.IPPROTO_TCP, ttl=64, ident=IDENT, dont_fragment=True),
        wire.TcpFields(SPORT, DPORT, seq=SEQ, ack=ACK, flags=_ACK_PSH, window=WINDOW, timestamps=TS),
        PAYLOAD)


def build_scapy():
    return bytes(
        Ether(dst=_scapy_dst_mac, src=_scapy_src_mac)
        / IP(src=SRC_IP, dst=DST_IP, ttl=64, id=IDENT, flags="DF")
        / TCP(sport=SPORT, dport=DPORT, seq=SEQ, ack=ACK, flags="PA", window=WINDOW,
              options=[("NOP", None), ("NOP", None), ("Timestamp", TS)])
        / Raw(PAYLOAD))


def build_dpkt():
    tcp = dpkt.tcp.TCP(sport=SPORT, dport=DPORT, seq=SEQ, ack=ACK, flags=dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH,
                       win=WINDOW, off=8, opts=b"\x01\x01\x08\x0a" + struct.pack(">II", *TS), data=PAYLOAD)
    ip = dpkt.ip.IP(src=_dpkt_src_ip, dst=_dpkt_dst_ip, p=dpkt.ip.IP_PROTO_TCP, ttl=64, id=IDENT, df=1, data=tcp)
    return bytes(dpkt.ethernet.Ethernet(dst=DST_MAC, src=SRC_MAC, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


BUILDERS = {"fastnet": build_fastnet, "fastnet-packed-addrs": build_fastnet_packed, "scapy": build_scapy, "dpkt": build_dpkt}


@pytest.mark.parametrize("impl", list(BUILDERS))
def test_build_tcp_data(benchmark, impl):
    benchmark.group = "build-tcp-data"
    benchmark.extra_info["frames"] = 1
    frame = benchmark(BUILDERS[impl])
    assert bytes(frame) == bytes(build_fastnet()) and len(frame) == 1514
    assert wire.parse_frame(frame).verify_checksums()
