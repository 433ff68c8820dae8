"""Loss detection by time (RACK, RFC 8985) and the transmission log behind it: a lost
retransmission found without a timeout, the reordering window widened by D-SACKs, tail
bursts, and NewReno's partial ACKs (RFC 6582) for guests without SACK."""

from __future__ import annotations

import random

import pytest

from tests.tcp import harness as h
from tests.tcp.harness import *  # noqa: F403

REO_WINDOW = 1_000  # µs: srtt/4 is below the 1 ms floor on these scripted round trips


def _push(c, n, seed=0):
    mss = c.info()["mss"]
    data = random.Random(seed).randbytes(n * mss)
    c.host_push(data)
    segs = [s for s in c.recv() if s.payload]
    return data, mss, segs


def _payload_segs(c):
    return [s for s in c.recv() if s.payload]


def test_a_lost_retransmission_is_found_by_later_deliveries(new_conn, engine, clock):
    c = h.established(new_conn(**OPTION_SETS["sack_ws"]))
    data, mss, segs = _push(c, 8)
    assert len(segs) == 8
    e = lambda k: c.es(k * mss)  # noqa: E731
    c.send(ack=e(0), sack_blocks=((e(1), e(8)),))
    assert _payload_segs(c) == []
    c.run_until(clock.now + REO_WINDOW)
    first = _payload_segs(c)
    assert first[0].seq == e(0) and first[0].payload == data[:mss]
    # New data goes out after the retransmission; the guest delivers it, but the
    # retransmission never arrives. Sequence order cannot tell (everything above the hole is
    # SACKed already); send times can: the retransmission is older than delivered data.
    more = random.Random(1).randbytes(2 * mss)
    c.host_push(more)
    c.clock.to(clock.now + 100)
    sent = _payload_segs(c)
    assert [s.seq for s in sent] == [e(8), e(9)]
    c.send(ack=e(0), sack_blocks=((e(1), e(10)),))
    assert _payload_segs(c) == []  # within the reordering window: maybe only late
    c.run_until(clock.now + REO_WINDOW)
    again = _payload_segs(c)
    assert again and again[0].seq == e(0) and again[0].payload == data[:mss]
    st = engine.stats()
    assert st["lost_rexmits"] == 1
    assert st["timeouts"] == 0  # found without waiting for the RTO
    c.send(ack=e(10))
    assert c.info()["snd_una"] == e(10)


def _needless_retransmission_then_a_hole(c, engine, e):
    """Segment 0 of 8 looks lost and is resent, but the original was only late: the guest
    reports the retransmission as a duplicate (RFC 2883), so the recovery is undone and the
    reordering window widens. Then 8 more, with 8 missing: the window is put to the test."""
    _push(c, 8)
    c.send(ack=e(0), sack_blocks=((e(1), e(8)),))
    c.run_until(c.clock.now + REO_WINDOW)
    assert _payload_segs(c)[0].seq == e(0)
    c.send(ack=e(8), sack_blocks=((e(0), e(1)),))
    c.recv()
    st = engine.stats()
    assert st["dsacks_in"] == 1 and st["undos"] == 1
    _, _, segs = _push(c, 8, seed=2)
    assert len(segs) == 8
    c.send(ack=e(8), sack_blocks=((e(9), e(16)),))
    c.run_until(c.clock.now + REO_WINDOW)


def test_a_dsack_widens_the_reordering_window(new_conn, engine, clock):
    c = h.established(new_conn(**OPTION_SETS["sack_ws"]))
    # A first exchange with a 4 ms round trip: the window may widen up to the smoothed RTT
    # (RFC 8985 §6.2 step 4), from a quarter of the minimum RTT (here the 1 ms floor).
    _, mss, _ = _push(c, 2, seed=5)
    c.clock.to(clock.now + 4_000)
    c.send(ack=c.es(2 * mss))
    e = lambda k: c.es((2 + k) * mss)  # noqa: E731
    _needless_retransmission_then_a_hole(c, engine, e)
    assert _payload_segs(c) == []  # one window is no longer enough
    c.run_until(clock.now + REO_WINDOW)
    late = _payload_segs(c)
    assert late and late[0].seq == e(8)


