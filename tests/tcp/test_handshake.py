"""The three-way handshake with the guest: NEW_FLOW, the host connect, SYN-ACK options,
refusals (RST, ICMP), timeouts and retransmissions (RFC 9293 §3.5, RFC 7323, RFC 2018)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.tcp.harness import *  # noqa: F403
from tests.tcp import harness as h

from fastnet import _tcp, wire
from fastnet.errors import ConnectionStateError


@pytest.mark.parametrize("variant", list(OPTION_SETS))
def test_synack_answers_the_guests_options(variant, new_conn, clock):
    c = new_conn(**OPTION_SETS[variant])
    h.connecting(c)
    clock.advance(5 * h.MS)
    h.syn_received(c)
    o = OPTION_SETS[variant]
    s = c.synack
    ts = o.get("timestamps", False)
    # MSS: the option carries what we can receive (RFC 9293 §3.7.1); wscale, SACK-permitted and
    # timestamps only when the guest's SYN offered them (RFC 7323 §1.3/§3.2, RFC 2018 §2).
    assert s == c.expect(seq=c.e_isn, ack=c.gs(0), flags=F.SYN | F.ACK, window=65535, mss=1460,
                         window_scale=6 if o.get("window_scale") is not None else None,
                         sack_permitted=o.get("sack_permitted", False),
                         timestamps=(clock.now // 1000, c.syn.timestamps[0]) if ts else None)
    info = c.info()
    assert info["snd_wscale"] == (o.get("window_scale") or 0)
    assert info["rcv_wscale"] == (6 if o.get("window_scale") is not None else 0)
    assert info["mss"] == 1460 - (12 if ts else 0)
    h.established(c)


@pytest.mark.parametrize("guest_mss,expect_mss", [(536, 536), (1000, 1000), (9000, 1460), (None, 536)])
def test_send_mss_is_the_smaller_of_both(guest_mss, expect_mss, new_conn):
    c = h.established(new_conn(mss=guest_mss, window_scale=None, sack_permitted=False, timestamps=False))
    assert c.synack.mss == 1460
    assert c.info()["mss"] == expect_mss
    c.host_push(bytes(range(256)) * 12)  # 3072 bytes
    segs = c.recv()
    assert [len(s.payload) for s in segs] == [expect_mss] * (3072 // expect_mss) + (
        [3072 % expect_mss] if 3072 % expect_mss else [])
    assert all(len(s.payload) <= expect_mss for s in segs)


def test_window_scale_above_14_is_treated_as_14(new_conn):
    c = h.established(new_conn(window_scale=15, timestamps=False, sack_permitted=False))
    assert c.synack.window_scale == 6
    assert c.info()["snd_wscale"] == 14


def test_handshake_ack_carrying_data(conn_syn_received, engine):
    c = conn_syn_received
    c.send(flags=F.ACK | F.PSH, payload=b"GET / HTTP/1.0\r\n\r\n")
    assert c.events() == [(TcpEvent.ESTABLISHED, c.flow, 0)]
    assert c.recv() == [c.expect(ack=c.gs(18))]
    assert c.host_take() == b"GET / HTTP/1.0\r\n\r\n"


def test_handshake_ack_with_bad_ack_gets_rst(conn_syn_received):
    c = conn_syn_received
    # RFC 9293 §3.10.7.4 SYN-RECEIVED: an unacceptable ACK gets <SEQ=SEG.ACK><CTL=RST>.
    c.send(ack=c.es(100))
    assert c.recv() == [replace(c.rx, seq=c.es(100), ack=0, flags=F.RST, window=0, timestamps=None)]
    assert c.state == TcpState.SYN_RECEIVED
    c.send(ack=c.e_isn)  # acknowledges nothing: our SYN is not covered
    assert c.recv() == [replace(c.rx, seq=c.e_isn, ack=0, flags=F.RST, window=0, timestamps=None)]
    h.established(c)


def test_segment_without_ack_in_syn_received_is_dropped(conn_syn_received):
    c = conn_syn_received
    c.send(flags=F.PSH, payload=b"early")
    c.recv_nothing()
    assert c.state == TcpState.SYN_RECEIVED
    assert c.host_take() == b""


def test_lost_synack_is_retransmitted_with_backoff(conn_syn_received, clock):
    c = conn_syn_received
    first = c.synack
    c.run_until(clock.now + h.SEC - 1)
    c.recv_nothing()
    c.run_until(clock.now + 1)  # rto_initial = 1 s
    assert c.recv() == [replace(first, timestamps=c.expect(flags=F.SYN | F.ACK).timestamps
                                if first.timestamps else None)]
    c.run_until(clock.now + 2 * h.SEC - 1)  # backed off to 2 s
    c.recv_nothing()
    c.run_until(clock.now + 1)
    assert [s.flags for s in c.recv()] == [F.SYN | F.ACK]
    h.established(c)


def test_synack_retries_run_out_into_rst(conn_syn_received, clock, engine):
    c = conn_syn_received
    sent = []
    for _ in range(20):
        nxt = engine.timers(clock.now)
        sent += c.recv()
        if not nxt:
            break
        clock.to(nxt)
    assert c.state == TcpState.CLOSED
    assert [s.flags for s in sent] == [F.SYN | F.ACK] * 6 + [F.RST | F.ACK]
    assert sent[-1].seq == c.es(0)
    assert c.sock()["closed"] and c.sock()["rst"]
    assert c.events()[-1] == (TcpEvent.CLOSED, c.flow, _tcp.CLOSE_TIMEOUT)


def test_retransmitted_syn_in_syn_received_gets_the_synack_again(conn_syn_received, clock):
    """The guest lost our SYN-ACK and retransmits its SYN: answer with the SYN-ACK at once
    (what the engine's SYN-RECEIVED branch means to do; Linux does the same)."""
    c = conn_syn_received
    clock.advance(300 * h.MS)
    c.send(replace(c.syn, timestamps=(c.g_tsval(), 0) if c.syn.timestamps else None))
    segs = c.recv()
    assert [(s.flags, s.seq, s.ack) for s in segs] == [(F.SYN | F.ACK, c.e_isn, c.gs(0))]
    assert segs[0].mss == 1460
    assert c.state == TcpState.SYN_RECEIVED
    h.established(c)


def test_out_of_window_ack_in_syn_received_does_not_half_open(conn_syn_received):
    """An unacceptable segment is answered with an ACK and dropped (RFC 9293 §3.10.7.4 first
    check): its ACK field must not move SND.UNA, or the real ACK that follows is refused."""
    c = conn_syn_received
    c.send(seq=c.gs(10_000_000))
    segs = c.recv()
    assert [(s.flags, s.seq, s.ack) for s in segs] == [(F.ACK, c.es(0), c.gs(0))]
    assert c.state == TcpState.SYN_RECEIVED
    h.established(c)


def test_connect_refused_is_rst(conn_connecting, engine, clock):
    c = conn_connecting
    c.fd = engine.socket()
    engine.attach(c.flow, c.fd, clock.now)
    engine.sock_set(c.fd, error=errno.ECONNREFUSED)
    engine.host_event(c.flow, HEV_OUT | HEV_ERR, clock.now)
    # RFC 9293 §3.10.7.1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
    assert c.recv() == [replace(c.rx, seq=0, ack=c.gs(0), flags=F.RST | F.ACK, window=0)]
    assert c.events() == [(TcpEvent.CLOSED, c.flow, errno.ECONNREFUSED)]
    assert c.sock()["closed"]
    assert c.info() is None
    assert engine.stats()["refused"] == 1


@pytest.mark.parametrize("err,code", [(errno.ENETUNREACH, 0), (errno.EHOSTUNREACH, 1)])
def test_connect_unreachable_is_icmp(err, code, conn_connecting, engine, clock):
    c = conn_connecting
    c.fd = engine.socket()
    engine.attach(c.flow, c.fd, clock.now)
    engine.sock_set(c.fd, error=err)
    engine.host_event(c.flow, HEV_OUT, clock.now)
    frames = engine.take_frames()
    assert len(frames) == 1
    check_unreach(frames[0], c, code)
    assert c.events() == [(TcpEvent.CLOSED, c.flow, err)]
    assert c.sock()["closed"]


def check_unreach(frame, c, code):
    f, icmp, quoted = parse_icmp(frame)
    assert bytes(f.eth.dst) == GUEST_MAC and bytes(f.eth.src) == GW_MAC
    assert f.ip.src == REMOTE_IP and f.ip.dst == GUEST_IP
    assert (icmp.type, icmp.code) == (3, code)
    # RFC 792: the quoted datagram is the SYN's IP header and the first 8 bytes of its TCP header.
    assert len(quoted) == 28
    assert quoted[0] == 0x45 and quoted[9] == wire.IPPROTO_TCP
    assert quoted[12:16] == GUEST_IP.packed and quoted[16:20] == REMOTE_IP.packed
    assert wire.checksum(quoted[:20]) == 0, "the quoted IP header has a valid checksum"
    assert int.from_bytes(quoted[20:22], "big") == c.port
    assert int.from_bytes(quoted[22:24], "big") == REMOTE_PORT
    assert int.from_bytes(quoted[24:28], "big") == c.g_isn


@pytest.mark.parametrize("how,code", [(_tcp.Refusal.NET_UNREACHABLE, 0), (_tcp.Refusal.HOST_UNREACHABLE, 1),
                                      (_tcp.Refusal.PORT_UNREACHABLE, 3), (_tcp.Refusal.ADMIN_PROHIBITED, 13)])
def test_refuse_with_icmp(how, code, conn_connecting, engine, clock):
    c = conn_connecting
    engine.refuse(c.flow, how, clock.now)
    frames = engine.take_frames()
    assert len(frames) == 1
    check_unreach(frames[0], c, code)
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_REFUSED)]
    assert c.info() is None


