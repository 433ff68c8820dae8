"""Retransmission: the RTO with backoff (RFC 6298), fast retransmit (RFC 5681 §3.2), SACK
loss recovery (RFC 6675), giving up after max_retries, RTT measurement (Karn, RFC 7323)."""

from __future__ import annotations

import random

import pytest

from fastnet import _tcp
from tests.tcp import harness as h
from tests.tcp.harness import *  # noqa: F403


# RACK's reordering window here: srtt/4 is below its 1 ms floor on these scripted round trips.
REO_WINDOW = 1_000


def fn_seq_lt(a, b):
    return ((a - b) & 0xFFFFFFFF) >= 0x80000000


def push_segments(c, n, seed=0):
    mss = c.info()["mss"]
    data = random.Random(seed).randbytes(n * mss)
    c.host_push(data)
    segs = c.recv()
    assert len(segs) == n
    return data, mss, segs


def test_rto_resends_the_first_segment_with_backoff(conn_established, engine, clock):
    c = conn_established
    data, mss, segs = push_segments(c, 3)
    rto = c.info()["rto_us"]
    assert rto == 200_000  # rto_min: the handshake's RTT sample was 0
    start = clock.now
    for k in range(4):
        c.run_until(start + rto * (2 ** (k + 1) - 1) - 1)
        c.recv_nothing()
        c.run_until(start + rto * (2 ** (k + 1) - 1))
        # (a retransmission is a run of its own: PSH on its last segment)
        assert c.recv() == [c.expect(seq=c.es(0), flags=F.ACK | F.PSH, payload=data[:mss])], f"timeout {k + 1}"
    assert engine.stats()["timeouts"] == 4
    assert c.info()["cwnd"] == mss  # RFC 5681 eqn. 4: loss window
    # The first segment is acknowledged: go-back-N resends what followed, as cwnd allows.
    c.send(ack=c.es(mss))
    again = c.recv()
    assert [s.seq for s in again] == [c.es(mss), c.es(2 * mss)]
    assert b"".join(s.payload for s in again) == data[mss:]
    c.send(ack=c.es(3 * mss))
    c.recv_nothing()
    assert c.sock()["rx_len"] == 0


def test_rto_resends_the_fin(conn_fin_wait_1, clock):
    c = conn_fin_wait_1
    rto = c.info()["rto_us"]
    c.run_until(clock.now + rto)
    assert c.recv() == [c.expect(seq=c.es(0), flags=F.FIN | F.ACK)]
    c.send(ack=c.es(1))
    assert c.state == TcpState.FIN_WAIT_2


def test_three_duplicate_acks_fast_retransmit(conn_established, engine):
    c = conn_established
    data, mss, segs = push_segments(c, 10)
    c.send(ack=c.es(mss))  # the first arrived, the second was lost
    c.recv()  # slow start may send more
    for i in range(2):
        c.send(ack=c.es(mss), sack_blocks=((c.es(2 * mss), c.es((3 + i) * mss)),) if c.sack else ())
        segs = c.recv()
        if not c.sack:
            assert segs == [], f"no retransmission at duplicate ACK {i + 1}"
    c.send(ack=c.es(mss), sack_blocks=((c.es(2 * mss), c.es(5 * mss)),) if c.sack else ())
    segs = c.recv()
    if c.sack:  # with SACK, loss is declared by time (RACK), not by the duplicate count
        assert [s for s in segs if s.payload and s.seq == c.es(mss)] == []
        c.run_until(c.clock.now + REO_WINDOW)
        segs = c.recv()
    assert segs[0] == c.expect(seq=c.es(mss), flags=F.ACK | F.PSH, payload=data[mss:2 * mss])
    assert engine.stats()["fast_rexmits"] == 1
    info = c.info()
    assert info["ssthresh"] >= 2 * mss


def test_duplicate_acks_with_a_window_change_do_not_count(conn_established, engine):
    c = conn_established
    data, mss, segs = push_segments(c, 10)
    for i in range(5):
        c.send(ack=c.es(0), window=c.tx.window - 1 - i)  # window updates, not duplicates
    assert all(len(s.payload) == 0 or s.seq != c.es(0) for s in c.recv())
    assert engine.stats()["fast_rexmits"] == 0


def test_sack_retransmits_the_holes(new_conn, engine):
    c = h.established(new_conn(**OPTION_SETS["full"]))
    data, mss, segs = push_segments(c, 10)
    e = lambda k: c.es(k * mss)  # noqa: E731
    # Segments 1 and 4 lost; the guest SACKs 2-4 then 5-10.
    c.send(ack=e(1), sack_blocks=((e(2), e(4)),))
    c.recv()
    c.send(ack=e(1), sack_blocks=((e(2), e(4)),))
    c.recv()
    c.send(ack=e(1), sack_blocks=((e(5), e(10)), (e(2), e(4))))
    c.recv()
    c.run_until(c.clock.now + REO_WINDOW)
    segs = [s for s in c.recv() if s.payload]
    # After the reordering window both holes lie below the newest delivery, so both are lost
    # (RACK), and the pipe lets both go at once.
    assert segs[0] == c.expect(seq=e(1), flags=F.ACK | F.PSH, payload=data[mss:2 * mss])
    assert segs[1].seq == e(4) and segs[1].payload == data[4 * mss:5 * mss]
    assert engine.stats()["fast_rexmits"] == 1
    # A further duplicate ACK has nothing left to repair: no hole is sent twice.
    c.send(ack=e(1), sack_blocks=((e(5), e(10)), (e(2), e(4))))
    assert [s for s in c.recv() if s.payload and fn_seq_lt(s.seq, e(10))] == []
    # A partial ACK up to the second hole, then the full ACK.
    c.send(ack=e(4), sack_blocks=((e(5), e(10)),))
    c.recv()
    c.send(ack=e(10))
    c.recv()
    assert c.sock()["rx_len"] == 0
    assert c.info()["snd_una"] == e(10)


