"""Sequence-number wraparound (RFC 9293 §3.4: arithmetic modulo 2^32) on both sides: the
guest's ISN is chosen freely; ours is F(4-tuple, key) + now/4 (RFC 6528), so the clock picks it."""

from __future__ import annotations

import random

import pytest

from tests.tcp import harness as h
from tests.tcp.harness import *  # noqa: F403


@pytest.mark.parametrize("isn", [0xFFFFFF00, 0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFF00, 0])
def test_guest_data_across_the_wrap(new_conn, isn):
    c = h.established(new_conn(guest_isn=isn, **OPTION_SETS["full"]))
    data = random.Random(isn).randbytes(3000)
    for off in range(0, 3000, 100):
        c.send(seq=c.gs(off), payload=data[off:off + 100])
        assert c.recv() == [c.expect(ack=c.gs(off + 100))]
    assert c.host_take() == data
    assert c.info()["rcv_nxt"] == (isn + 1 + 3000) % 2**32


def test_guest_out_of_order_across_the_wrap(new_conn):
    isn = 0xFFFFFF00
    c = h.established(new_conn(guest_isn=isn, **OPTION_SETS["sack_ws"]))
    data = random.Random(1).randbytes(1000)
    # Held blocks on both sides of 2^32; the SACK edges wrap too.
    c.send(seq=c.gs(600), payload=data[600:800])
    c.send(seq=c.gs(200), payload=data[200:400])
    acks = c.recv()
    assert acks[-1].sack_blocks == ((c.gs(200), c.gs(400)), (c.gs(600), c.gs(800)))
    assert c.gs(200) > c.gs(600), "the blocks straddle the wrap"
    c.send(seq=c.gs(0), payload=data[0:250])
    c.send(seq=c.gs(350), payload=data[350:1000])
    assert [s.ack for s in c.recv()][-1] == c.gs(1000)
    assert c.host_take() == data


def test_guest_fin_at_the_wrap(new_conn):
    c = h.established(new_conn(guest_isn=0xFFFFFFFE, mss=1460))
    c.send(payload=b"x", flags=F.ACK | F.PSH)  # byte at 0xFFFFFFFF
    c.recv()
    c.send(seq=c.gs(1), flags=F.FIN | F.ACK)   # FIN at 0
    assert c.recv() == [c.expect(ack=1, window=c.window_after(1))]
    assert c.state == TcpState.CLOSE_WAIT


@pytest.fixture(params=[0xFFFFFF00, 0xFFFFFFFF, 0x7FFFFFF0])
def our_isn(request, clock):
    """Set the clock so that the engine's ISS for the standard 4-tuple is this value."""
    clock.to(h.now_for_isn(seed=1, target=request.param))
    return request.param


def test_our_isn_can_be_placed(our_isn, new_conn):
    c = h.syn_received(new_conn(**OPTION_SETS["full"]))
    assert c.e_isn == our_isn


def test_host_data_across_the_wrap(our_isn, new_conn, clock):
    c = h.established(new_conn(**OPTION_SETS["full"]))
    assert c.e_isn == our_isn
    mss = c.info()["mss"]
    data = random.Random(7).randbytes(20 * mss + 77)
    c.host_push(data)
    got = bytearray()
    for _ in range(20):
        segs = c.recv()
        if not segs:
            break
        for s in segs:
            assert s.seq == c.es(len(got))
            got += s.payload
        # Acknowledge all but the last segment first, then the rest.
        c.send(ack=c.es(len(got) - len(segs[-1].payload)))
        assert c.sock()["rx_len"] == len(data) - (len(got) - len(segs[-1].payload))
        c.send(ack=c.es(len(got)))
    assert bytes(got) == data
    assert c.sock()["rx_len"] == 0
    c.host_eof()
    assert c.recv() == [c.expect(seq=c.es(len(data)), flags=F.FIN | F.ACK)]
    c.send(ack=c.es(len(data) + 1), flags=F.FIN | F.ACK)
    assert c.state == TcpState.TIME_WAIT


def test_retransmission_and_sack_across_the_wrap(our_isn, new_conn, engine, clock):
    c = h.established(new_conn(**OPTION_SETS["full"]))
    mss = c.info()["mss"]
    data = random.Random(8).randbytes(8 * mss)
    c.host_push(data)
    assert len(c.recv()) == 8
    e = lambda k: c.es(k * mss)  # noqa: E731
    c.send(ack=e(0), sack_blocks=((e(1), e(4)),))
    c.recv()
    c.run_until(clock.now + 1_000)  # RACK's reordering window
    segs = [s for s in c.recv() if s.payload]
    assert segs[0].seq == e(0) and segs[0].payload == data[:mss]
    c.send(ack=e(4), sack_blocks=((e(5), e(8)),))
    c.recv()
    c.send(ack=e(8))
    assert c.sock()["rx_len"] == 0
    # And an RTO across the wrap.
    c.host_push(b"tail")
    c.recv()
    c.run_until(clock.now + c.info()["rto_us"])
    assert [(s.seq, s.payload) for s in c.recv()] == [(e(8), b"tail")]


def test_both_sides_at_the_wrap(our_isn, new_conn):
    c = h.established(new_conn(guest_isn=0xFFFFFFF0, **OPTION_SETS["full"]))
    rng = random.Random(3)
    up, down = rng.randbytes(5000), rng.randbytes(5000)
    c.host_push(down)
    got_down = bytearray()
    off = 0
    for _ in range(50):
        segs = c.recv()
        for s in segs:
            if s.payload:
                assert s.seq == c.es(len(got_down))
                got_down += s.payload
        if off >= len(up) and len(got_down) == len(down):
            break
        n = min(700, len(up) - off)
        c.send(seq=c.gs(off), ack=c.es(len(got_down)), payload=up[off:off + n])
        off += n
    assert bytes(got_down) == down
    assert c.host_take() == up
