"""Out-of-order data from the guest: held in the ring at its place, SACKed (RFC 2018), an
immediate duplicate ACK each (RFC 5681 §4.2), delivered once the gap fills, duplicates and
overlaps trimmed, and a bounded number of holes (the assembler holds 64 ranges)."""

from __future__ import annotations

import random

import pytest

from tests.tcp import harness as h
from tests.tcp.harness import *  # noqa: F403


def sack(c, *ranges):
    """Expected SACK blocks (guest data offsets) when SACK is in use."""
    if not c.sack:
        return ()
    return tuple((c.gs(a), c.gs(b)) for a, b in ranges)


def test_out_of_order_is_held_then_delivered(conn_established, engine):
    c = conn_established
    c.send(seq=c.gs(5), payload=b"world")
    # Exactly one immediate duplicate ACK, with the block held.
    assert c.recv() == [c.expect(ack=c.gs(0), sack_blocks=sack(c, (5, 10)))]
    assert c.host_take() == b""
    assert c.info()["ooo_ranges"] == 1
    c.send(seq=c.gs(0), payload=b"hello")
    assert c.recv() == [c.expect(ack=c.gs(10))]
    assert c.host_take() == b"helloworld"
    assert engine.stats()["ooo_segs"] == 1


def test_each_out_of_order_segment_gets_one_duplicate_ack(conn_established):
    c = conn_established
    segs = [c.seg(seq=c.gs(100 * i), payload=bytes([i]) * 100) for i in range(1, 5)]
    c.send_batch(segs)
    acks = c.recv()
    if c.sack:
        # With SACK one ACK at the end of the batch carries it all (the guest's loss detection
        # reads SACK blocks, not duplicate counts).
        assert [(s.ack, s.sack_blocks) for s in acks] == [(c.gs(0), ((c.gs(100), c.gs(500)),))]
    else:
        # One per segment (the guest counts them for fast retransmit), not one more at the flush.
        assert [s.ack for s in acks] == [c.gs(0)] * 4
    c.send(seq=c.gs(0), payload=bytes(100))
    assert [s.ack for s in c.recv()] == [c.gs(500)]
    assert c.host_take() == b"".join(bytes([i]) * 100 for i in range(5))


@pytest.mark.parametrize("variant", ["full", "sack_ws"])
def test_sack_blocks_most_recent_first(new_conn, variant):
    c = h.established(new_conn(**OPTION_SETS[variant]))
    for a in (10, 30, 50, 70, 90):
        c.send(seq=c.gs(a), payload=bytes(5))
        acks = c.recv()
        assert acks[0].sack_blocks[0] == (c.gs(a), c.gs(a + 5)), "the newest block first"
    maxb = 3 if c.ts else 4
    assert len(acks[-1].sack_blocks) == maxb
    # Extending an older block makes it the most recent.
    c.send(seq=c.gs(35), payload=bytes(10))
    acks = c.recv()
    assert acks[0].sack_blocks[0] == (c.gs(30), c.gs(45))
    assert set(acks[0].sack_blocks) <= {(c.gs(a), c.gs(b)) for a, b in
                                         [(10, 15), (30, 45), (50, 55), (70, 75), (90, 95)]}


@pytest.mark.parametrize("variant", ["full", "sack_ws"])
def test_every_range_a_batch_touched_is_reported(new_conn, variant):
    # Five holes opened by one batch: the end of the batch reports all five ranges, three (or
    # four) blocks per ACK, the newest first; a range the guest never hears of would look
    # lost to it and be resent.
    c = h.established(new_conn(**OPTION_SETS[variant]))
    starts = (10, 30, 50, 70, 90)
    c.send_batch([c.seg(seq=c.gs(a), payload=bytes(5)) for a in starts])
    acks = c.recv()
    maxb = 3 if c.ts else 4
    assert len(acks) == 2 and all(s.ack == c.gs(0) for s in acks)
    assert acks[0].sack_blocks[:maxb] == tuple((c.gs(a), c.gs(a + 5)) for a in reversed(starts))[:maxb]
    reported = {b for s in acks for b in s.sack_blocks}
    assert reported == {(c.gs(a), c.gs(a + 5)) for a in starts}


