"""Closing: a FIN from the guest in every state, and each closing state's way out
(RFC 9293 §3.6 and §3.10.7.4 "eighth, check the FIN bit")."""

from __future__ import annotations

from dataclasses import replace

from tests.tcp import harness as h
from tests.tcp.harness import *  # noqa: F403


def test_fin_while_connecting_is_ignored(conn_connecting):
    c = conn_connecting
    c.send(seq=c.gs(0), ack=0, flags=F.FIN)
    c.recv_nothing()
    assert c.state == TcpState.CONNECTING
    h.established(c)


def test_fin_in_syn_sent_is_ignored(conn_syn_sent):
    c = conn_syn_sent
    c.send(seq=c.g_isn, ack=c.es(0), flags=F.FIN | F.ACK)
    c.recv_nothing()
    assert c.state == TcpState.SYN_SENT


def test_fin_completing_the_handshake(conn_syn_received):
    c = conn_syn_received
    c.send(flags=F.FIN | F.ACK, payload=b"bye")
    assert c.events() == [(TcpEvent.ESTABLISHED, c.flow, 0)]
    assert c.recv() == [c.expect(ack=c.gs(4), window=c.window_after(1))]
    assert c.state == TcpState.CLOSE_WAIT
    assert c.host_take() == b"bye"
    assert c.sock()["shut_wr"]


def test_fin_in_established(conn_established):
    c = conn_established
    c.send(flags=F.FIN | F.ACK | F.PSH, payload=b"last words")
    assert c.recv() == [c.expect(ack=c.gs(11), window=c.window_after(1))]
    assert c.state == TcpState.CLOSE_WAIT
    assert c.host_take() == b"last words"
    assert c.sock()["shut_wr"]
    assert c.events() == []


def test_fin_retransmitted_in_close_wait(conn_close_wait):
    c = conn_close_wait
    c.send(seq=c.gs(0), flags=F.FIN | F.ACK, old=True)
    assert c.recv() == [c.expect()]
    assert c.state == TcpState.CLOSE_WAIT


def test_data_after_fin_is_not_delivered(conn_close_wait):
    c = conn_close_wait
    c.send(flags=F.ACK | F.PSH, payload=b"after the end")
    c.recv()
    assert c.host_take() == b""


def test_close_wait_host_keeps_sending(conn_close_wait):
    c = conn_close_wait
    c.host_push(b"response")
    assert c.recv() == [c.expect(flags=F.ACK | F.PSH, payload=b"response")]
    c.send(ack=c.es(8))
    c.host_eof()
    assert c.recv() == [c.expect(seq=c.es(8), flags=F.FIN | F.ACK)]
    assert c.state == TcpState.LAST_ACK
    c.send(ack=c.es(9))
    c.recv_nothing()
    assert c.events() == [(TcpEvent.CLOSED, c.flow, 0)]
    assert c.sock()["closed"] and not c.sock()["rst"]


def test_fin_retransmitted_in_last_ack(conn_last_ack):
    c = conn_last_ack
    c.send(seq=c.gs(0), ack=c.es(0), flags=F.FIN | F.ACK, old=True)
    assert c.recv() == [c.expect()]
    assert c.state == TcpState.LAST_ACK


def test_last_ack_ends_with_the_ack_of_our_fin(conn_last_ack, engine):
    c = conn_last_ack
    c.send(ack=c.es(0))  # does not cover our FIN yet
    c.recv_nothing()
    assert c.state == TcpState.LAST_ACK
    c.send(ack=c.es(1))
    c.recv_nothing()
    assert c.events() == [(TcpEvent.CLOSED, c.flow, 0)]
    assert c.info() is None and engine.flows() == []
    assert c.sock()["closed"] and not c.sock()["rst"]


def test_fin_in_fin_wait_1_acking_our_fin_goes_to_time_wait(conn_fin_wait_1):
    c = conn_fin_wait_1
    c.send(ack=c.es(1), flags=F.FIN | F.ACK)
    assert c.recv() == [c.expect(ack=c.gs(1), window=c.window_after(1))]
    assert c.state == TcpState.TIME_WAIT
    assert c.sock()["closed"] and not c.sock()["rst"]  # everything delivered: a clean close


def test_fin_in_fin_wait_1_crossing_ours_is_closing(conn_fin_wait_1):
    # The guest's FIN crosses ours: it does not acknowledge our FIN (RFC 9293 §3.6, case 2).
    c = conn_fin_wait_1
    c.send(flags=F.FIN | F.ACK)
    assert c.recv() == [c.expect(ack=c.gs(1), window=c.window_after(1))]
    assert c.state == TcpState.CLOSING
    assert not c.sock()["closed"]  # our FIN is still unacknowledged


def test_fin_retransmitted_in_closing(conn_closing):
    c = conn_closing
    c.send(seq=c.gs(0), flags=F.FIN | F.ACK, old=True)
    assert c.recv() == [c.expect()]
    assert c.state == TcpState.CLOSING


def test_closing_ends_in_time_wait(conn_closing):
    c = conn_closing
    c.send(ack=c.es(1))
    c.recv_nothing()
    assert c.state == TcpState.TIME_WAIT


def test_fin_in_fin_wait_2(conn_fin_wait_2):
    c = conn_fin_wait_2
    c.send(flags=F.FIN | F.ACK | F.PSH, payload=b"end")
    assert c.recv() == [c.expect(ack=c.gs(4), window=c.window_after(1))]
    assert c.state == TcpState.TIME_WAIT
    assert c.host_take() == b"end"
    assert c.sock()["shut_wr"]


