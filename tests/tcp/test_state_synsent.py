"""SYN-SENT: the engine opens towards the guest (a published port's client), RFC 9293 §3.10.7.3."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fastnet import _tcp
from fastnet.errors import ConnectionStateError
from tests.tcp import harness as h
from tests.tcp.harness import *  # noqa: F403


def synack(c, **kw):
    o = dict(flags=F.SYN | F.ACK, seq=c.g_isn, ack=c.es(0), mss=1460, window_scale=7, sack_permitted=True,
             timestamps=(c.g_tsval(), c.syn.timestamps[0]))
    o.update(kw)
    return replace(c.tx, **o)


def test_syn_offers_everything(conn_syn_sent, clock):
    c = conn_syn_sent
    assert c.syn == replace(c.rx, seq=c.e_isn, ack=0, flags=F.SYN, window=65535, mss=1460, window_scale=6,
                            sack_permitted=True, timestamps=(clock.now // 1000, 0))
    assert c.sock()["watched"]


def test_synack_completes_the_open(conn_syn_sent, engine, clock):
    c = conn_syn_sent
    clock.advance(20 * h.MS)
    s = synack(c)
    c.send(s)
    c.ts, c.sack, c.ws_guest, c.ws_engine = True, True, 7, 6
    c.syn_opts["window_scale"] = 7
    c.tx = replace(c.tx, seq=c.gs(0), ack=c.es(0))
    c.rx = replace(c.rx, seq=c.es(0), ack=c.gs(0), window=c.full_window)
    assert c.recv() == [c.expect(timestamps=(clock.now // 1000, s.timestamps[0]))]
    assert c.events() == [(TcpEvent.ESTABLISHED, c.flow, 0)]
    info = c.info()
    assert info["state"] == TcpState.ESTABLISHED
    assert (info["snd_wscale"], info["rcv_wscale"], info["mss"]) == (7, 6, 1448)
    assert info["snd_wnd"] == s.window, "RFC 7323 §2.2: the window in a SYN is never scaled"
    assert info["srtt_us"] == 20 * h.MS, "the SYN was timed (no retransmission)"
    # Data flows both ways.
    c.host_push(b"banner\r\n")
    assert c.recv() == [c.expect(flags=F.ACK | F.PSH, payload=b"banner\r\n")]
    c.send(ack=c.es(8), payload=b"hi")
    assert c.recv() == [c.expect(seq=c.es(8), ack=c.gs(2))]
    assert c.host_take() == b"hi"


def test_synack_without_options(conn_syn_sent, engine, clock):
    c = conn_syn_sent
    c.send(synack(c, mss=None, window_scale=None, sack_permitted=False, timestamps=None, window=5000))
    segs = c.recv()
    assert [(s.flags, s.seq, s.ack, s.timestamps, s.window) for s in segs] == [
        (F.ACK, c.es(0), c.gs(0), None, 65535)]
    info = c.info()
    assert (info["snd_wscale"], info["rcv_wscale"], info["mss"], info["snd_wnd"]) == (0, 0, 536, 5000)
    c.host_push(bytes(1000))
    assert [len(s.payload) for s in c.recv()] == [536, 464]


def test_acceptable_rst_closes_the_host_socket_with_rst(conn_syn_sent, engine):
    c = conn_syn_sent
    c.send(seq=0, ack=c.es(0), flags=F.RST | F.ACK)
    c.recv_nothing()
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_GUEST_RST)]
    assert c.sock()["closed"] and c.sock()["rst"]
    assert engine.stats()["rst_in"] == 1


def test_rst_without_ack_or_with_a_bad_ack_is_ignored(conn_syn_sent):
    c = conn_syn_sent
    c.send(seq=0, ack=0, flags=F.RST)
    c.send(seq=0, ack=c.es(5), flags=F.RST | F.ACK)
    c.recv_nothing()
    assert c.state == TcpState.SYN_SENT


@pytest.mark.parametrize("ack_off", [-1, 1, 1 << 20])
def test_bad_ack_gets_rst(conn_syn_sent, ack_off):
    c = conn_syn_sent
    bad = c.es(ack_off)  # es(-1) is our ISS: it does not acknowledge the SYN
    c.send(synack(c, ack=bad))
    assert c.recv() == [replace(c.rx, seq=bad, ack=0, flags=F.RST, window=0)]
    assert c.state == TcpState.SYN_SENT


def test_segments_without_syn_are_dropped(conn_syn_sent):
    c = conn_syn_sent
    c.send(seq=c.g_isn, ack=0, flags=F.FIN)
    c.send(seq=c.g_isn, ack=0, flags=F.PSH, payload=b"x")
    c.recv_nothing()
    assert c.state == TcpState.SYN_SENT


def test_syn_retransmitted_with_backoff_then_gives_up(conn_syn_sent, engine, clock):
    c = conn_syn_sent
    start = clock.now
    times = []
    for _ in range(20):
        nxt = engine.timers(clock.now)
        for s in c.recv():
            assert s.flags == F.SYN and s.seq == c.e_isn
            times.append(clock.now - start)
        if not nxt:
            break
        clock.to(nxt)
    # RFC 6298 §5.5 backoff from 1 s; the active open gives up after syn_timeout (20 s).
    assert times == [1 * h.SEC, 3 * h.SEC, 7 * h.SEC, 15 * h.SEC]
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_TIMEOUT)]
    assert c.sock()["closed"] and c.sock()["rst"]


def test_synack_after_a_retransmitted_syn_is_not_timed(conn_syn_sent, clock):
    c = conn_syn_sent
    c.run_until(clock.now + h.SEC)
    assert [s.flags for s in c.recv()] == [F.SYN]
    c.send(synack(c))
    assert c.info()["srtt_us"] == 0, "Karn: no RTT sample from a retransmitted SYN"


def test_simultaneous_open(conn_syn_sent, clock):
    c = conn_syn_sent
    c.send(synack(c, flags=F.SYN, ack=0))
    segs = c.recv()
    assert [(s.flags, s.seq, s.ack) for s in segs] == [(F.SYN | F.ACK, c.e_isn, c.gs(0))]
    assert segs[0].window_scale == 6 and segs[0].sack_permitted and segs[0].mss == 1460
    assert c.state == TcpState.SYN_RECEIVED
    c.ts, c.sack = True, True
    c.send(seq=c.gs(0), ack=c.es(0))
    assert c.events() == [(TcpEvent.ESTABLISHED, c.flow, 0)]
    assert c.state == TcpState.ESTABLISHED


def test_host_data_waits_for_the_handshake(conn_syn_sent, clock):
    c = conn_syn_sent
    c.host_push(b"early bytes")
    c.recv_nothing()
    c.send(synack(c, window_scale=None, sack_permitted=False, timestamps=None))
    segs = c.recv()
    assert [(s.flags, bytes(s.payload)) for s in segs] == [(F.ACK | F.PSH, b"early bytes")]
    assert segs[0].seq == c.es(0) and segs[0].ack == c.gs(0)


def test_open_twice_for_the_same_tuple_raises(conn_syn_sent, engine, clock):
    c = conn_syn_sent
    with pytest.raises(ConnectionStateError):
        engine.open(GUEST_MAC, GUEST_IP, c.port, REMOTE_IP, REMOTE_PORT, engine.socket(), clock.now)


def test_retransmitted_synack_after_establishment_is_acked(conn_syn_sent):
    """Our ACK of the guest's SYN-ACK was lost: its retransmission gets an ACK again (RFC 5961
    §4.2's challenge ACK is exactly that ACK)."""
    c = conn_syn_sent
    s = synack(c, window_scale=None, sack_permitted=False, timestamps=None)
    c.send(s)
    first = c.recv()
    c.send(s)
    again = c.recv()
    assert [(x.flags, x.seq, x.ack) for x in again] == [(F.ACK, c.es(0), c.gs(0))] == \
        [(x.flags, x.seq, x.ack) for x in first]
    assert c.state == TcpState.ESTABLISHED
