"""Batch classification: length-prefixed streams (HyperKit: 2-byte little-endian prefixes;
QEMU: 4-byte big-endian) and (offset, length) spans, against parse_frame frame by frame."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from fastnet import wire
from fastnet.wire import SUMMARY_DTYPE, Kind
from tests.data import frames as F

EFRAME_LEN = -20  # FN_EFRAME_LEN: a zero or oversized length prefix
HYPERKIT = (2, "little")
QEMU = (4, "big")
PREFIXES = {"hyperkit-2le": HYPERKIT, "qemu-4be": QEMU, "2be": (2, "big"), "4le": (4, "little")}


def prefixed(frames, prefix, byteorder) -> bytes:
    return b"".join(len(f).to_bytes(prefix, byteorder) + f for f in frames)


def expected(frame: bytes, off: int) -> dict:
    """The summary parse_frame implies for one frame starting at ``off``."""
    rc, kind = wire.parse_status(frame)
    if rc != 0:
        return dict(off=off, len=len(frame), status=rc, kind=0, tcp_flags=0)
    f = wire.parse_frame(frame)
    tcp = f.kind in (Kind.TCP4, Kind.TCP6)
    return dict(off=off, len=len(frame), status=0, kind=int(f.kind), l4_proto=f.l4_proto,
                tcp_flags=frame[f.l4_off + 13] if tcp else 0, l3_off=f.l3_off, l4_off=f.l4_off,
                payload_off=f.payload_off, payload_len=f.payload_len)


def as_dicts(summaries, keys_like):
    return [{k: int(s[k]) for k in want} for s, want in zip(summaries, keys_like)]


def stream_of_goldens(seed=0, copies=3):
    """Every golden frame a few times over, in a seeded random order."""
    frames = list(F.ALL.values()) * copies
    random.Random(seed).shuffle(frames)
    return frames


def offsets_of(frames, prefix):
    offs, pos = [], 0
    for f in frames:
        offs.append(pos + prefix)
        pos += prefix + len(f)
    return offs


@pytest.mark.parametrize("fmt", PREFIXES)
def test_stream_summaries_equal_parse_frame_per_frame(fmt, as_buffer):
    prefix, order = PREFIXES[fmt]
    frames = stream_of_goldens()
    data = prefixed(frames, prefix, order)
    summaries, consumed = wire.classify_stream(as_buffer(data), prefix, order)
    assert summaries.dtype == SUMMARY_DTYPE
    assert consumed == len(data)
    want = [expected(f, off) for f, off in zip(frames, offsets_of(frames, prefix))]
    assert len(summaries) == len(frames)
    assert as_dicts(summaries, want) == want


def test_stream_tcp_flags_and_kinds_are_what_the_frames_say():
    summaries, _ = wire.classify_stream(prefixed([F.TCP4_SYN, F.TCP6_SYNACK, F.TCP4_DATA,
                                                  F.UDP4_DNS], *HYPERKIT))
    assert [Kind(k) for k in summaries["kind"]] == [Kind.TCP4, Kind.TCP6, Kind.TCP4, Kind.UDP4]
    assert list(summaries["tcp_flags"]) == [0x02, 0x12, 0x18, 0]
    assert list(summaries["l4_proto"]) == [6, 6, 6, 17]


@pytest.mark.parametrize("fmt", ["hyperkit-2le", "qemu-4be"])
def test_partial_trailing_frame_is_not_consumed_at_any_cut(fmt):
    prefix, order = PREFIXES[fmt]
    frames = [F.TCP4_DATA, F.ARP_REQUEST, F.UDP6, F.IPV6_EXT_UDP]
    data = prefixed(frames, prefix, order)
    last_start = len(data) - prefix - len(frames[-1])  # where the last prefix begins
    head = [expected(f, off) for f, off in zip(frames[:-1], offsets_of(frames, prefix))]
    for cut in range(last_start, len(data)):
        summaries, consumed = wire.classify_stream(data[:cut], prefix, order)
        assert consumed == last_start, cut
        assert as_dicts(summaries, head) == head, cut
    summaries, consumed = wire.classify_stream(data, prefix, order)
    assert (len(summaries), consumed) == (len(frames), len(data))


@pytest.mark.parametrize("fmt", ["hyperkit-2le", "qemu-4be"])
def test_zero_length_prefix_gives_one_eframe_len_summary_and_stops(fmt):
    prefix, order = PREFIXES[fmt]
    before = prefixed([F.TCP4_SYN, F.UDP4_DNS], prefix, order)
    data = before + bytes(prefix) + prefixed([F.ICMP4_ECHO], prefix, order)
    summaries, consumed = wire.classify_stream(data, prefix, order)
    assert len(summaries) == 3
    assert list(summaries["status"]) == [0, 0, EFRAME_LEN]
    bad = summaries[2]
    assert (int(bad["off"]), int(bad["len"]), int(bad["kind"])) == (len(before) + prefix, 0, 0)
    assert consumed == len(before)  # the stream cannot be resynchronised past it


@pytest.mark.parametrize("fmt", ["hyperkit-2le", "qemu-4be"])
def test_prefix_above_max_frame_gives_one_eframe_len_summary_and_stops(fmt):
    prefix, order = PREFIXES[fmt]
    big = F.TCP4_DATA  # 103 bytes
    data = prefixed([F.ARP_REQUEST, big, F.UDP6], prefix, order)
    summaries, consumed = wire.classify_stream(data, prefix, order, max_frame=len(big) - 1)
    assert list(summaries["status"]) == [0, EFRAME_LEN]
    assert (int(summaries[1]["off"]), int(summaries[1]["len"])) == (2 * prefix + 42, len(big))
    assert consumed == prefix + len(F.ARP_REQUEST)
    summaries, consumed = wire.classify_stream(data, prefix, order, max_frame=len(big))
    assert list(summaries["status"]) == [0, 0, 0] and consumed == len(data)


def test_oversized_prefix_is_refused_even_when_the_bytes_are_not_there_yet():
    data = struct.pack(">I", 0xFFFF0001) + b"\x00" * 10
    summaries, consumed = wire.classify_stream(data, 4, "big")
    assert list(summaries["status"]) == [EFRAME_LEN] and consumed == 0
    summaries, consumed = wire.classify_stream(struct.pack("<H", 9000) + b"\x00" * 10, 2,
                                               "little", max_frame=1514)
    assert list(summaries["status"]) == [EFRAME_LEN] and int(summaries[0]["len"]) == 9000


@pytest.mark.parametrize("fmt", ["hyperkit-2le", "qemu-4be"])
def test_malformed_frames_get_their_status_and_the_rest_still_classify(fmt, as_buffer):
    prefix, order = PREFIXES[fmt]
    bad_doff = bytearray(F.TCP4_SACK)
    bad_doff[46] = 0xF0  # data offset 60 on a 52-byte segment
    frames = [F.TCP4_SYN, F.TCP4_DATA[:30], F.UDP6, b"\x01\x02\x03", bytes(bad_doff),
              F.IPV6_EXT_UDP[:60], F.ICMP6_ECHO, F.VLAN_UDP4[:16]]
    data = prefixed(frames, prefix, order)
    summaries, consumed = wire.classify_stream(as_buffer(data), prefix, order)
    assert consumed == len(data)
    want = [expected(f, off) for f, off in zip(frames, offsets_of(frames, prefix))]
    assert as_dicts(summaries, want) == want
    assert list(summaries["status"]) == [0, -5, 0, -1, -13, -10, 0, -2]


def test_max_frames_caps_the_count():
    frames = stream_of_goldens(seed=1, copies=1)
    data = prefixed(frames, *QEMU)
    for cap in (0, 1, 3, len(frames) - 1, len(frames), len(frames) + 5):
        summaries, consumed = wire.classify_stream(data, *QEMU, max_frames=cap)
        n = min(cap, len(frames))
        assert len(summaries) == n
        assert consumed == sum(4 + len(f) for f in frames[:n])


def test_stream_arguments_are_checked():
    with pytest.raises(ValueError):
        wire.classify_stream(b"", 3)
    with pytest.raises(ValueError):
        wire.classify_stream(b"", 2, "middle")
    summaries, consumed = wire.classify_stream(b"", 2)
    assert (len(summaries), consumed) == (0, 0)
    summaries, consumed = wire.classify_stream(b"\x05", 2)  # half a prefix
    assert (len(summaries), consumed) == (0, 0)


def test_stream_of_random_frames_never_reads_past_the_buffer():
    # Random bytes after sane prefixes: every summary is either an error or lies in its frame.
    rng = random.Random(5)
    frames = [rng.randbytes(rng.randrange(1, 120)) for _ in range(300)]
    frames += [bytearray(f)[:rng.randrange(len(f) + 1)] or b"\x00" for f in F.ALL.values()]
    data = prefixed([bytes(f) for f in frames], *HYPERKIT)
    summaries, consumed = wire.classify_stream(data, *HYPERKIT)
    assert consumed == len(data)
    for s, f in zip(summaries, frames):
        if s["status"] == 0:
            assert s["payload_off"] + s["payload_len"] <= len(f)
            assert s["l3_off"] <= len(f) and s["l4_off"] <= len(f)


# ---------------------------------------------------------------------------------------------
# spans

def test_spans_summaries_equal_parse_frame_and_out_of_range_is_eframe_len(as_buffer):
    frames = stream_of_goldens(seed=2, copies=1)
    blob = b"".join(frames) + b"\xAA" * 7
    offs, lens, pos = [], [], 0
    for f in frames:
        offs.append(pos)
        lens.append(len(f))
        pos += len(f)
    # An out-of-range span, one ending a byte past the end, an empty one, and one reused.
    offs += [len(blob) + 1, len(blob) - 10, len(blob), 0]
    lens += [4, 11, 0, len(frames[0])]
    summaries = wire.classify_spans(as_buffer(blob), np.array(offs, dtype=np.uint32), lens)
    assert len(summaries) == len(offs)
    want = [expected(f, o) for f, o in zip(frames, offs)]
    assert as_dicts(summaries[:len(frames)], want) == want
    tail = summaries[len(frames):]
    assert list(tail["status"]) == [EFRAME_LEN, EFRAME_LEN, -1, 0]
    assert [(int(s["off"]), int(s["len"])) for s in tail[:2]] == [(len(blob) + 1, 4),
                                                                  (len(blob) - 10, 11)]
    assert as_dicts(tail[3:], [want[0]]) == [want[0]]


def test_spans_arguments_are_checked():
    with pytest.raises(ValueError):
        wire.classify_spans(F.TCP4_SYN, [0, 1], [10])
    assert len(wire.classify_spans(F.TCP4_SYN, [], [])) == 0
