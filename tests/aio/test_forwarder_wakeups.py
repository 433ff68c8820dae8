"""What one event-loop wake-up of the forwarder does with a link that holds more than one
batch: frames already read into the link's buffer are handled without waiting for a
readiness event that will not come, and a due timer first reads what the link holds (the
ACK that makes a retransmission moot may be queued behind other frames after a stall)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct
import time

import pytest

from fastnet import _io, _tcp
from fastnet.aio.forwarder import Forwarder
from tests.integration.harness import GATEWAY, HOST_ALIAS, LoopbackOnly
from tests.tcp.harness import GUEST_MAC, GW_MAC, F, Seg

GUEST_ISN = 0x1000_0000


def _arp_request() -> bytes:
    sha = GUEST_MAC
    spa = bytes([192, 168, 65, 3])
    tpa = bytes(int(x) for x in GATEWAY.split("."))
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, sha, spa, b"\0" * 6, tpa)
    return b"\xff" * 6 + sha + b"\x08\x06" + arp + bytes(18)


class StreamGuest:
    """The far end of a QEMU-style stream link (4-byte big-endian length prefixes)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def send(self, frames) -> None:
        self.sock.sendall(b"".join(struct.pack("!I", len(f)) + f for f in frames))

    def frames(self) -> list[bytes]:
        self.sock.setblocking(False)
        try:
            while True:
                d = self.sock.recv(1 << 20)
                if not d:
                    break
                self.buf += d
        except BlockingIOError:
            pass
        out = []
        while len(self.buf) >= 4:
            n = struct.unpack("!I", self.buf[:4])[0]
            if len(self.buf) < 4 + n:
                break
            out.append(self.buf[4:4 + n])
            self.buf = self.buf[4 + n:]
        return out


@pytest.fixture
def net():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    engine = _tcp.TcpEngine(mss=1460, seed=3)
    link = _io.Link(_io.LINK_STREAM, a.detach(), 4)
    stack = _io.Stack(link, engine, arp_ips=[GATEWAY, HOST_ALIAS], gateway=GATEWAY, mtu=1500)
    loop = asyncio.new_event_loop()
    fw = Forwarder(stack, LoopbackOnly(), loop=loop)
    fw.start()
    yield fw, engine, loop, StreamGuest(b)
    fw.close()
    loop.close()
    b.close()


def _run(loop, seconds: float) -> None:
    loop.run_until_complete(asyncio.sleep(seconds))


def _tcp_frames(frames):
    out = []
    for fr in frames:
        if len(fr) >= 34 and fr[12:14] == b"\x08\x00" and fr[23] == 6:
            out.append(Seg.parse(fr))
    return out


def test_frames_beyond_one_batch_are_handled_without_new_readiness(net):
    fw, engine, loop, guest = net
    n = 3000  # one read takes them all; one batch handles 1086 at most
    guest.send([_arp_request()] * n)
    replies = []
    deadline = time.monotonic() + 5
    while len(replies) < n and time.monotonic() < deadline:
        _run(loop, 0.02)
        replies += [f for f in guest.frames() if f[12:14] == b"\x08\x06"]
    assert len(replies) == n


def test_a_due_timer_reads_the_link_before_it_fires(net):
    fw, engine, loop, guest = net
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    try:
        tmpl = Seg(seq=GUEST_ISN + 1, ack=0, flags=int(F.ACK), window=65535, dst_port=port)
        syn = dataclasses.replace(tmpl, seq=GUEST_ISN, flags=int(F.SYN), mss=1460)
        guest.send([bytes(syn.frame())])
        synack = []
        for _ in range(100):
            _run(loop, 0.01)
            synack = [s for s in _tcp_frames(guest.frames()) if s.flags == F.SYN | F.ACK]
            if synack:
                break
        assert synack, "no SYN-ACK"
        isn = synack[0].seq
        guest.send([bytes(dataclasses.replace(tmpl, ack=isn + 1).frame())])
        _run(loop, 0.02)
        conn, _ = srv.accept()
        conn.sendall(b"x" * 1000)
        data = []
        for _ in range(100):
            _run(loop, 0.01)
            data = [s for s in _tcp_frames(guest.frames()) if s.payload]
            if data:
                break
        assert data and len(data[0].payload) == 1000
        # The forwarder stalls (not scheduled) while the guest queues a batch's worth of other
        # frames and then the ACK; the retransmission timer falls due meanwhile.
        ack = dataclasses.replace(tmpl, ack=isn + 1 + 1000)
        guest.send([_arp_request()] * 1200 + [bytes(ack.frame())])
        time.sleep(0.6)  # beyond the RTO (250 ms before a sample, 50 ms floor after)
        _run(loop, 0.1)
        st = engine.stats()
        assert st["timeouts"] == 0 and st["rexmits"] == 0, st
        flows = engine.flows()
        assert len(flows) == 1 and flows[0]["snd_una"] == (isn + 1 + 1000) % 2**32, flows
        conn.close()
    finally:
        srv.close()


class _BrokenHandoff:
    """A policy whose service handler fails for the first connection, then works."""

    def __init__(self):
        self.calls = 0
        self.served = []

    def tcp_target(self, gip, gport, dip, dport):
        from fastnet.aio.forwarder import Handoff
        return Handoff(self._handler)

    def _handler(self, sock, tup):
        self.calls += 1
        if self.calls == 1:
            sock.close()
            raise RuntimeError("a service's bug")
        self.served.append(sock)


def test_a_failing_flow_event_costs_that_flow_only(net):
    # An exception while handling one new flow (here a service's handoff handler) is logged;
    # the wake-up goes on: the next guest SYN is served and timers stay armed.
    fw, engine, loop, guest = net
    fw.policy = policy = _BrokenHandoff()
    # Both SYNs in one read: one wake-up drains both events, so the first's failure must not
    # lose the second.
    guest.send([bytes(Seg(seq=GUEST_ISN, ack=0, flags=int(F.SYN), window=65535, src_port=40000 + i, dst_port=80,
                          mss=1460).frame()) for i in range(2)])
    for _ in range(100):
        _run(loop, 0.01)
        if policy.calls >= 2:
            break
    assert policy.calls == 2 and len(policy.served) == 1
    assert fw._deadline and not fw.closed
    for s in policy.served:
        s.close()
