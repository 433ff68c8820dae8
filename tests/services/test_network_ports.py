"""Which attachment a published port's connections go to when one guest is attached twice."""

from __future__ import annotations

import asyncio
import socket
import struct

from fastnet.services.config import DnsConfig, NetworkConfig
from fastnet.services.network import VirtualNetwork

UUID = "3b4c8e0e-5d8c-4b52-9a52-0d6f3c2c1a11"


def _gratuitous_arp(mac: bytes, ip: bytes) -> bytes:
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip, bytes(6), ip)
    return b"\xff" * 6 + mac + b"\x08\x06" + arp


def test_the_attachment_carrying_the_guests_frames_wins():
    loop = asyncio.new_event_loop()
    net = VirtualNetwork(NetworkConfig(dns_service=DnsConfig(enabled=False)), loop=loop)
    lease = net.pool.allocate(uuid=UUID)
    peers = []
    try:
        ports = []
        for _ in range(3):  # rootlesskit's idle first connection, the relay, a late third
            ours, theirs = socket.socketpair()
            peers.append(theirs)
            ports.append(net.attach(ours.detach(), "vmnet", framing=-2, uuid=UUID, lease=lease))
        # No frames yet anywhere: the latest attachment.
        assert net.port_for_ip(lease.ip) is ports[2]
        # The guest's frames arrive on the second one: that is where the guest is.
        frame = _gratuitous_arp(lease.mac, lease.ip.packed)
        peers[1].sendall(struct.pack("<H", len(frame)) + frame)
        ports[1].stack.poll_link(0)
        assert net.port_for_ip(lease.ip) is ports[1]
        assert net.port_for_ip("192.168.65.200") is None  # nobody holds it
    finally:
        net.close()
        for s in peers:
            s.close()
        loop.close()
