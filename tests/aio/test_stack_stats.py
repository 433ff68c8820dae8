"""The counters the C core keeps (frames, bytes, drops by reason, flows by protocol), read from
Python through Stack.stats(), Link.stats(), TcpEngine.stats() and Stack.dgram_stats(): frames
injected through a real link (a unix socket pair, the way vfkit and QEMU deliver them), good
and malformed, move exactly the counters they should, and malformed ones go no further."""

from __future__ import annotations

import select
import socket
import struct
import time

import pytest

from fastnet import _io, _tcp

GW_MAC = bytes.fromhex("f61636bcf9c6")
G_MAC = bytes.fromhex("025000000009")
GUEST = socket.inet_aton("192.168.65.9")
GW = socket.inet_aton("192.168.65.1")
HOST = socket.inet_aton("192.168.65.2")


def now_us() -> int:
    return time.monotonic_ns() // 1000


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(proto: int, dst: bytes, payload: bytes, *, bad_csum=False, totlen=None) -> bytes:
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, totlen or 20 + len(payload), 1, 0, 64, proto, 0, GUEST, dst)
    c = csum(h) ^ (0x1111 if bad_csum else 0)
    return h[:10] + struct.pack("!H", c) + h[12:] + payload


def l4sum(proto: int, dst: bytes, seg: bytes) -> int:
    return csum(GUEST + dst + struct.pack("!BBH", 0, proto, len(seg)) + seg)


def udp(dst: bytes, sport: int, dport: int, data: bytes, *, bad=False, ulen=None) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, ulen or 8 + len(data), 0) + data
    c = (l4sum(17, dst, seg) or 0xFFFF) ^ (0x0F0F if bad else 0)
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def tcp_syn(dst: bytes, sport: int, dport: int, *, doff=5, bad=False) -> bytes:
    seg = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, doff << 4, 2, 65535, 0, 0)
    c = l4sum(6, dst, seg) ^ (0x0F0F if bad else 0)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def echo_request(ident=7, seq=1) -> bytes:
    m = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"ping"
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]


def eth(payload: bytes, *, dst=GW_MAC, etype=0x0800) -> bytes:
    return dst + G_MAC + struct.pack("!H", etype) + payload


ARP_WHO_HAS_GW = eth(struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, G_MAC, GUEST, bytes(6), GW),
                     dst=b"\xff" * 6, etype=0x0806)

# name: (frame, what must count it)
FRAMES = {
    "arp": ARP_WHO_HAS_GW,
    "echo to the gateway": eth(ipv4(1, GW, echo_request())),
    "udp to the host alias": eth(ipv4(17, HOST, udp(HOST, 40000, 9, b"hello"))),
    "tcp syn": eth(ipv4(6, HOST, tcp_syn(HOST, 40006, 80))),
    "lldp": eth(bytes(46), dst=bytes.fromhex("0180c200000e"), etype=0x88CC),
    # malformed: dropped where they are found
    "bad total length": eth(ipv4(17, HOST, udp(HOST, 40001, 9, b"x"), totlen=400)),
    "bad data offset": eth(ipv4(6, HOST, tcp_syn(HOST, 40002, 80, doff=3))),
    "bad IP checksum": eth(ipv4(17, HOST, udp(HOST, 40003, 9, b"y"), bad_csum=True)),
    "bad UDP length": eth(ipv4(17, HOST, udp(HOST, 40004, 9, b"z", ulen=200))),
    "bad TCP checksum": eth(ipv4(6, HOST, tcp_syn(HOST, 40005, 80, bad=True))),
    "bad UDP checksum": eth(ipv4(17, HOST, udp(HOST, 40007, 9, b"w", bad=True))),
}


