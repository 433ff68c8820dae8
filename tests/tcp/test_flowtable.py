"""The flow table under load: tens of thousands of flows, slot reuse with generations,
the max_flows limit."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from fastnet import _tcp
from fastnet.errors import ConnectionStateError
from tests.tcp import harness as h
from tests.tcp.harness import *  # noqa: F403

N = 20_000


def syn(port, isn=None, src_ip=GUEST_IP):
    return replace(h.SEND_TEMPL, src_port=port, src_ip=src_ip, seq=isn if isn is not None else port * 7919,
                   ack=0, flags=int(F.SYN), mss=1460)


def open_many(engine, clock, ports, src_ip=GUEST_IP):
    for p in ports:
        engine.input(bytes(syn(p, src_ip=src_ip).frame()), clock.now)
    engine.flush(clock.now)
    ev = engine.events()
    assert engine.take_frames() == []
    return ev


def test_twenty_thousand_syns(engine, clock):
    ports = list(range(1024, 1024 + N))
    ev = open_many(engine, clock, ports)
    assert len(ev) == N
    assert all(e[0] == TcpEvent.NEW_FLOW for e in ev)
    assert [e[3][1] for e in ev] == ports
    assert len({e[1] for e in ev}) == N
    assert engine.stats()["flows_active"] == N
    by_port = {e[3][1]: e[1] for e in ev}
    # Lookups land on the right flow: complete a handful of handshakes among the crowd.
    for port in (1024, 5000, 12345, 1024 + N - 1):
        flow = by_port[port]
        assert engine.flow(flow)["guest"] == (GUEST_IP, port)
        fd = engine.socket()
        engine.attach(flow, fd, clock.now)
        engine.host_event(flow, HEV_OUT, clock.now)
        frames = h.recv(engine)
        assert len(frames) == 1, frames
        sa = frames[0]
        assert (sa.dst_port, sa.ack, sa.flags) == (port, (port * 7919 + 1) % 2**32, F.SYN | F.ACK)
        h.send(engine, clock.now, src_port=port, seq=port * 7919 + 1, ack=sa.seq + 1, payload=str(port).encode())
        [ack] = h.recv(engine)
        assert (ack.dst_port, ack.flags, ack.ack) == (port, F.ACK, (port * 7919 + 1 + len(str(port))) % 2**32)
        assert engine.take(fd) == str(port).encode()
        assert engine.events() == [(TcpEvent.ESTABLISHED, flow, 0, (GUEST_IP, port, REMOTE_IP, REMOTE_PORT))]
    # Retransmitted SYNs find their flows (absorbed, no new flow).
    for port in ports[500::1000]:
        engine.input(bytes(syn(port).frame()), clock.now)
    engine.flush(clock.now)
    assert engine.events() == []
    assert engine.stats()["syn_absorbed"] == len(ports[500::1000])


def test_slots_are_freed_and_reused(engine, clock):
    ports = list(range(2000, 2000 + N))
    ev = open_many(engine, clock, ports)
    old = {e[3][1]: e[1] for e in ev}
    # Refuse every other flow silently: their slots are freed.
    for port in ports[::2]:
        engine.refuse(old[port], _tcp.Refusal.DROP, clock.now)
    closed = engine.events()
    assert len(closed) == N // 2 and all(e[0] == TcpEvent.CLOSED for e in closed)
    assert engine.stats()["flows_active"] == N // 2
    # A freed id no longer matches anything.
    dead = old[ports[0]]
    assert engine.flow(dead) is None
    with pytest.raises(ConnectionStateError):
        engine.attach(dead, engine.socket(), clock.now)
    with pytest.raises(ConnectionStateError):
        engine.refuse(dead, _tcp.Refusal.RST, clock.now)
    with pytest.raises(ConnectionStateError):
        engine.close_flow(dead, True, clock.now)
    engine.host_event(dead, HEV_OUT, clock.now)  # ignored
    h.recv_nothing(engine)
    # New flows (another guest address) take the freed slots, under new generations.
    other = ipaddress.IPv4Address("192.168.65.4")
    ev2 = open_many(engine, clock, ports[::2], src_ip=other)
    assert len(ev2) == N // 2
    new_ids = {e[1] for e in ev2}
    assert {i & 0xFFFFFFFF for i in new_ids} == {old[p] & 0xFFFFFFFF for p in ports[::2]}
    assert not new_ids & set(old.values())
    assert engine.flow(dead) is None
    # The surviving old flows are intact and distinct from the new ones on the same ports.
    for port in ports[1:200:2]:
        assert engine.flow(old[port])["guest"] == (GUEST_IP, port)
    for e in ev2[:100]:
        assert engine.flow(e[1])["guest"] == (other, e[3][1])
    assert engine.stats()["flows_active"] == N


@pytest.mark.engine(max_flows=100)
def test_max_flows_exceeded_is_rst(engine, clock):
    ev = open_many(engine, clock, range(3000, 3100))
    assert len(ev) == 100
    c = h.Conn(engine, clock, port=4000, guest_isn=555)
    c.send(replace(c.tx, seq=555, ack=0, flags=F.SYN, mss=1460))
    assert c.recv() == [replace(c.rx, seq=0, ack=556, flags=F.RST | F.ACK, window=0)]
    assert engine.events() == []
    assert engine.stats()["nomem"] >= 1
    # Freeing one makes room again.
    engine.refuse(ev[0][1], _tcp.Refusal.DROP, clock.now)
    engine.events()
    c.send(replace(c.tx, seq=555, ack=0, flags=F.SYN, mss=1460))
    assert [e[0] for e in engine.events()] == [TcpEvent.NEW_FLOW]


def test_flow_ids_of_closed_flows_do_not_match_their_successor(engine, new_conn, clock):
    c = h.established(new_conn())
    first = c.flow
    c.send(flags=F.RST)
    assert engine.flow(first) is None
    assert [e[0] for e in engine.events()] == [TcpEvent.CLOSED]
    c2 = h.established(new_conn(guest_isn=99))
    assert c2.flow != first and (c2.flow & 0xFFFFFFFF) == (first & 0xFFFFFFFF)
    with pytest.raises(ConnectionStateError):
        engine.close_flow(first, True, clock.now)
    assert c2.state == TcpState.ESTABLISHED
