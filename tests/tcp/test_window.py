"""Windows: scaling both ways (RFC 7323 §2), the guest's zero window and the persist timer
(RFC 9293 §3.8.6.1), and our own window following a slow host reader (§3.8.6.2.2)."""

from __future__ import annotations

import random

import pytest

from tests.tcp import harness as h
from tests.tcp.harness import *  # noqa: F403


@pytest.mark.parametrize("shift", [0, 1, 2, 7, 14])
def test_guest_window_is_scaled_by_its_shift(new_conn, shift):
    c = h.established(new_conn(mss=1000, window_scale=shift))
    c.send(window=3)  # 3 << shift bytes
    c.host_push(bytes(100_000))
    sent = sum(len(s.payload) for s in c.recv())
    assert sent == min(3 << shift, 10 * 1000)  # the congestion window caps big windows


def test_guest_window_without_scaling(new_conn):
    c = h.established(new_conn(mss=1000))
    assert c.synack.window_scale is None
    c.send(window=2500)
    c.host_push(bytes(10_000))
    assert sum(len(s.payload) for s in c.recv()) == 2500


@pytest.mark.engine(rx_buf=1 << 22)
def test_our_window_is_scaled(new_conn, engine):
    c = h.established(new_conn(mss=1460, window_scale=0))
    assert c.synack.window_scale == 7  # 4 MiB >> 7 fits in 16 bits
    assert c.synack.window == 65535  # never scaled in a SYN
    engine.sock_set(c.fd, tx_limit=0)  # the host takes nothing
    c.send(payload=bytes(1000))
    assert c.recv() == [c.expect(ack=c.gs(1000), window=((1 << 22) - 1000) >> 7)]


@pytest.mark.engine(rx_buf=1 << 22)
def test_our_window_unscaled_is_capped(new_conn, engine):
    c = h.established(new_conn(mss=1460))
    engine.sock_set(c.fd, tx_limit=0)
    c.send(payload=bytes(1000))
    assert c.recv() == [c.expect(ack=c.gs(1000), window=65535)]


def test_zero_window_persist_probes(conn_established, engine, clock):
    c = conn_established
    c.send(window=0)
    c.host_push(b"waiting data")
    c.recv_nothing()
    rto = c.info()["rto_us"]
    start = clock.now
    probes = []
    for k in range(4):
        c.run_until(start + rto * (2 ** (k + 1) - 1))
        for s in c.recv():
            # A probe below the window: the guest must answer with its current window.
            assert s == c.expect(seq=c.es(-1)), s
            probes.append(clock.now - start)
        c.send(window=0)  # the guest answers: still closed
        c.recv_nothing()
    assert probes == [rto * (2 ** (k + 1) - 1) for k in range(4)], "exponential backoff"
    assert engine.stats()["zero_window_probes"] == 4
    assert c.state == TcpState.ESTABLISHED
    # The window opens: the data goes out at once.
    c.send(window=100)
    assert c.recv() == [c.expect(flags=F.ACK | F.PSH, payload=b"waiting data")]


def test_zero_window_probe_lost_window_update(conn_established, clock):
    """The guest's window update is lost; the next probe's answer carries it."""
    c = conn_established
    c.send(window=0)
    c.host_push(b"x" * 10)
    c.run_until(clock.now + c.info()["rto_us"])
    assert [s.seq for s in c.recv()] == [c.es(-1)]
    c.send(window=1000)  # the answer to the probe
    assert [s.payload for s in c.recv()] == [b"x" * 10]


def test_zero_window_fin_waits_too(conn_established, clock):
    c = conn_established
    c.send(window=0)
    c.host_eof()
    c.recv_nothing()
    c.send(window=10)
    assert c.recv() == [c.expect(flags=F.FIN | F.ACK)]