@pytest.fixture
def port():
    """A stack on a datagram link (one frame per datagram); the test holds the guest's end."""
    ours, guest = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    link = _io.Link(_io.LINK_DGRAM, ours.detach(), 0)
    engine = _tcp.TcpEngine(mss=1460)
    stack = _io.Stack(link, engine, arp_ips=["192.168.65.1", "192.168.65.2"], gateway="192.168.65.1")
    guest.setblocking(False)
    yield stack, guest
    guest.close()


def frames_from(sock: socket.socket, timeout: float = 5) -> list[bytes]:
    out = []
    deadline = time.monotonic() + timeout
    while not out and time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], 0.05)
        while r:
            try:
                out.append(sock.recv(65536, socket.MSG_DONTWAIT))
            except (BlockingIOError, TimeoutError):
                break
    return out


def test_counters_move_as_frames_arrive_and_malformed_frames_go_no_further(port):
    stack, guest = port
    link, engine = stack.link, stack.engine
    for f in FRAMES.values():
        guest.send(f)
    guest.send(b"\x01" * 10)   # a runt: shorter than an Ethernet header
    assert stack.poll_link(now_us()) == len(FRAMES)

    lst = link.stats()
    assert lst["rx_frames"] == len(FRAMES)
    assert lst["rx_bytes"] == sum(len(f) for f in FRAMES.values())
    assert lst["rx_bad_len"] == 1   # the runt, dropped by the link itself

    st = stack.stats()
    assert st["frames"] == len(FRAMES) and st["bytes"] == lst["rx_bytes"]
    assert st["malformed"] == {"bad IPv4 total length": 1, "bad TCP data offset": 1, "bad UDP length": 1,
                               "bad IPv4 header checksum": 1}
    # Only frames that parsed have a kind: ARP, the echo, 2 SYNs (one with a bad checksum), 3 UDP
    # (one with a bad IP header checksum, one with a bad UDP checksum), the LLDP frame.
    assert st["kinds"] == {"arp": 1, "icmp4": 1, "tcp4": 2, "udp4": 3, "ethernet": 1}
    assert st["arp_replies"] == 1 and st["gw_echo_replies"] == 1
    assert st["slow_queued"] == 1   # the LLDP frame, for the Python services
    assert [len(f) for f in stack.slow_frames()] == [len(FRAMES["lldp"])]

    est = engine.stats()
    assert est["bad_csum"] == 1 and est["segs_in"] == 2 and est["flows_opened"] == 1
    events = engine.events()
    assert [(ev[3][1], ev[3][3]) for ev in events] == [(40006, 80)]   # only the good SYN is a flow

    dst = stack.dgram_stats()
    assert dst["bad_csum"] == 1 and dst["flows_opened"] == 1
    ev = stack.dgram_events()
    assert [(proto, tup[1], tup[3]) for _, _, proto, _, tup in ev] == [(17, 40000, 9)]

    # What went back to the guest: the ARP reply and the echo reply, counted on the way out.
    out = frames_from(guest)
    assert sorted(struct.unpack_from("!H", f, 12)[0] for f in out) == [0x0800, 0x0806]
    assert link.stats()["tx_frames"] == 2 and link.stats()["tx_bytes"] == sum(len(f) for f in out)


def test_flow_counters_by_protocol(port):
    """A UDP flow and an ICMP echo flow, attached to host sockets, count datagrams both ways."""
    stack, guest = port
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    eport = echo.getsockname()[1]
    guest.send(eth(ipv4(17, HOST, udp(HOST, 41000, eport, b"count me"))))
    stack.poll_link(now_us())
    ((_, flow, proto, _, tup),) = stack.dgram_events()
    assert proto == 17 and tup[3] == eport
    host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host.connect(("127.0.0.1", eport))
    stack.dgram_attach(flow, host, now_us())
    echo.settimeout(5)
    data, addr = echo.recvfrom(100)
    assert data == b"count me"
    echo.sendto(b"counted", addr)
    deadline = time.monotonic() + 5
    while stack.dgram_stats()["datagrams_out"] == 0 and time.monotonic() < deadline:
        select.select([stack.dgram_fileno()], [], [], 0.05)
        stack.poll_dgram(now_us())
    st = stack.dgram_stats()
    assert (st["datagrams_in"], st["datagrams_out"], st["flows_active"]) == (1, 1, 1)
    assert st["bytes_in"] == len(b"count me") and st["bytes_out"] == len(b"counted")
    reply = next(f for f in frames_from(guest) if f[23] == 17)
    assert reply.endswith(b"counted")
    (info,) = stack.dgram_flows()
    assert info["proto"] == "udp" and (info["packets_g2h"], info["packets_h2g"]) == (1, 1)
    echo.close()