def test_refuse_with_rst(conn_connecting, engine, clock):
    c = conn_connecting
    engine.refuse(c.flow, _tcp.Refusal.RST, clock.now)
    assert c.recv() == [replace(c.rx, seq=0, ack=c.gs(0), flags=F.RST | F.ACK, window=0)]
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_REFUSED)]


def test_refuse_silently(conn_connecting, engine, clock):
    c = conn_connecting
    engine.refuse(c.flow, _tcp.Refusal.DROP, clock.now)
    c.recv_nothing()
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_REFUSED)]
    # A retransmitted SYN is a new flow again.
    c.send(c.syn)
    assert [e[0] for e in engine.events()] == [TcpEvent.NEW_FLOW]


def test_refuse_twice_or_after_attach_complete_raises(conn_established, engine, clock):
    c = conn_established
    with pytest.raises(ConnectionStateError):
        engine.refuse(c.flow, _tcp.Refusal.RST, clock.now)
    with pytest.raises(ConnectionStateError):
        engine.attach(c.flow, engine.socket(), clock.now)


def test_connect_timeout_is_rst(conn_connecting, engine, clock):
    c = conn_connecting
    c.fd = engine.socket()
    engine.attach(c.flow, c.fd, clock.now)
    deadline = clock.now + 30 * h.SEC
    c.run_until(deadline - 1)
    c.recv_nothing()
    assert c.state == TcpState.CONNECTING
    c.run_until(deadline)
    assert c.recv() == [replace(c.rx, seq=0, ack=c.gs(0), flags=F.RST | F.ACK, window=0)]
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_TIMEOUT)]
    assert c.sock()["closed"] and c.sock()["rst"]