@pytest.mark.engine(rx_buf=16384)
def test_slow_host_reader_closes_and_reopens_our_window(new_conn, engine, clock):
    c = h.established(new_conn(mss=1000))
    engine.sock_set(c.fd, tx_limit=1000)
    assert c.full_window == 16384
    off = 0
    # The socket takes 1000 bytes; then the ring fills and the window shrinks to zero.
    while off < 17_000:
        c.send(seq=c.gs(off), payload=bytes([off // 1000]) * 1000)
        off += 1000
        unread = off - 1000
        assert c.recv() == [c.expect(ack=c.gs(off), window=max(16384 - unread, 0))]
    c.send(seq=c.gs(off), payload=b"z" * 384)
    off += 384
    assert c.recv() == [c.expect(ack=c.gs(off), window=0)]
    # Zero window: a probe with one byte is not accepted, only answered.
    c.send(seq=c.gs(off), payload=b"!")
    assert c.recv() == [c.expect(ack=c.gs(off), window=0)]
    # The host reads 1000 bytes: less than an MSS of room, no update yet (SWS avoidance).
    assert c.host_take() == bytes([0]) * 1000
    engine.host_event(c.flow, HEV_OUT, clock.now)
    c.recv_nothing()
    # Another 1000: the window reopens.
    assert c.host_take() == bytes([1]) * 1000
    engine.host_event(c.flow, HEV_OUT, clock.now)
    assert c.recv() == [c.expect(ack=c.gs(off), window=2000)]
    # Everything read: the whole window is back, and all bytes arrived in order.
    got = bytearray()
    for _ in range(40):
        got += c.host_take()
        engine.host_event(c.flow, HEV_OUT, clock.now)
        c.recv()
    assert bytes(got) == b"".join(bytes([i]) * 1000 for i in range(2, 17)) + b"z" * 384
    c.send(seq=c.gs(off), payload=b"more")
    assert c.recv() == [c.expect(ack=c.gs(off + 4), window=16384)]


@pytest.mark.engine(rx_buf=1 << 16)
def test_our_right_edge_never_moves_left(new_conn, engine, clock):
    """RFC 9293 §3.8.6.2.2 SHLD-14: the right edge does not move left -- except by less than
    2^shift from rounding the scaled field down (RFC 7323 §2.4, Appendix F). Whatever was
    offered is accepted in full: the guest may send up to the furthest edge it ever saw."""
    c = h.established(new_conn(mss=1460, window_scale=0))
    assert c.ws_engine == 1
    rng = random.Random(2)
    edge = c.gs(0) + (c.full_window << c.ws_engine)
    off = 0
    for _ in range(300):
        engine.sock_set(c.fd, tx_limit=rng.choice([0, 100, 5000, 1 << 20]))
        if rng.random() < 0.6:
            n = rng.randint(1, 1460)
            c.send(seq=c.gs(off), payload=bytes(n))
        else:
            c.host_take()
            engine.host_event(c.flow, HEV_OUT, clock.now)
        for s in c.recv():
            off = (s.ack - c.gs(0)) % 2**32
            right = s.ack + (s.window << c.ws_engine)
            assert right - edge > -(1 << c.ws_engine)
            edge = max(edge, right)
    # Fill exactly up to the furthest edge offered: every byte is taken.
    engine.sock_set(c.fd, tx_limit=0)
    room = edge - c.gs(off)
    c.send_batch([c.seg(seq=c.gs(off + i), payload=bytes(min(1460, room - i))) for i in range(0, room, 1460)])
    assert c.recv()[-1].ack == edge % 2**32


@pytest.mark.engine(rx_buf=16384)
def test_guest_fin_into_our_zero_window(new_conn, engine, clock):
    """With RCV.WND = 0 a FIN is not acceptable (RFC 9293 §3.10.7.4 table): it is answered and
    dropped; once the host reads and the window reopens, the retransmitted FIN is taken."""
    c = h.established(new_conn(mss=1000))
    engine.sock_set(c.fd, tx_limit=1000)
    for i in range(17):
        c.send(seq=c.gs(1000 * i), payload=bytes(1000))
        c.recv()
    off = 17_000
    c.send(seq=c.gs(off), payload=b"y" * 384)
    off += 384
    assert c.recv() == [c.expect(ack=c.gs(off), window=0)]
    c.send(seq=c.gs(off), flags=F.FIN | F.ACK)
    assert c.recv() == [c.expect(ack=c.gs(off), window=0)]
    assert c.state == TcpState.ESTABLISHED
    got = bytearray()
    for _ in range(30):
        got += c.host_take()
        engine.host_event(c.flow, HEV_OUT, clock.now)
        c.recv()
    assert len(got) == off
    c.send(seq=c.gs(off), flags=F.FIN | F.ACK)
    assert c.state == TcpState.CLOSE_WAIT
    assert c.sock()["shut_wr"]