def test_fin_retransmitted_in_time_wait_is_acked_and_restarts_2msl(conn_time_wait, clock):
    """RFC 9293 §3.10.7.4: in TIME-WAIT, "the only thing that can arrive in this state is a
    retransmission of the remote FIN. Acknowledge it, and restart the 2 MSL timeout." """
    c = conn_time_wait
    entered = clock.now
    clock.advance(1_500 * h.MS)  # time_wait is 2 s
    c.send(seq=c.gs(0), flags=F.FIN | F.ACK, old=True)
    assert c.recv() == [c.expect()]
    c.run_until(entered + 2 * h.SEC + 1)
    assert c.state == TcpState.TIME_WAIT, "the 2 MSL timer restarted"
    c.run_until(clock.now + 2 * h.SEC)
    assert c.state == TcpState.CLOSED
    assert c.events() == [(TcpEvent.CLOSED, c.flow, 0)]


def test_time_wait_expires(conn_time_wait, clock):
    c = conn_time_wait
    c.run_until(clock.now + 2 * h.SEC - 1)
    assert c.state == TcpState.TIME_WAIT
    c.run_until(clock.now + 1)
    assert c.state == TcpState.CLOSED
    assert c.events() == [(TcpEvent.CLOSED, c.flow, 0)]
    c.recv_nothing()


def test_new_syn_reuses_a_time_wait_tuple(conn_time_wait, new_conn, engine, clock):
    c = conn_time_wait
    c2 = new_conn(guest_isn=c.g_isn + (1 << 30), mss=1460)  # far beyond the old window
    syn = replace(c2.tx, seq=c2.g_isn, ack=0, flags=F.SYN, mss=1460)
    c2.send(syn)
    ev = engine.events()
    assert [e[0] for e in ev] == [TcpEvent.CLOSED, TcpEvent.NEW_FLOW]
    assert ev[0][1] == c.flow and ev[0][2] == 0
    assert ev[1][1] != c.flow
    assert c.info() is None
    c2.flow = ev[1][1]
    c2.syn = syn
    h.established(c2)


def test_fin_out_of_order_waits_for_the_data_before_it(conn_established):
    c = conn_established
    c.send(seq=c.gs(5), flags=F.FIN | F.ACK, payload=b"world")
    segs = c.recv()
    assert segs and all(s.ack == c.gs(0) for s in segs)
    assert c.state == TcpState.ESTABLISHED
    assert not c.sock()["shut_wr"]
    c.send(flags=F.ACK, payload=b"hello")
    assert c.recv() == [c.expect(ack=c.gs(11), window=c.window_after(1))]
    assert c.state == TcpState.CLOSE_WAIT
    assert c.host_take() == b"helloworld"
    assert c.sock()["shut_wr"]


def test_bare_fin_out_of_order(conn_established):
    c = conn_established
    c.send(seq=c.gs(3), flags=F.FIN | F.ACK)
    c.recv()
    assert c.state == TcpState.ESTABLISHED
    c.send(flags=F.ACK, payload=b"abc")
    assert c.recv() == [c.expect(ack=c.gs(4), window=c.window_after(1))]
    assert c.state == TcpState.CLOSE_WAIT


def test_last_ack_leaves_no_unread_byte_before_closing(conn_close_wait):
    """Everything acknowledged is dropped from the host socket before close(): a Linux socket
    closed with unread data resets its peer (RFC 2525 §2.17) instead of closing cleanly."""
    c = conn_close_wait
    c.engine.push(c.fd, bytes(3000))
    c.host_eof()
    segs = c.recv()
    assert segs[-1].flags == F.ACK | F.FIN
    assert c.sock()["rx_len"] == 3000
    c.send(ack=c.es(3001))  # data and FIN at once
    s = c.sock()
    assert s["closed"] and not s["rst"] and s["rx_len"] == 0
    assert c.events() == [(TcpEvent.CLOSED, c.flow, 0)]


def test_time_wait_leaves_no_unread_byte_before_closing(conn_established):
    c = conn_established
    c.engine.push(c.fd, bytes(3000))
    c.host_eof()
    assert c.recv()[-1].flags == F.ACK | F.FIN
    c.send(ack=c.es(3001), flags=F.ACK | F.FIN)
    assert c.state == TcpState.TIME_WAIT
    s = c.sock()
    assert s["closed"] and not s["rst"] and s["rx_len"] == 0


def test_time_wait_closes_the_host_socket_once_everything_is_in(conn_fin_wait_2, engine):
    c = conn_fin_wait_2
    engine.sock_set(c.fd, tx_limit=100)
    c.send(flags=F.ACK | F.FIN, payload=b"x" * 250)
    c.recv()
    assert c.state == TcpState.TIME_WAIT
    assert not c.sock()["closed"]
    got = b""
    for _ in range(5):
        got += c.host_take()
        engine.host_event(c.flow, HEV_OUT, c.clock.now)
    assert got == b"x" * 250
    s = c.sock()
    assert s["shut_wr"] and s["closed"] and not s["rst"]
    # A late RST from the guest ends TIME-WAIT; the host side, complete, is not reset.
    c.send(seq=c.gs(251), flags=F.RST)
    assert c.state == TcpState.CLOSED
    assert not c.sock()["rst"]


def test_clean_close_in_close_wait(conn_close_wait, engine, clock):
    c = conn_close_wait
    engine.close_flow(c.flow, False, clock.now)
    assert c.recv() == [c.expect(flags=F.FIN | F.ACK)]
    assert c.state == TcpState.LAST_ACK
    c.send(ack=c.es(1))
    assert c.events() == [(TcpEvent.CLOSED, c.flow, 0)]
