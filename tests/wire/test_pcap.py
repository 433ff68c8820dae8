"""fastnet.pcap: the classic libpcap format, written and read back, and read from files written
by hand in the other byte order and with the nanosecond magic."""

from __future__ import annotations

import io
import struct

import pytest

from fastnet import pcap
from fastnet.pcap import PcapReader, PcapWriter, read_frames
from tests.data import frames as F

FRAMES = list(F.ALL.values())
# Timestamps with microseconds that float arithmetic likes to get wrong.
STAMPS = [1700000000.0, 1700000000.000001, 1700000000.123456, 1700000000.999999, 1.5,
          2147483647.000007]


def usec(ts: float) -> int:
    return round(ts * 1_000_000)


def write(target, frames, stamps, **kw):
    with PcapWriter(target, **kw) as w:
        for frame, ts in zip(frames, stamps):
            w.write(frame, ts=ts)
    return w


def test_round_trip_through_a_file(tmp_path):
    path = tmp_path / "golden.pcap"
    stamps = [STAMPS[i % len(STAMPS)] + i for i in range(len(FRAMES))]
    w = write(path, FRAMES, stamps)
    assert w.count == len(FRAMES)
    with PcapReader(path) as r:
        assert (r.linktype, r.snaplen) == (pcap.LINKTYPE_ETHERNET, 262144)
        got = list(r)
    assert [frame for _, frame in got] == FRAMES
    assert [usec(ts) for ts, _ in got] == [usec(ts) for ts in stamps]


def test_round_trip_through_bytesio_keeps_the_file_object_open():
    buf = io.BytesIO()
    write(buf, FRAMES[:5], STAMPS[:5])
    assert not buf.closed  # not the writer's to close
    raw = buf.getvalue()
    assert read_frames(raw) == FRAMES[:5]
    buf.seek(0)
    with PcapReader(buf) as r:
        assert [usec(ts) for ts, _ in r] == [usec(ts) for ts in STAMPS[:5]]
    assert not buf.closed


def test_file_layout_is_libpcap_microsecond_little_endian():
    buf = io.BytesIO()
    write(buf, [F.ARP_REQUEST], [1700000000.123456], snaplen=65535)
    raw = buf.getvalue()
    assert struct.unpack("<IHHiIII", raw[:24]) == (0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    assert struct.unpack("<IIII", raw[24:40]) == (1700000000, 123456, 42, 42)
    assert raw[40:] == F.ARP_REQUEST


def test_microseconds_that_round_to_a_whole_second_carry():
    buf = io.BytesIO()
    write(buf, [F.ARP_REQUEST], [1700000000.9999996])
    assert struct.unpack("<II", buf.getvalue()[24:32]) == (1700000001, 0)


def test_default_timestamp_is_now(monkeypatch):
    monkeypatch.setattr(pcap.time, "time", lambda: 1234567890.25)
    buf = io.BytesIO()
    with PcapWriter(buf) as w:
        w.write(F.ARP_REQUEST)
    assert struct.unpack("<II", buf.getvalue()[24:32]) == (1234567890, 250000)


def test_frames_longer_than_snaplen_are_cut_and_keep_their_length():
    buf = io.BytesIO()
    write(buf, [F.TCP4_DATA], [1.0], snaplen=64)
    raw = buf.getvalue()
    assert struct.unpack("<II", raw[32:40]) == (64, len(F.TCP4_DATA))
    assert read_frames(raw) == [F.TCP4_DATA[:64]]


def test_writer_accepts_any_buffer():
    buf = io.BytesIO()
    write(buf, [bytearray(F.UDP6), memoryview(F.ICMP6_ECHO)], [1.0, 2.0])
    assert read_frames(buf.getvalue()) == [F.UDP6, F.ICMP6_ECHO]


def hand_written(order: str, magic: int, records, linktype=1, snaplen=65535) -> bytes:
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for sec, frac, data in records:
        out += struct.pack(order + "IIII", sec, frac, len(data), len(data)) + data
    return out


def test_big_endian_microsecond_file_is_read():
    raw = hand_written(">", 0xA1B2C3D4, [(1700000000, 654321, F.TCP4_SYN), (5, 1, F.ARP_REPLY)],
                       linktype=1, snaplen=1514)
    with PcapReader(raw) as r:
        assert (r.linktype, r.snaplen) == (1, 1514)
        got = list(r)
    assert [d for _, d in got] == [F.TCP4_SYN, F.ARP_REPLY]
    assert [usec(ts) for ts, _ in got] == [1700000000654321, 5000001]


@pytest.mark.parametrize("order", ["<", ">"])
def test_nanosecond_magic_file_is_read(order):
    raw = hand_written(order, 0xA1B23C4D, [(1700000000, 123456789, F.UDP6),
                                           (1700000001, 999999999, F.ICMP6_ECHO)])
    got = list(PcapReader(raw))
    assert [d for _, d in got] == [F.UDP6, F.ICMP6_ECHO]
    # A float holds ~0.2 us at this magnitude: the nanoseconds are kept to that precision.
    assert abs(got[0][0] - 1700000000.123456789) < 1e-6
    assert abs(got[1][0] - 1700000001.999999999) < 1e-6
    assert usec(got[0][0]) == 1700000000123457


@pytest.mark.parametrize("cut", [0, 10, 23])
def test_file_shorter_than_its_header_raises_value_error(cut):
    raw = hand_written("<", 0xA1B2C3D4, [])
    with pytest.raises(ValueError, match="header"):
        PcapReader(raw[:cut])


def test_file_with_a_foreign_magic_raises_value_error():
    with pytest.raises(ValueError, match="magic"):
        PcapReader(b"\x0a\x0d\x0d\x0a" + bytes(20))  # pcapng's section header block


@pytest.mark.parametrize("cut", [1, 8, 15, 16, 30, 57])
def test_file_cut_inside_a_record_raises_value_error(cut):
    raw = hand_written("<", 0xA1B2C3D4, [(1, 0, F.ARP_REQUEST), (2, 0, F.ARP_REQUEST)])
    end_of_first = 24 + 16 + 42
    with pytest.raises(ValueError, match="ends inside"):
        list(PcapReader(raw[:end_of_first + cut]))


def test_file_ending_exactly_after_a_record_is_complete():
    raw = hand_written("<", 0xA1B2C3D4, [(1, 0, F.ARP_REQUEST)])
    assert read_frames(raw) == [F.ARP_REQUEST]
    assert read_frames(raw[:24]) == []


def test_scapy_reads_our_file(tmp_path):
    utils = pytest.importorskip("scapy.utils")
    path = tmp_path / "ours.pcap"
    stamps = [1700000000.0 + i + i / 1e6 for i in range(len(FRAMES))]
    write(path, FRAMES, stamps)
    packets = utils.rdpcap(str(path))
    assert [bytes(p) for p in packets] == FRAMES
    assert [usec(float(p.time)) for p in packets] == [usec(ts) for ts in stamps]


def test_we_read_scapys_file(tmp_path):
    utils = pytest.importorskip("scapy.utils")
    from scapy.layers.l2 import Ether

    path = tmp_path / "scapy.pcap"
    packets = [Ether(f) for f in FRAMES[:6]]
    for i, p in enumerate(packets):
        p.time = 1600000000 + i * 0.5
    utils.wrpcap(str(path), packets)
    got = list(PcapReader(path))
    assert [d for _, d in got] == FRAMES[:6]
    assert [usec(ts) for ts, _ in got] == [usec(1600000000 + i * 0.5) for i in range(6)]
