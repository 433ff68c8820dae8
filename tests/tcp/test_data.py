"""Data both ways: coalesced host writes, MSS segmentation, the guest's window and the
congestion window (RFC 5681), acknowledged-only consumption of host data, half-closes."""

from __future__ import annotations

import random
import pytest

from fastnet import wire
from tests.tcp import harness as h
from tests.tcp.harness import *  # noqa: F403


def test_a_batch_of_segments_is_one_host_write(conn_established):
    c = conn_established
    chunks = [bytes([65 + i]) * (100 + i) for i in range(6)]
    segs, off = [], 0
    for ch in chunks:
        segs.append(c.seg(seq=c.gs(off), payload=ch))
        off += len(ch)
    sends = c.sock()["sends"]
    c.send_batch(segs)
    assert c.sock()["sends"] == sends + 1
    assert c.host_take() == b"".join(chunks)
    assert c.recv() == [c.expect(ack=c.gs(off))], "one ACK for the whole batch"


def test_in_order_stream_many_batches_intact(conn_established):
    c = conn_established
    rng = random.Random(5)
    data = rng.randbytes(300_000)
    got, off, mss = bytearray(), 0, 1400
    while off < len(data):
        batch = []
        for _ in range(rng.randint(1, 8)):
            if off >= len(data):
                break
            n = min(rng.randint(1, mss), len(data) - off)
            batch.append(c.seg(seq=c.gs(off), payload=data[off:off + n]))
            off += n
        c.send_batch(batch)
        acks = c.recv()
        assert [s.ack for s in acks] == [c.gs(off)]
        got += c.host_take()
    assert bytes(got) == data


def test_host_data_respects_the_guest_window(conn_established):
    c = conn_established
    c.send(window=3000 >> c.ws_guest)
    allowed = (3000 >> c.ws_guest) << c.ws_guest
    c.host_push(bytes(10_000))
    segs = c.recv()
    assert sum(len(s.payload) for s in segs) == allowed
    assert segs[-1].flags == F.ACK | F.PSH
    assert c.info()["snd_nxt"] == c.es(allowed)