def fragment(proto: int, dst: bytes, payload: bytes, *, ident: int, off: int, more: bool) -> bytes:
    """One IPv4 fragment of `payload` (off in bytes, a multiple of 8)."""
    flags = (0x2000 if more else 0) | off // 8
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags, 64, proto, 0, GUEST, dst)
    return eth(h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload)


def test_a_reassembled_datagram_that_does_not_parse_is_counted_as_other(port):
    """Fragments that reassemble into a UDP datagram whose length field is wrong: no reason code
    of its own, so it lands in the "other" bucket, visible like the rest."""
    stack, guest = port
    dgram = udp(HOST, 40010, 9, bytes(64), ulen=200)  # UDP length beyond the datagram
    guest.send(fragment(17, HOST, dgram[:40], ident=7, off=0, more=True))
    guest.send(fragment(17, HOST, dgram[40:], ident=7, off=40, more=False))
    stack.poll_link(now_us())
    assert stack.stats()["malformed"] == {"other": 1}
    assert stack.dgram_stats()["flows_active"] == 0


def test_fragmented_datagrams_get_the_checksum_checks_whole_ones_get(port):
    """A corrupted fragment header is dropped like a whole datagram's; a datagram whose UDP
    checksum is wrong is dropped once reassembled (only the whole carries that checksum), never
    forwarded to the host with a fresh one (RFC 1122 §4.1.3.4)."""
    stack, guest = port
    dgram = udp(HOST, 40011, 9, bytes(64), bad=True)
    guest.send(fragment(17, HOST, dgram[:40], ident=8, off=0, more=True))
    guest.send(fragment(17, HOST, dgram[40:], ident=8, off=40, more=False))
    bad_header = bytearray(fragment(17, HOST, bytes(40), ident=9, off=0, more=True))
    bad_header[14 + 10] ^= 0xFF  # the IPv4 header checksum
    guest.send(bytes(bad_header))
    stack.poll_link(now_us())
    assert stack.dgram_stats()["bad_csum"] == 1 and stack.dgram_stats()["flows_active"] == 0
    assert stack.stats()["malformed"] == {"bad IPv4 header checksum": 1}


def test_a_bad_length_on_a_stream_link_is_counted_and_ends_the_link():
    """Streams cannot be resynchronised: frames before the bad length are handled, then the link
    fails with EPROTO (the forwarder closes the port)."""
    ours, guest = socket.socketpair()
    link = _io.Link(_io.LINK_STREAM, ours.detach(), -2)
    stack = _io.Stack(link, _tcp.TcpEngine(mss=1460), arp_ips=["192.168.65.1"], gateway="192.168.65.1")
    good = FRAMES["arp"]
    guest.sendall(struct.pack("<H", len(good)) + good + struct.pack("<H", 10) + b"\x01" * 10)
    handled = stack.poll_link(now_us())
    with pytest.raises(OSError) as e:
        while True:
            stack.poll_link(now_us())
    assert e.value.errno == 71   # EPROTO
    with pytest.raises(OSError):
        stack.poll_link(now_us())  # it stays failed
    assert handled == 1 and stack.stats()["arp_replies"] == 1
    assert link.stats()["rx_bad_len"] == 1 and link.stats()["rx_frames"] == 1  # counted once
    guest.close()
