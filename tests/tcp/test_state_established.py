"""ESTABLISHED, for every option set the guest may offer: segment acceptance (RFC 9293
§3.10.7.4), ACK processing, PAWS (RFC 7323 §5), administrative close."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fastnet import _tcp
from tests.tcp import harness as h
from tests.tcp.harness import *  # noqa: F403


def test_guest_data_is_acked_and_delivered(conn_established):
    c = conn_established
    c.send(flags=F.ACK | F.PSH, payload=b"hello")
    assert c.recv() == [c.expect(ack=c.gs(5))]
    assert c.host_take() == b"hello"
    assert c.info()["bytes_g2h"] == 5


def test_host_data_goes_out_in_mss_segments(conn_established):
    c = conn_established
    mss = c.info()["mss"]
    data = bytes(i % 251 for i in range(2 * mss + 100))
    c.host_push(data)
    assert c.recv() == [
        c.expect(seq=c.es(0), payload=data[:mss]),
        c.expect(seq=c.es(mss), payload=data[mss:2 * mss]),
        c.expect(seq=c.es(2 * mss), flags=F.ACK | F.PSH, payload=data[2 * mss:]),
    ]
    c.send(ack=c.es(len(data)))
    c.recv_nothing()
    assert c.sock()["rx_len"] == 0


def test_ack_of_data_never_sent_is_answered_and_the_segment_dropped(conn_established, engine):
    """RFC 9293 §3.10.7.4 (fifth check, ESTABLISHED): "If the ACK acks something not yet sent
    (SEG.ACK > SND.NXT) then send an ACK, drop the segment, and return" (also RFC 5961 §5.2)."""
    c = conn_established
    c.send(ack=c.es(1000), flags=F.ACK | F.PSH, payload=b"injected")
    assert c.recv() == [c.expect()]
    assert c.host_take() == b""
    assert c.info()["rcv_nxt"] == c.gs(0)
    # The real segment is still accepted afterwards.
    c.send(flags=F.ACK | F.PSH, payload=b"real")
    assert c.recv() == [c.expect(ack=c.gs(4))]
    assert c.host_take() == b"real"


def test_ack_of_data_never_sent_does_not_close_via_fin(conn_established):
    c = conn_established
    c.send(ack=c.es(1000), flags=F.ACK | F.FIN)
    assert c.recv() == [c.expect()]
    assert c.state == TcpState.ESTABLISHED
    assert not c.sock()["shut_wr"]


def test_old_duplicate_ack_with_data_is_accepted(conn_established):
    c = conn_established
    c.host_push(b"abc")
    c.recv()
    c.send(ack=c.es(3))
    # The guest's next segment still carries the old ACK (sent before it saw our data).
    c.send(ack=c.es(0), flags=F.ACK | F.PSH, payload=b"x")
    assert c.recv() == [c.expect(seq=c.es(3), ack=c.gs(1))]
    assert c.host_take() == b"x"
    assert c.info()["snd_una"] == c.es(3)


@pytest.mark.parametrize("where", ["far_ahead", "far_behind"])
def test_out_of_window_segment_gets_an_ack(conn_established, engine, where):
    c = conn_established
    seq = c.gs(1 << 30) if where == "far_ahead" else c.gs(-(1 << 30))
    c.send(seq=seq, flags=F.ACK | F.PSH, payload=b"junk")
    assert c.recv() == [c.expect()]
    assert c.host_take() == b""
    assert engine.stats()["dup_segs"] == 1


def test_retransmitted_data_is_acked_not_delivered_twice(conn_established):
    c = conn_established
    c.send(flags=F.ACK | F.PSH, payload=b"once")
    c.recv()
    c.send(flags=F.ACK | F.PSH, payload=b"once")
    # With SACK the duplicate is reported as a D-SACK block (RFC 2883 §4 case 1).
    dsack = ((c.gs(0), c.gs(4)),) if c.sack else ()
    assert c.recv() == [c.expect(ack=c.gs(4), sack_blocks=dsack)]
    c.send(seq=c.gs(2), flags=F.ACK | F.PSH, payload=b"ce and more")  # overlaps the front
    dsack = ((c.gs(2), c.gs(4)),) if c.sack else ()
    assert c.recv() == [c.expect(ack=c.gs(13), sack_blocks=dsack)]
    assert c.host_take() == b"once and more"


def test_keepalive_from_the_guest_is_acked(conn_established):
    c = conn_established
    c.send(flags=F.ACK | F.PSH, payload=b"z")
    c.recv()
    c.send(seq=c.gs(0))  # seq = RCV.NXT - 1, no data (a keepalive probe)
    assert c.recv() == [c.expect(ack=c.gs(1))]


