"""Fixtures for the TCP engine tests: a fake clock, an in-memory engine, and one connection
built directly in each state (smoltcp's ``socket_established()`` and friends).

``@pytest.mark.engine(rx_buf=..., max_retries=...)`` on a test changes the engine's
configuration; ``@pytest.mark.guest(timestamps=True, ...)`` the options of the guest's SYN.
Every engine is checked at teardown: once timers have run past every deadline, no flow is
left (no leaks, whatever state the test ended in). Frames of a failed test go to a .pcap.
"""

from __future__ import annotations

import pytest

from tests.tcp import harness as h


def pytest_configure(config):
    config.addinivalue_line("markers", "engine(**cfg): TcpEngine configuration for this test")
    config.addinivalue_line("markers", "guest(**opts): the options of the guest's SYN (harness.Conn)")


@pytest.fixture
def clock():
    return h.Clock()


@pytest.fixture
def engine_cfg(request):
    m = request.node.get_closest_marker("engine")
    return dict(m.kwargs) if m else {}


@pytest.fixture
def conns():
    """Every Conn of the test (their frames go to the .pcap of a failed test)."""
    return []


@pytest.fixture
def engine(engine_cfg, clock, conns, pcap_on_failure):
    e = h.make_engine(**engine_cfg)
    yield e
    for c in conns:
        for fr in c.frames_seen:
            pcap_on_failure(fr)
    # No flow outlives its timers.
    h.drain(e, clock)
    assert e.flows() == [], "flows left after every timer ran"


@pytest.fixture
def guest_opts(request):
    opts = dict(h.OPTION_SETS["full"])
    m = request.node.get_closest_marker("guest")
    if m:
        opts.update(m.kwargs)
    return opts


@pytest.fixture
def new_conn(engine, clock, engine_cfg, guest_opts, conns):
    """A factory of connections on the test's engine (not yet started)."""

    def make(**kw):
        # Naming any SYN option replaces the whole default set (unnamed ones are absent).
        syn_keys = {"mss", "window_scale", "sack_permitted", "timestamps"}
        o = {} if syn_keys & kw.keys() else dict(guest_opts)
        o.update(kw)
        o.setdefault("rx_buf", engine_cfg.get("rx_buf", 1 << 21))
        c = h.Conn(engine, clock, **o)
        conns.append(c)
        return c

    return make


@pytest.fixture
def conn(new_conn):
    return new_conn()


@pytest.fixture
def conn_connecting(conn):
    return h.connecting(conn)


@pytest.fixture
def conn_syn_received(conn):
    return h.syn_received(conn)


@pytest.fixture(params=list(h.OPTION_SETS))
def conn_established(request, new_conn):
    opts = dict(h.OPTION_SETS[request.param])
    m = request.node.get_closest_marker("guest")
    if m:
        opts.update(m.kwargs)
    c = new_conn(**opts)
    c.variant = request.param
    return h.established(c)


@pytest.fixture
def conn_close_wait(conn):
    return h.close_wait(conn)


@pytest.fixture
def conn_fin_wait_1(conn):
    return h.fin_wait_1(conn)


@pytest.fixture
def conn_fin_wait_2(conn):
    return h.fin_wait_2(conn)


@pytest.fixture
def conn_last_ack(conn):
    return h.last_ack(conn)


@pytest.fixture
def conn_closing(conn):
    return h.closing(conn)


@pytest.fixture
def conn_time_wait(conn):
    return h.time_wait(conn)


@pytest.fixture
def conn_syn_sent(conn):
    return h.syn_sent(conn)