@pytest.mark.parametrize("variant", ["full", "sack_ws"])
def test_sack_blocks_repeat_the_previous_first_blocks(new_conn, variant):
    # RFC 2018 §4: after the newest block come the blocks reported first in the previous ACKs,
    # so a lost ACK costs no information; the lowest ranges only fill what is left.
    c = h.established(new_conn(**OPTION_SETS[variant]))
    for a in (10, 30, 50, 70):
        c.send(seq=c.gs(a), payload=bytes(5))
        acks = c.recv()
    assert acks[-1].sack_blocks[:3] == ((c.gs(70), c.gs(75)), (c.gs(50), c.gs(55)), (c.gs(30), c.gs(35)))


def test_no_sack_blocks_without_sack_permitted(new_conn):
    c = h.established(new_conn(mss=1460, timestamps=True))
    c.send(seq=c.gs(10), payload=b"x")
    assert c.recv()[0].sack_blocks == ()


def test_duplicates_and_overlaps_are_trimmed(conn_established, engine):
    c = conn_established
    data = bytes(range(200))
    c.send(seq=c.gs(50), payload=data[50:100])
    c.send(seq=c.gs(50), payload=data[50:100])   # exact duplicate
    c.send(seq=c.gs(40), payload=data[40:80])    # overlaps the front of the held range
    c.send(seq=c.gs(90), payload=data[90:130])   # overlaps its end
    c.send(seq=c.gs(150), payload=data[150:200])
    c.send(seq=c.gs(120), payload=data[120:160])  # bridges two ranges
    c.recv()
    assert c.info()["ooo_ranges"] == 1
    c.send(seq=c.gs(0), payload=data[0:45])      # fills the gap and overlaps
    assert c.recv() == [c.expect(ack=c.gs(200))]
    assert c.host_take() == data


@pytest.mark.engine(rx_buf=8192)
def test_ooo_data_beyond_the_window_is_cut(new_conn, engine):
    c = h.established(new_conn(mss=1460, sack_permitted=True, rx_buf=8192))
    c.send(seq=c.gs(8000), payload=bytes(range(256)) * 2)  # 8000..8512, the window ends at 8192
    assert c.recv() == [c.expect(sack_blocks=((c.gs(8000), c.gs(8192)),))]
    c.send(seq=c.gs(0), payload=bytes(8000))
    assert c.recv()[-1].ack == c.gs(8192)
    assert c.host_take() == bytes(8000) + (bytes(range(256)) * 2)[:192]


def test_more_holes_than_the_assembler_holds(conn_established, engine):
    c = conn_established
    data = random.Random(1).randbytes(140 * 100)
    # Every other 100-byte piece from 1: 70 holes; 64 ranges are held, the rest dropped.
    for i in range(1, 140, 2):
        c.send(seq=c.gs(100 * i), payload=data[100 * i:100 * (i + 1)])
        acks = c.recv()
        assert [s.ack for s in acks] == [c.gs(0)]
    assert c.info()["ooo_ranges"] == 64
    assert engine.stats()["ooo_dropped"] == 6
    # The guest retransmits everything in order: the stream is intact.
    for i in range(0, 140):
        c.send(seq=c.gs(100 * i), payload=data[100 * i:100 * (i + 1)])
        c.recv()
    assert c.host_take() == data
    assert c.info()["ooo_ranges"] == 0
    assert c.recv() == []


@pytest.mark.parametrize("seed", range(6))
def test_random_order_with_duplicates(new_conn, seed):
    c = h.established(new_conn(**OPTION_SETS["full"]))
    rng = random.Random(seed)
    data = rng.randbytes(30_000)
    pieces, off = [], 0
    while off < len(data):
        n = rng.randint(1, 1448)
        pieces.append((off, data[off:off + n]))
        off += n
    order = pieces + rng.sample(pieces, len(pieces) // 4)  # a quarter sent twice
    rng.shuffle(order)
    got = bytearray()
    for k in range(0, len(order), 3):
        c.send_batch([c.seg(seq=c.gs(o), payload=p) for o, p in order[k:k + 3]])
        c.recv()
        got += c.host_take()
    # Whatever did not fit (64 ranges) comes again, as a retransmitting guest would do.
    for _ in range(50):
        rcv = (c.info()["rcv_nxt"] - c.gs(0)) % 2**32
        if rcv == len(data):
            break
        for o, p in pieces:
            if o + len(p) > rcv:
                c.send(seq=c.gs(o), payload=p)
        c.recv()
        got += c.host_take()
    got += c.host_take()
    assert bytes(got) == data