def test_host_data_respects_the_congestion_window(conn_established):
    c = conn_established
    c.send(window=0xFFFF)  # plenty with any scale
    mss = c.info()["mss"]
    c.host_push(bytes(range(256)) * (60 * mss // 256 + 1))
    first = c.recv()
    assert [len(s.payload) for s in first] == [mss] * 10  # RFC 6928 initial window: 10 segments
    assert [s.flags for s in first] == [F.ACK] * 9 + [F.ACK | F.PSH]
    # Slow start (RFC 5681 §3.1): each ACK of one full segment opens the window by one more,
    # so every ACK releases two segments (within the guest's window).
    for k in range(1, 11):
        c.send(ack=c.es(k * mss))
        segs = c.recv()
        assert sum(len(s.payload) for s in segs) == 2 * mss, k
        assert segs[0].seq == c.es((9 + 2 * k - 1) * mss)
    assert c.info()["cwnd"] == 20 * mss


def test_host_data_is_consumed_only_when_acknowledged(conn_established):
    c = conn_established
    c.host_push(b"0123456789" * 100)
    segs = c.recv()
    assert sum(len(s.payload) for s in segs) == 1000
    assert c.sock()["rx_len"] == 1000
    c.send(ack=c.es(400))
    assert c.sock()["rx_len"] == 600
    c.send(ack=c.es(1000))
    assert c.sock()["rx_len"] == 0
    c.recv_nothing()


def test_data_pushed_while_in_flight_follows(conn_established):
    c = conn_established
    c.host_push(b"first;")
    assert c.recv() == [c.expect(flags=F.ACK | F.PSH, payload=b"first;")]
    c.host_push(b"second;")
    assert c.recv() == [c.expect(seq=c.es(6), flags=F.ACK | F.PSH, payload=b"second;")]
    c.send(ack=c.es(13))
    assert c.sock()["rx_len"] == 0


def test_data_both_ways_piggybacks_the_ack(conn_established):
    c = conn_established
    c.host_push(b"ping")
    c.recv()
    c.engine.push(c.fd, b"pong")
    c.engine.host_event(c.flow, HEV_IN, c.clock.now)
    c.recv()
    c.send(ack=c.es(8), flags=F.ACK | F.PSH, payload=b"req")
    assert c.recv() == [c.expect(seq=c.es(8), ack=c.gs(3))]
    c.host_push(b"resp")
    assert c.recv() == [c.expect(seq=c.es(8), ack=c.gs(3), flags=F.ACK | F.PSH, payload=b"resp")]


@pytest.mark.engine(rx_buf=1 << 16)
def test_slow_host_reader_keeps_order(conn_established, engine):
    """What the host socket does not take waits in the ring; later segments queue behind it."""
    c = conn_established
    engine.sock_set(c.fd, tx_limit=1000)
    rng = random.Random(9)
    data = rng.randbytes(20_000)
    got = bytearray()
    off = 0
    while off < len(data) or len(got) < len(data):
        if off < len(data):
            n = min(1200, len(data) - off)
            c.send(seq=c.gs(off), payload=data[off:off + n])
            off += n
            c.recv()
        got += c.host_take()
        engine.host_event(c.flow, HEV_OUT, c.clock.now)
        c.recv()
    assert bytes(got) == data
    assert engine.stats()["host_partial_writes"] > 0


def test_guest_fin_reaches_the_host_after_all_data(conn_established, engine):
    c = conn_established
    engine.sock_set(c.fd, tx_limit=100)
    data = bytes(range(250)) * 4
    c.send(flags=F.ACK | F.FIN | F.PSH, payload=data)
    c.recv()
    assert c.state == TcpState.CLOSE_WAIT
    got = bytearray()
    while True:
        assert not c.sock()["shut_wr"] or len(got) + c.sock()["tx_len"] == len(data)
        piece = c.host_take()
        if not piece:
            break
        got += piece
        engine.host_event(c.flow, HEV_OUT, c.clock.now)
        c.recv()
    assert bytes(got) == data
    assert c.sock()["shut_wr"]


def test_half_close_from_the_guest_host_keeps_sending(conn_close_wait):
    c = conn_close_wait
    data = random.Random(3).randbytes(50_000)
    c.host_push(data)
    got = bytearray()
    for _ in range(100):
        segs = c.recv()
        if not segs:
            break
        for s in segs:
            assert s.ack == c.gs(1)
            got += s.payload
        c.send(ack=c.es(len(got)))
    assert bytes(got) == data
    c.host_eof()
    assert c.recv() == [c.expect(seq=c.es(len(data)), flags=F.FIN | F.ACK)]


def test_host_eof_sends_fin_after_all_data(conn_established):
    """The host peer writes and closes at once (one EPOLLIN|EPOLLRDHUP edge): all data, then
    the FIN, even though the data takes several windows to go out."""
    c = conn_established
    data = random.Random(4).randbytes(200_000)
    c.engine.push(c.fd, data)
    c.host_eof()
    got = bytearray()
    fin = None
    for _ in range(200):
        segs = c.recv()
        if not segs:
            break
        for s in segs:
            if s.flags & F.FIN:
                assert fin is None
                fin = s
            assert s.seq == c.es(len(got))
            got += s.payload
        c.send(ack=c.es(len(got)) if fin is None else c.es(len(got) + 1))
    assert bytes(got) == data
    assert fin is not None and fin.seq == c.es(len(data)), "FIN after the last byte"
    assert c.state == TcpState.FIN_WAIT_2


def test_host_eof_with_data_in_one_event(conn_established):
    c = conn_established
    c.engine.push(c.fd, b"short reply")
    c.host_eof()
    segs = c.recv()
    assert [(s.flags, s.payload) for s in segs] == [(F.ACK | F.PSH, b"short reply"), (F.ACK | F.FIN, b"")]


def test_half_close_from_the_host_guest_keeps_sending(conn_fin_wait_2, clock):
    c = conn_fin_wait_2
    data = random.Random(8).randbytes(100_000)
    off = 0
    while off < len(data):
        clock.advance(10 * h.MS)
        n = min(1000, len(data) - off)
        c.send(seq=c.gs(off), payload=data[off:off + n])
        off += n
        assert c.recv() == [c.expect(ack=c.gs(off))]
    assert c.host_take() == data
    assert c.state == TcpState.FIN_WAIT_2


def drain_host(c, rounds=50):
    got = bytearray()
    for _ in range(rounds):
        piece = c.host_take()
        if not piece and c.sock()["tx_len"] == 0 and (c.sock()["closed"] or c.info() is None):
            break
        got += piece
        if not c.sock()["closed"]:
            c.engine.host_event(c.flow, HEV_OUT, c.clock.now)
        c.recv()
    return bytes(got)


def test_last_ack_waits_until_the_host_has_every_byte(conn_established, engine, clock):
    """The guest's data and FIN are all acknowledged, but the host reads slowly: the flow may
    not close the host socket before the last byte went in, or the host peer would see a
    clean end of a truncated stream."""
    c = conn_established
    engine.sock_set(c.fd, tx_limit=1000)
    data = bytes(range(256)) * 20
    c.send(flags=F.ACK | F.PSH | F.FIN, payload=data)
    c.recv()
    assert c.state == TcpState.CLOSE_WAIT
    c.engine.push(c.fd, b"response")
    c.host_eof()
    segs = c.recv()
    assert [s.flags for s in segs] == [F.ACK | F.PSH, F.ACK | F.FIN]
    c.send(seq=c.gs(len(data) + 1), ack=c.es(9))  # acknowledges our FIN: LAST-ACK is done
    got = drain_host(c)
    assert got == data
    s = c.sock()
    assert s["closed"] and not s["rst"] and s["shut_wr"]
    assert c.events() == [(TcpEvent.CLOSED, c.flow, 0)]


def test_time_wait_waits_until_the_host_has_every_byte(conn_fin_wait_2, engine, clock):
    c = conn_fin_wait_2
    engine.sock_set(c.fd, tx_limit=1000)
    data = bytes(range(256)) * 20
    c.send(flags=F.ACK | F.PSH | F.FIN, payload=data)
    c.recv()
    assert c.state == TcpState.TIME_WAIT
    c.run_until(clock.now + 3 * h.SEC)  # past 2 MSL: the host has not read a byte yet
    got = drain_host(c)
    assert got == data
    s = c.sock()
    assert s["closed"] and not s["rst"] and s["shut_wr"]


def test_host_that_never_reads_is_reset_not_truncated(conn_fin_wait_2, engine, clock):
    c = conn_fin_wait_2
    engine.sock_set(c.fd, tx_limit=1000)
    c.send(flags=F.ACK | F.PSH | F.FIN, payload=bytes(5000))
    c.recv()
    h.drain(engine, clock)
    s = c.sock()
    assert s["closed"] and s["rst"], "undelivered bytes: the host peer must not see a clean end"


def test_more_than_one_run_goes_out_without_new_host_events(new_conn):
    """One peek fills at most 64 frames; a window wider than that must not be mistaken for a
    drained socket (no further EPOLLIN edge comes for data already queued)."""
    c = h.established(new_conn(**OPTION_SETS["full"]))
    mss = c.info()["mss"]
    data = random.Random(11).randbytes(300 * mss)
    c.engine.push(c.fd, data)
    c.engine.host_event(c.flow, HEV_IN, c.clock.now)
    got = bytearray()
    for _ in range(20):
        segs = c.recv()
        if not segs:
            break
        for s in segs:
            assert s.seq == c.es(len(got))
            got += s.payload
        c.send(ack=c.es(len(got)))
    assert bytes(got) == data


def test_a_batch_bigger_than_the_write_table(conn_established, new_conn, engine):
    """More in-order segments in one batch than the per-batch iovec table holds (4096), over
    two flows: everything arrives, in order, on the right socket."""
    c1 = conn_established
    c2 = h.established(new_conn(port=40001, guest_isn=777, mss=1460))
    segs = []
    for i in range(3000):
        segs.append(c1.seg(seq=c1.gs(i), payload=bytes([i % 256])))
        segs.append(c2.seg(seq=c2.gs(2 * i), payload=bytes([(i * 7) % 256, 0xAA])))
    for s in segs:
        engine.input(bytes(s.frame()), c1.clock.now)
    engine.flush(c1.clock.now)
    acks = [h.Seg.parse(f) for f in engine.take_frames()]
    assert sorted((a.dst_port, a.ack) for a in acks) == [(40000, c1.gs(3000)), (40001, c2.gs(6000))]
    assert c1.host_take() == bytes(i % 256 for i in range(3000))
    assert c2.host_take() == b"".join(bytes([(i * 7) % 256, 0xAA]) for i in range(3000))


def test_guest_super_segment(conn_established):
    """A segment bigger than the MSS (the guest's GSO/TSO) is taken whole."""
    c = conn_established
    data = random.Random(12).randbytes(60_000)
    c.send(payload=data)
    assert c.recv() == [c.expect(ack=c.gs(60_000))]
    assert c.host_take() == data


@pytest.mark.engine(gso=True, tx_seg_max=65000)
def test_gso_super_frames_towards_the_guest(new_conn, engine):
    c = h.established(new_conn(**OPTION_SETS["full"]))
    mss = c.info()["mss"]
    data = random.Random(13).randbytes(200_000)
    c.engine.push(c.fd, data)
    c.engine.host_event(c.flow, HEV_IN, c.clock.now)
    got = bytearray()
    for _ in range(20):
        metas = engine.take_frames_meta()
        if not metas:
            break
        for fr, flags, gso in metas:
            f = wire.parse_frame(fr)
            t = f.l4
            assert f.ip.total_len <= 65535
            assert t.seq == c.es(len(got))
            pl = bytes(t.payload)
            if len(pl) > mss:  # a super-frame the link cuts into MSS segments (the last shorter)
                assert flags & h.TXD_GSO_TCPV4 and gso == mss
            h.Seg.parse(fr, partial=True)  # the link completes the checksum
            got += pl
        c.send(ack=c.es(len(got)))
    assert bytes(got) == data