def test_the_reordering_window_stays_within_the_smoothed_rtt(new_conn, engine, clock):
    # With a round trip below the 1 ms floor, D-SACKs cannot widen the window beyond it: a
    # needless retransmission costs a segment, a late one stalls the whole window.
    c = h.established(new_conn(**OPTION_SETS["sack_ws"]))
    mss = c.info()["mss"]
    e = lambda k: c.es(k * mss)  # noqa: E731
    _needless_retransmission_then_a_hole(c, engine, e)
    late = _payload_segs(c)
    assert late and late[0].seq == e(8)


def test_holes_in_one_burst_are_lost_below_the_delivered_data_only(new_conn, engine, clock):
    # The whole burst shares one send time; what lies above the highest SACKed byte was sent
    # after it and may still be in flight.
    c = h.established(new_conn(**OPTION_SETS["full"]))
    data, mss, segs = _push(c, 10)
    e = lambda k: c.es(k * mss)  # noqa: E731
    c.send(ack=e(0), sack_blocks=((e(2), e(5)),))
    c.run_until(clock.now + REO_WINDOW)
    sent = [s.seq for s in _payload_segs(c)]
    assert e(0) in sent and e(1) in sent
    assert not any(s in sent for s in (e(5), e(6), e(7), e(8), e(9)))


def test_without_sack_a_partial_ack_resends_the_next_hole_at_once(new_conn, engine, clock):
    # NewReno (RFC 6582 §3.2 step 4): segments 1 and 4 lost; three duplicate ACKs resend 1,
    # the partial ACK that follows (up to 4) shows 4 missing too.
    c = h.established(new_conn(**OPTION_SETS["plain"]))
    data, mss, segs = _push(c, 8)
    e = lambda k: c.es(k * mss)  # noqa: E731
    c.send(ack=e(1))
    c.recv()
    for _ in range(3):
        c.send(ack=e(1))
    segs = _payload_segs(c)
    assert segs and segs[0].seq == e(1)
    c.send(ack=e(4))
    segs = _payload_segs(c)
    assert segs and segs[0].seq == e(4) and segs[0].payload == data[4 * mss:5 * mss]
    assert engine.stats()["timeouts"] == 0
    c.send(ack=e(8))
    assert c.info()["snd_una"] == e(8)


def test_a_timeout_resends_the_unsacked_data_only(new_conn, engine, clock):
    c = h.established(new_conn(**OPTION_SETS["sack_ws"]))
    data, mss, segs = _push(c, 6)
    e = lambda k: c.es(k * mss)  # noqa: E731
    # The guest SACKs 2-3 and 5; then the link goes quiet: RACK sees only data sent in the same
    # burst (1 below the SACK is lost after the window), the RTO handles the rest.
    c.send(ack=e(0), sack_blocks=((e(2), e(4)), (e(5), e(6))))
    rto = c.info()["rto_us"]
    c.run_until(clock.now + rto + 1)
    resent = sorted({s.seq for s in _payload_segs(c)})
    assert e(2) not in resent and e(3) not in resent and e(5) not in resent
    assert e(0) in resent and e(1) in resent and e(4) in resent
    c.send(ack=e(6))
    assert c.info()["snd_una"] == e(6)


def test_a_dsack_for_a_link_duplicate_leaves_the_window_alone(new_conn, engine, clock):
    # The link duplicated a frame we sent once: the guest's D-SACK says nothing about our
    # reordering window (RFC 8985 §6.2 widens it for needless retransmissions only).
    c = h.established(new_conn(**OPTION_SETS["sack_ws"]))
    data, mss, segs = _push(c, 8)
    e = lambda k: c.es(k * mss)  # noqa: E731
    c.send(ack=e(8), sack_blocks=((e(3), e(4)),))
    assert engine.stats()["dsacks_in"] == 1
    _, _, segs = _push(c, 8, seed=2)
    c.send(ack=e(8), sack_blocks=((e(9), e(16)),))
    c.run_until(clock.now + REO_WINDOW)
    late = _payload_segs(c)
    assert late and late[0].seq == e(8)