def test_sack_holes_are_lost_after_the_reordering_window(new_conn, engine, clock):
    c = h.established(new_conn(**OPTION_SETS["sack_ws"]))
    data, mss, segs = push_segments(c, 8)
    c.send(ack=c.es(0), sack_blocks=((c.es(mss), c.es(4 * mss)),))
    # Data sent after the first segment arrived: it is lost, or merely late. RACK (RFC 8985
    # §6.2) waits a quarter of a round trip, at least 1 ms, before calling it lost.
    assert [s for s in c.recv() if s.payload] == []
    c.run_until(clock.now + REO_WINDOW)
    segs = c.recv()
    assert segs and segs[0] == c.expect(seq=c.es(0), flags=F.ACK | F.PSH, payload=data[:mss])
    assert engine.stats()["fast_rexmits"] == 1


def test_a_late_segment_inside_the_reordering_window_is_not_retransmitted(new_conn, engine, clock):
    c = h.established(new_conn(**OPTION_SETS["sack_ws"]))
    data, mss, segs = push_segments(c, 8)
    c.send(ack=c.es(0), sack_blocks=((c.es(mss), c.es(4 * mss)),))
    c.recv()
    c.send(ack=c.es(4 * mss))  # the first segment was only reordered
    c.run_until(clock.now + REO_WINDOW)
    assert [s for s in c.recv() if s.payload and s.seq == c.es(0)] == []
    assert engine.stats()["fast_rexmits"] == 0


@pytest.mark.engine(max_retries=3)
def test_giving_up_after_max_retries_resets_both_ways(conn_established, engine, clock):
    c = conn_established
    data, mss, segs = push_segments(c, 2)
    sent = []
    for _ in range(10):
        nxt = engine.timers(clock.now)
        sent += c.recv()
        if not nxt:
            break
        clock.to(nxt)
    assert [s.flags for s in sent] == [F.ACK | F.PSH] * 3 + [F.RST | F.ACK]
    # The RST must be acceptable whatever the guest received: its RCV.NXT may be anywhere up to
    # the highest byte sent (its ACKs may be the ones lost), and an RST below RCV.NXT is
    # silently dropped by an RFC 5961 receiver. SND.NXT went back to SND.UNA + MSS at the first
    # timeout (go-back-N), so the RST carries the highest sequence number sent.
    assert sent[-1].seq == c.es(2 * mss)
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_TIMEOUT)]
    assert c.sock()["closed"] and c.sock()["rst"]


def test_rtt_from_timestamps_and_rto_floor(new_conn, clock):
    c = h.established(new_conn(**OPTION_SETS["full"]))
    c.host_push(b"a" * 100)
    c.recv()
    clock.advance(3 * h.MS)
    c.send(ack=c.es(100))
    info = c.info()
    assert info["srtt_us"] == 3500
    assert info["rto_us"] == 200_000  # RFC 6298 §2.4 floor (rto_min)


@pytest.mark.engine(rto_min=0.001)
def test_karn_no_sample_from_a_retransmission(new_conn, clock):
    c = h.established(new_conn(mss=1460))
    c.host_push(b"b" * 100)
    c.recv()
    clock.advance(50 * h.MS)
    c.send(ack=c.es(100))
    assert c.info()["srtt_us"] == 50 * h.MS
    rto = c.info()["rto_us"]
    c.host_push(b"c" * 100)
    c.recv()
    c.run_until(clock.now + rto)
    assert [s.payload for s in c.recv()] == [b"c" * 100]
    clock.advance(5 * h.MS)
    c.send(ack=c.es(200))  # ambiguous: the original or the retransmission?
    assert c.info()["srtt_us"] == 50 * h.MS, "Karn: no sample"
    # The backed-off RTO stays until a new sample (RFC 6298 §5.7).
    assert c.info()["rto_us"] == 2 * rto


@pytest.mark.engine(rto_min=0.001)
def test_timestamps_measure_even_retransmitted_data(new_conn, clock):
    c = h.established(new_conn(**OPTION_SETS["full"]))
    c.host_push(b"d" * 100)
    c.recv()
    rto = c.info()["rto_us"]
    c.run_until(clock.now + rto)
    rx = c.recv()
    assert len(rx) == 1
    clock.advance(7 * h.MS)
    c.send(ack=c.es(100))  # echoes the retransmission's TSval
    assert c.info()["srtt_us"] == 7500


def test_rto_after_a_partial_ack_resends_from_the_acknowledged_byte(conn_established, clock):
    c = conn_established
    data, mss, segs = push_segments(c, 2, seed=3)
    c.send(ack=c.es(100))  # a part of the first segment
    c.recv_nothing()
    c.run_until(clock.now + c.info()["rto_us"])
    segs = c.recv()
    assert len(segs) == 1
    assert segs[0].seq == c.es(100) and segs[0].payload == data[100:100 + mss]
