"""CONNECTING (fastnet's own state, between the guest's SYN and the host connect's result):
the guest's SYN is held, its retransmissions absorbed, everything else ignored."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fastnet import _tcp
from fastnet.errors import ConnectionStateError
from tests.tcp import harness as h
from tests.tcp.harness import *  # noqa: F403


def test_guest_syn_reports_new_flow(conn_connecting, engine):
    c = conn_connecting
    info = c.info()
    assert info["state"] == TcpState.CONNECTING
    assert info["fd"] == -1
    assert info["guest"] == (GUEST_IP, GUEST_PORT) and info["remote"] == (REMOTE_IP, REMOTE_PORT)
    assert engine.stats()["flows_active"] == 1


def test_retransmitted_syns_are_absorbed(conn_connecting, engine, clock):
    c = conn_connecting
    for _ in range(3):
        clock.advance(h.SEC)
        c.send(c.syn)
        c.recv_nothing()
    assert engine.events() == []
    assert engine.stats()["syn_absorbed"] == 3
    assert len(engine.flows()) == 1
    # The host connect still completes normally afterwards.
    h.established(c)


def test_close_flow_while_connecting_is_rst(conn_connecting, engine, clock):
    c = conn_connecting
    engine.close_flow(c.flow, False, clock.now)
    assert c.recv() == [replace(c.rx, seq=0, ack=c.gs(0), flags=F.RST | F.ACK, window=0)]
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_ADMIN)]


def test_host_in_event_does_not_complete_the_connect(conn_connecting, engine, clock):
    c = conn_connecting
    c.fd = engine.socket()
    engine.attach(c.flow, c.fd, clock.now)
    engine.host_event(c.flow, HEV_IN, clock.now)
    c.recv_nothing()
    assert c.state == TcpState.CONNECTING
    engine.host_event(c.flow, HEV_OUT, clock.now)
    assert [s.flags for s in c.recv()] == [F.SYN | F.ACK]


def test_guest_gives_up_while_connecting(conn_connecting, engine, clock):
    c = conn_connecting
    c.fd = engine.socket()
    engine.attach(c.flow, c.fd, clock.now)
    c.send(seq=c.gs(5), ack=0, flags=F.RST)  # not the SYN's seq + 1: ignored
    assert c.state == TcpState.CONNECTING
    c.send(seq=c.gs(0), ack=0, flags=F.RST)
    c.recv_nothing()
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_GUEST_RST)]
    assert c.sock()["closed"] and c.sock()["rst"]


@pytest.mark.parametrize("flags,payload", [(F.ACK, b""), (F.ACK | F.PSH, b"early"), (F.PSH, b"x"),
                                           (F.SYN | F.ACK, b"")])
def test_other_segments_while_connecting_are_ignored(conn_connecting, engine, flags, payload):
    c = conn_connecting
    c.send(seq=c.gs(0), ack=12345, flags=flags, payload=payload)
    c.recv_nothing()
    assert c.state == TcpState.CONNECTING
    assert engine.events() == []
    h.established(c)
    assert c.host_take() == b""


def test_a_different_syn_while_connecting_is_ignored(conn_connecting, engine):
    c = conn_connecting
    c.send(replace(c.syn, seq=c.g_isn + 5000))
    c.recv_nothing()
    assert engine.events() == []
    assert engine.stats()["syn_absorbed"] == 0
    h.established(c)


def test_attach_twice_raises(conn_connecting, engine, clock):
    c = conn_connecting
    c.fd = engine.socket()
    engine.attach(c.flow, c.fd, clock.now)
    with pytest.raises(ConnectionStateError):
        engine.attach(c.flow, engine.socket(), clock.now)
    assert c.info()["fd"] == c.fd


def test_attach_after_the_connect_completed_raises(conn_syn_received, engine, clock):
    with pytest.raises(ConnectionStateError):
        engine.attach(conn_syn_received.flow, engine.socket(), clock.now)


def test_connect_done_by_hangup_with_error(conn_connecting, engine, clock):
    c = conn_connecting
    c.fd = engine.socket()
    engine.attach(c.flow, c.fd, clock.now)
    engine.sock_set(c.fd, error=errno.ECONNREFUSED)
    engine.host_event(c.flow, _tcp.HEV_HUP | HEV_ERR, clock.now)
    assert [s.flags for s in c.recv()] == [F.RST | F.ACK]
    assert c.events() == [(TcpEvent.CLOSED, c.flow, errno.ECONNREFUSED)]