def test_a_timeout_spares_data_sent_within_the_reordering_window(new_conn, engine, clock):
    # RFC 8985 §6.3: a timeout finds the first segment lost (sent an RTO ago) and any other
    # sent longer than RACK.rtt plus the reordering window ago; what left just before the timer
    # fired is in flight, and resending it would only draw D-SACKs.
    c = h.established(new_conn(**OPTION_SETS["sack_ws"]))
    data, mss, segs = _push(c, 2)
    e = lambda k: c.es(k * mss)  # noqa: E731
    rto = c.info()["rto_us"]
    start = clock.now
    c.clock.to(start + rto - REO_WINDOW // 2)  # sent half a reordering window before the timer fires
    more = random.Random(1).randbytes(2 * mss)
    c.host_push(more)
    assert [s.seq for s in _payload_segs(c)] == [e(2), e(3)]
    c.run_until(start + rto + 1)
    assert engine.stats()["timeouts"] == 1
    assert [s.seq for s in _payload_segs(c)] == [e(0)]  # cwnd is one segment after a timeout
    c.send(ack=e(1))
    resent = [s.seq for s in _payload_segs(c)]
    assert e(2) not in resent and e(3) not in resent
    c.send(ack=e(1), sack_blocks=((e(2), e(4)),))  # the recent ones arrive; 1 is missing
    c.run_until(clock.now + REO_WINDOW)
    assert e(1) in [s.seq for s in _payload_segs(c)]
    c.send(ack=e(4))
    assert c.info()["snd_una"] == e(4)
    assert engine.stats()["rexmits"] == 2


@pytest.mark.engine(init_cwnd=400)
def test_a_scoreboard_holds_more_holes_than_sack_blocks_fit(new_conn, engine, clock):
    # Every other segment of 150 lost: 75 holes, beyond the 64 a fixed list of SACKed ranges
    # would hold. What the guest SACKed is never resent, and each hole is resent once.
    c = h.established(new_conn(**OPTION_SETS["sack_ws"]))
    n = 150
    data, mss, segs = _push(c, n, seed=3)
    assert len(segs) == n
    e = lambda i: c.es(i * mss)  # noqa: E731
    # The guest holds the odd segments; three SACK blocks per ACK (RFC 2018 §3).
    held = [(e(i), e(i + 1)) for i in range(1, n, 2)]
    for j in range(0, len(held), 3):
        c.send(ack=e(0), sack_blocks=tuple(held[j:j + 3]))
    assert c.info()["sacked_bytes"] == n // 2 * mss
    c.run_until(clock.now + REO_WINDOW)
    resent = []
    for _ in range(10):
        resent += [s.seq for s in _payload_segs(c)]
        if len(resent) >= n // 2:
            break
        c.send(ack=e(0), sack_blocks=held[-3:])  # the guest answers a burst: more may follow
    assert sorted(resent) == [e(i) for i in range(0, n, 2)]  # each hole once, nothing held
    assert engine.stats()["rexmits"] == n // 2
    c.send(ack=e(n))
    assert c.info()["snd_una"] == e(n)


PTO_FLOOR = 10_000  # µs: two round trips, at least 10 ms (csrc/fn_tcp.c rto_start)


@pytest.mark.engine(tail_loss_probe=True)
def test_a_tail_loss_probe_resends_the_last_segment(new_conn, engine, clock):
    # RFC 8985 §7: the last segments of a burst are lost and nothing follows them to show it;
    # two round trips on, the last one is resent so the guest's answer starts recovery.
    c = h.established(new_conn(**OPTION_SETS["sack_ws"]))
    data, mss, segs = _push(c, 4)
    e = lambda k: c.es(k * mss)  # noqa: E731
    c.clock.to(clock.now + 200)
    c.send(ack=e(2))
    c.run_until(clock.now + PTO_FLOOR + 1)
    assert [s.seq for s in _payload_segs(c)] == [e(3)]
    st = engine.stats()
    assert st["tail_probes"] == 1 and st["timeouts"] == 0
    c.send(ack=e(2), sack_blocks=((e(3), e(4)),))  # the probe shows segment 2 missing
    c.run_until(clock.now + REO_WINDOW)
    assert [s.seq for s in _payload_segs(c)] == [e(2)]
    c.send(ack=e(4))
    assert c.info()["snd_una"] == e(4) and engine.stats()["timeouts"] == 0


@pytest.mark.engine(tail_loss_probe=True)
def test_a_lost_retransmission_with_nothing_after_it_is_probed_not_timed_out(new_conn, engine, clock):
    # The hole's retransmission is lost and no new data follows it (the host has sent all it
    # had), so no later delivery lets RACK see the loss. The probe, armed in recovery too,
    # resends the hole itself (the tail is SACKed already) two round trips later, well before
    # the RTO, and without the timeout's collapse of the window.
    c = h.established(new_conn(**OPTION_SETS["sack_ws"]))
    data, mss, segs = _push(c, 8)
    e = lambda k: c.es(k * mss)  # noqa: E731
    c.clock.to(clock.now + 200)
    c.send(ack=e(1), sack_blocks=((e(2), e(8)),))  # segment 1 is missing
    c.run_until(clock.now + REO_WINDOW)
    assert [s.seq for s in _payload_segs(c)] == [e(1)]
    cwnd = c.info()["cwnd"]
    c.run_until(clock.now + PTO_FLOOR + 1)
    again = _payload_segs(c)
    assert [s.seq for s in again] == [e(1)] and again[0].payload == data[mss:2 * mss]
    st = engine.stats()
    assert st["tail_probes"] == 1 and st["timeouts"] == 0
    c.send(ack=e(8))
    assert c.info()["snd_una"] == e(8) and c.info()["cwnd"] >= cwnd


def _lose(c, n, lost):
    """Send n segments; the guest gets all but `lost` (SACKing the rest, three blocks per ACK,
    RFC 2018 §3). Returns the window before, the window after the loss detection, and what was
    resent."""
    data, mss, segs = _push(c, n, seed=4)
    e = lambda k: c.es(k * mss)  # noqa: E731
    cwnd = c.info()["cwnd"]
    held, k = [], 0
    while k < n:
        if k in lost:
            k += 1
            continue
        j = k
        while j < n and j not in lost:
            j += 1
        held.append((e(k), e(j)))
        k = j
    for j in range(0, len(held), 3):
        c.send(ack=e(0) if 0 in lost else e(min(lost)), sack_blocks=tuple(held[j:j + 3]))
    c.run_until(c.clock.now + REO_WINDOW)
    resent = sorted((s.seq - e(0)) // mss for s in _payload_segs(c))
    return cwnd, c.info()["cwnd"], resent


@pytest.mark.engine(init_cwnd=40)
def test_scattered_single_losses_keep_the_window(new_conn, engine, clock):
    # Six separate one-segment holes in one window: link noise (a corrupt or dropped frame),
    # not the guest's backlog overflowing. All are resent; the window stays.
    c = h.established(new_conn(**OPTION_SETS["sack_ws"]))
    before, after, resent = _lose(c, 30, {0, 5, 10, 15, 20, 25})
    assert resent == [0, 5, 10, 15, 20, 25]
    assert after == before


@pytest.mark.engine(init_cwnd=40)
def test_a_run_of_lost_segments_reduces_the_window(new_conn, engine, clock):
    # Three segments in a row: the tail of a burst dropped by an overflowing backlog.
    c = h.established(new_conn(**OPTION_SETS["sack_ws"]))
    before, after, resent = _lose(c, 30, {0, 1, 2})
    assert resent == [0, 1, 2]
    mss = c.info()["mss"]
    assert after == 30 * mss * 7 // 10 < before  # CUBIC's beta (RFC 9438 §4.6) of the flight