def test_segment_without_ack_bit_is_dropped(conn_established):
    c = conn_established
    c.send(flags=F.PSH, payload=b"noack")
    c.recv_nothing()
    assert c.host_take() == b""


def test_pure_ack_in_order_is_not_answered(conn_established):
    c = conn_established
    c.send()
    c.send(window=c.tx.window - 1)
    c.recv_nothing()


@pytest.mark.parametrize("variant", ["full", "ts"])
def test_paws_drops_an_old_timestamp(new_conn, engine, variant):
    c = h.established(new_conn(**OPTION_SETS[variant]))
    c.send(flags=F.ACK | F.PSH, payload=b"new")
    c.recv()
    # Older than TS.Recent by more than the engine's 100-tick tolerance (reordering of a few
    # ms is not what PAWS is for, see fn_tcp.c).
    old = ((c.last_g_tsval - 1000) % 2**32, c.last_e_tsval)
    c.send(seq=c.gs(3), flags=F.ACK | F.PSH, payload=b"stale", timestamps=old)
    # RFC 7323 §5.3: an ACK is sent in reply and the segment dropped; TS.Recent stays.
    assert c.recv() == [c.expect(ack=c.gs(3))]
    assert c.host_take() == b"new"
    assert engine.stats()["bad_seq"] == 1


def test_paws_tolerates_a_segment_reordered_by_a_few_ticks(new_conn, engine):
    c = h.established(new_conn(**OPTION_SETS["ts"]))
    c.send(flags=F.ACK | F.PSH, payload=b"new")
    c.recv()
    late = ((c.last_g_tsval - 10) % 2**32, c.last_e_tsval)
    c.send(seq=c.gs(3), flags=F.ACK | F.PSH, payload=b"late", timestamps=late, old=True)
    c.recv()
    assert c.host_take() == b"newlate"
    assert engine.stats()["bad_seq"] == 0


@pytest.mark.parametrize("variant", ["full", "ts"])
def test_ack_echoes_the_latest_timestamp(new_conn, clock, variant):
    c = h.established(new_conn(**OPTION_SETS[variant]))
    clock.advance(50 * h.MS)
    c.send(flags=F.ACK | F.PSH, payload=b"a", timestamps=(123456789, c.last_e_tsval))
    assert c.recv() == [c.expect(ack=c.gs(1), timestamps=(clock.now // 1000, 123456789))]


def test_timestamps_with_rtt(conn_established, clock):
    c = conn_established
    c.host_push(b"x" * 100)
    c.recv()
    clock.advance(30 * h.MS)
    c.send(ack=c.es(100))
    info = c.info()
    if c.ts:
        assert info["srtt_us"] == 30 * h.MS + 500  # RFC 7323 §4.1 (1 ms ticks, mid-tick)
    else:
        assert info["srtt_us"] == 30 * h.MS  # RFC 6298 timing of one segment
    assert info["rto_us"] >= 200_000


def test_abort_is_rst_both_ways(conn_established, engine, clock):
    c = conn_established
    c.host_push(b"pending")
    c.recv()
    engine.close_flow(c.flow, True, clock.now)
    assert c.recv() == [replace(c.rx, seq=c.es(7), flags=F.RST | F.ACK, window=0, timestamps=None)]
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_ADMIN)]
    assert c.sock()["closed"] and c.sock()["rst"]
    assert c.info() is None


def test_clean_close_sends_fin_after_the_data_in_flight(conn_established, engine, clock):
    c = conn_established
    c.host_push(b"tail")
    assert c.recv() == [c.expect(flags=F.ACK | F.PSH, payload=b"tail")]
    engine.close_flow(c.flow, False, clock.now)
    assert c.recv() == [c.expect(seq=c.es(4), flags=F.FIN | F.ACK)]
    assert c.state == TcpState.FIN_WAIT_1


def test_window_update_from_the_guest_releases_data(conn_established):
    c = conn_established
    mss = c.info()["mss"]
    small = (mss // 2) >> c.ws_guest << c.ws_guest or mss // 2
    c.send(window=small >> c.ws_guest)
    c.host_push(bytes(3 * mss))
    segs = c.recv()
    assert sum(len(s.payload) for s in segs) == small
    c.send(window=(4 * mss) >> c.ws_guest)  # same ACK, larger window: a window update
    segs = c.recv()
    assert sum(len(s.payload) for s in segs) == 3 * mss - small
    assert segs[0].seq == c.es(small)
