"""State timers: TIME-WAIT, FIN-WAIT-2 / LAST-ACK / CLOSING bounds, keepalive (RFC 1122
§4.2.3.6), and no flow outliving its timers whatever state it was left in."""

from __future__ import annotations

import pytest

from fastnet import _tcp
from tests.tcp import harness as h
from tests.tcp.harness import *  # noqa: F403


def run_all(c, limit=100):
    """Fire every timer at its deadline; the segments sent, with the time they went out."""
    out = []
    for _ in range(limit):
        nxt = c.engine.timers(c.clock.now)
        out += [(c.clock.now, s) for s in c.recv()]
        if not nxt:
            return out
        c.clock.to(nxt)
    raise AssertionError("timers never settle")


def test_timers_report_the_next_deadline(conn_time_wait, engine, clock):
    c = conn_time_wait
    t_end = clock.now + 2 * h.SEC
    # A cancelled timer (the FIN's RTO) may still wake us early, never late, and uselessly.
    nxt = engine.timers(clock.now)
    while nxt < t_end:
        clock.to(nxt)
        nxt = engine.timers(clock.now)
        c.recv_nothing()
        assert c.state == TcpState.TIME_WAIT
    assert nxt == t_end


def test_time_wait_frees_the_flow(conn_time_wait, engine, clock):
    c = conn_time_wait
    t0 = clock.now
    assert run_all(c) == []
    assert clock.now == t0 + 2 * h.SEC
    assert c.events() == [(TcpEvent.CLOSED, c.flow, 0)]
    assert engine.flows() == []
    assert engine.stats()["flows_active"] == 0


@pytest.mark.parametrize("state", ["fin_wait_1", "fin_wait_2", "last_ack", "closing"])
def test_closing_states_are_bounded_by_fin_timeout(state, conn, engine, clock):
    c = getattr(h, state)(conn)
    t0 = clock.now
    sent = run_all(c)
    # FIN retransmissions may happen first; the last word is an RST at the FIN timeout.
    when, last = sent[-1]
    assert last.flags == F.RST | F.ACK
    assert when == t0 + 60 * h.SEC
    assert all(s.flags & F.FIN for _, s in sent[:-1])
    assert c.events()[-1] == (TcpEvent.CLOSED, c.flow, _tcp.CLOSE_TIMEOUT)
    assert c.sock()["closed"] and c.sock()["rst"]


def test_fin_wait_2_lives_while_the_guest_keeps_sending(conn_fin_wait_2, clock):
    """A half-closed connection is not dead: the guest still sends (the host only shut its
    write side), so the FIN-WAIT-2 bound counts from the guest's last segment."""
    c = conn_fin_wait_2
    t0 = clock.now
    off = 0
    while clock.now < t0 + 3 * 60 * h.SEC:
        clock.advance(10 * h.SEC)
        c.timers()
        c.send(seq=c.gs(off), payload=b"upload")
        off += 6
        assert c.recv() == [c.expect(ack=c.gs(off))]
    assert c.state == TcpState.FIN_WAIT_2
    assert c.host_take() == b"upload" * (off // 6)
    # Silence: then the bound applies.
    sent = run_all(c)
    assert [s.flags for _, s in sent] == [F.RST | F.ACK]
    assert sent[0][0] == clock.now and clock.now - (t0 + 180 * h.SEC) <= 60 * h.SEC


@pytest.mark.engine(idle_timeout=10.0)
def test_keepalive_probes_then_reset(conn_established, engine, clock):
    c = conn_established
    t0 = clock.now
    c.run_until(t0 + 10 * h.SEC - 1)
    c.recv_nothing()
    c.run_until(t0 + 10 * h.SEC)
    assert c.recv() == [c.expect(seq=c.es(-1))]  # RFC 1122 §4.2.3.6: a probe below SND.NXT
    # The guest answers: the idle timer starts over.
    clock.advance(1 * h.SEC)
    c.send()
    c.recv_nothing()
    t1 = clock.now
    c.run_until(t1 + 10 * h.SEC - 1)
    c.recv_nothing()
    sent = run_all(c)
    times = [t - t1 for t, _ in sent]
    assert times == [10 * h.SEC + k * 75 * h.SEC for k in range(10)]
    assert [s.flags for _, s in sent] == [F.ACK] * 9 + [F.RST | F.ACK]
    assert all(s.seq == c.es(-1) for _, s in sent[:9])
    assert c.events() == [(TcpEvent.CLOSED, c.flow, _tcp.CLOSE_TIMEOUT)]
    assert c.sock()["closed"] and c.sock()["rst"]


@pytest.mark.engine(idle_timeout=10.0)
def test_keepalive_in_close_wait(conn_close_wait, clock):
    c = conn_close_wait
    t0 = clock.now
    c.run_until(t0 + 10 * h.SEC)
    assert [s.seq for s in c.recv()] == [c.es(-1)]


BUILDERS = ["connecting", "syn_received", "established", "close_wait", "fin_wait_1", "fin_wait_2",
            "last_ack", "closing", "time_wait", "syn_sent"]


@pytest.mark.parametrize("state", BUILDERS)
@pytest.mark.parametrize("with_data", [False, True])
def test_no_flow_outlives_its_timers(state, with_data, conn, engine, clock):
    c = getattr(h, state)(conn)
    if with_data and c.fd >= 0 and not c.sock()["closed"]:
        engine.push(c.fd, bytes(5000))
        engine.host_event(c.flow, HEV_IN, clock.now)
    h.drain(engine, clock)
    assert engine.flows() == []
    closed = [e for e in engine.events() if e[0] == TcpEvent.CLOSED]
    assert [e[1] for e in closed] == [c.flow]
    if c.fd >= 0:
        assert c.sock()["closed"]
    assert engine.stats()["flows_active"] == 0
