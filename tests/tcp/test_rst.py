"""Resets: RFC 5961 §3 (RST) and §4 (SYN) in synchronized states, and host failures turned
into an RST to the guest."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fastnet import _tcp
from tests.tcp import harness as h
from tests.tcp.harness import *  # noqa: F403


def rst_for(c, seq, **kw):
    return replace(c.rx, seq=seq, flags=F.RST | F.ACK, window=0, timestamps=None, **kw)


@pytest.mark.parametrize("flags", [F.RST, F.RST | F.ACK])
def test_rst_at_rcv_nxt_closes(conn_established, engine, flags):
    c = conn_established
    c.send(flags=flags)
    c.recv_nothing()
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_GUEST_RST)]
    assert c.sock()["closed"] and c.sock()["rst"]
    assert engine.stats()["rst_in"] == 1
    assert c.info() is None


def test_rst_with_an_old_timestamp_still_counts(conn_established):
    c = conn_established
    c.send(flags=F.RST, timestamps=(1, 0) if c.ts else None)  # PAWS does not apply to RST
    assert c.state == TcpState.CLOSED


@pytest.mark.parametrize("off", [1, 1000, (1 << 21) - 1])
def test_rst_in_window_gets_a_challenge_ack(conn_established, engine, off):
    c = conn_established
    c.send(seq=c.gs(off), flags=F.RST)
    assert c.recv() == [c.expect()]
    assert c.state == TcpState.ESTABLISHED
    assert engine.stats()["challenge_acks"] == 1
    assert not c.sock()["closed"]
    # The guest answers the challenge with the exact RST.
    c.send(flags=F.RST)
    assert c.state == TcpState.CLOSED


@pytest.mark.parametrize("off", [-1, -1000, 1 << 21, 1 << 30])
def test_rst_out_of_window_is_ignored(conn_established, engine, off):
    c = conn_established
    c.send(seq=c.gs(off), flags=F.RST)
    c.recv_nothing()
    assert c.state == TcpState.ESTABLISHED
    assert engine.stats()["challenge_acks"] == 0


@pytest.mark.parametrize("off", [0, 100, -100, 1 << 30])
def test_syn_in_established_gets_a_challenge_ack(conn_established, engine, off):
    c = conn_established
    c.send(seq=c.gs(off), ack=0, flags=F.SYN, mss=1460, old=True)
    assert c.recv() == [c.expect()]
    assert c.state == TcpState.ESTABLISHED
    assert not c.sock()["closed"]


def test_rst_in_syn_received(conn_syn_received, engine):
    c = conn_syn_received
    c.send(seq=c.gs(7), flags=F.RST)
    assert c.state == TcpState.SYN_RECEIVED
    c.recv()
    c.send(flags=F.RST)
    c.recv_nothing()
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_GUEST_RST)]
    assert c.sock()["closed"] and c.sock()["rst"]


@pytest.mark.parametrize("state", ["close_wait", "fin_wait_1", "fin_wait_2", "last_ack", "closing", "time_wait"])
def test_rst_in_closing_states(state, conn, engine):
    c = getattr(h, state)(conn)
    c.send(flags=F.RST)
    c.recv_nothing()
    assert c.state == TcpState.CLOSED
    ev = c.events()
    assert ev == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_GUEST_RST)]


def test_host_reset_while_reading_resets_the_guest(conn_established, engine):
    c = conn_established
    c.host_push(b"some")
    c.recv()
    engine.sock_set(c.fd, io_error=errno.ECONNRESET)
    engine.host_event(c.flow, HEV_IN, c.clock.now)
    assert c.recv() == [rst_for(c, c.es(4))]
    assert c.events() == [(TcpEvent.CLOSED, c.flow, errno.ECONNRESET)]
    assert c.sock()["closed"]


def test_host_reset_while_writing_resets_the_guest(conn_established, engine):
    c = conn_established
    engine.sock_set(c.fd, io_error=errno.ECONNRESET)
    c.send(flags=F.ACK | F.PSH, payload=b"to a dead socket")
    assert c.recv() == [rst_for(c, c.es(0), ack=c.gs(16))]
    assert c.events() == [(TcpEvent.CLOSED, c.flow, errno.ECONNRESET)]


def test_host_error_event_resets_the_guest(conn_established, engine):
    c = conn_established
    engine.sock_set(c.fd, error=errno.ETIMEDOUT)
    engine.host_event(c.flow, HEV_ERR, c.clock.now)
    assert c.recv() == [rst_for(c, c.es(0))]
    assert c.events() == [(TcpEvent.CLOSED, c.flow, errno.ETIMEDOUT)]


def test_host_error_event_without_an_error_is_harmless(conn_established, engine):
    c = conn_established
    engine.host_event(c.flow, HEV_ERR, c.clock.now)
    c.recv_nothing()
    assert c.state == TcpState.ESTABLISHED