def test_connect_timeout_without_a_socket(conn_connecting, clock):
    c = conn_connecting
    c.run_until(clock.now + 30 * h.SEC)
    assert [s.flags for s in c.recv()] == [F.RST | F.ACK]
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_TIMEOUT)]


def test_segments_for_no_flow(engine, new_conn, clock):
    c = new_conn()
    # An ACK for nothing: <SEQ=SEG.ACK><CTL=RST> (RFC 9293 §3.10.7.1).
    c.send(seq=123, ack=456, flags=F.ACK)
    assert c.recv() == [replace(c.rx, seq=456, ack=0, flags=F.RST, window=0)]
    # No ACK: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    c.send(seq=123, ack=0, flags=F.PSH, payload=b"xyz")
    assert c.recv() == [replace(c.rx, seq=0, ack=126, flags=F.RST | F.ACK, window=0)]
    c.send(seq=123, ack=0, flags=F.FIN)
    assert c.recv() == [replace(c.rx, seq=0, ack=124, flags=F.RST | F.ACK, window=0)]
    # A SYN-ACK is not a new connection.
    c.send(seq=123, ack=77, flags=F.SYN | F.ACK)
    assert c.recv() == [replace(c.rx, seq=77, ack=0, flags=F.RST, window=0)]
    # An RST for nothing is dropped silently.
    c.send(seq=123, ack=0, flags=F.RST)
    c.recv_nothing()
    assert engine.events() == []
    assert engine.stats()["no_flow"] == 4


def test_host_data_before_the_handshake_completes(conn_syn_received):
    c = conn_syn_received
    c.host_push(b"server speaks first")
    c.recv_nothing()
    c.send()
    assert c.events() == [(TcpEvent.ESTABLISHED, c.flow, 0)]
    assert c.recv() == [c.expect(flags=F.ACK | F.PSH, payload=b"server speaks first")]


def test_host_data_and_fin_reported_with_the_connect_completion(conn_connecting, engine, clock):
    # The host peer accepted, wrote and shut down before the engine looked at the socket: epoll
    # (edge-triggered) reports OUT|IN|RDHUP once, with the connect's completion, and never
    # again. The data and the FIN must still reach the guest once it completes the handshake.
    c = conn_connecting
    c.fd = engine.socket()
    engine.attach(c.flow, c.fd, clock.now)
    engine.push(c.fd, b"server speaks first")
    engine.sock_set(c.fd, eof=True)
    engine.host_event(c.flow, HEV_OUT | HEV_IN | HEV_RDHUP, clock.now)
    synack = c.recv_one()
    assert synack.flags == F.SYN | F.ACK
    c.e_isn = synack.seq
    c.tx = replace(c.tx, seq=c.gs(0), ack=c.es(0))
    c.rx = replace(c.rx, seq=c.es(0), ack=c.gs(0), window=c.full_window)
    c.send()
    segs = c.recv()
    assert b"".join(s.payload for s in segs) == b"server speaks first"
    assert segs[-1].flags & F.FIN, segs
