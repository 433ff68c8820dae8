"""Frame parsing over the mixed corpus (_corpus.CORPUS_MIX): one Python call per frame
against one call per batch.

Every round parses the whole corpus, so frames/s = CORPUS_SIZE / round time (derived by the
conftest hooks from ``extra_info["frames"]``). The libraries do different amounts of work per
call, which is the point of the comparison: scapy and dpkt decode every layer into objects,
``parse_frame`` classifies every layer in C and builds one object, the views check only the
headers they cover, and the batch calls build no Python object per frame at all.
"""

from __future__ import annotations

import dpkt
import pytest
import scapy.layers.inet6  # noqa: F401  (binds IPv6 and its upper layers to Ether)
from scapy.layers.inet import TCP  # importing inet binds IPv4/TCP/UDP/ICMP to Ether
from scapy.layers.l2 import Ether

from _corpus import CORPUS_SIZE
from fastnet import wire

_PER_FRAME_TARGET = 1_000_000  # frames/s, one Python call per frame
_BATCH_TARGET = 10_000_000     # frames/s, one call per batch


# ---------------------------------------------------------------------------------------------
# one call per frame

def _fastnet_parse_frame(frames):
    parse = wire.parse_frame
    for f in frames:
        parse(f)
    return len(frames)


def _fastnet_parse_frame_kind(frames):
    # A dispatcher's first step: parse, then read the kind (an IntEnum).
    parse = wire.parse_frame
    for f in frames:
        parse(f).kind
    return len(frames)


def _fastnet_parse_status(frames):
    # The non-raising variant: (code, kind), no Frame object.
    status = wire.parse_status
    for f in frames:
        status(f)
    return len(frames)


def _fastnet_views(frames):
    # What a handler that only needs L3 does: an Ethernet view, then an IPv4 view over its
    # payload for IPv4 frames (one field read, so the view is used, not just made).
    eth_view, ip_view, ipv4 = wire.EthernetFrame, wire.Ipv4Packet, wire.ETHERTYPE_IPV4
    for f in frames:
        eth = eth_view(f)
        if eth.ethertype == ipv4:
            ip_view(eth.payload).protocol
    return len(frames)


def _dpkt(frames):
    parse = dpkt.ethernet.Ethernet
    for f in frames:
        parse(f)
    return len(frames)


def _scapy(frames):
    for f in frames:
        Ether(f)
    return len(frames)


PER_FRAME = {
    "fastnet-parse_frame": _fastnet_parse_frame,
    "fastnet-parse_frame-kind": _fastnet_parse_frame_kind,
    "fastnet-parse_status": _fastnet_parse_status,
    "fastnet-views": _fastnet_views,
    "dpkt": _dpkt,
    "scapy": _scapy,
}


@pytest.mark.parametrize("impl", list(PER_FRAME))
def test_parse_per_frame(benchmark, frame_corpus, impl):
    benchmark.group = "parse-per-frame"
    benchmark.extra_info["frames"] = len(frame_corpus)
    fn = PER_FRAME[impl]
    if impl in ("fastnet-parse_frame", "fastnet-views"):
        benchmark.extra_info["target frames/s"] = _PER_FRAME_TARGET
    if impl == "scapy":
        # Without scapy.layers.inet imported, Ether() stops at Raw and times a tenth of the work.
        assert Ether(next(f for f in frame_corpus if wire.parse_frame(f).l4_proto == 6)).haslayer(TCP)
        # ~35 ms a round: a few rounds give a stable enough median for a 500x gap.
        n = benchmark.pedantic(fn, args=(frame_corpus,), rounds=5, warmup_rounds=1)
    else:
        n = benchmark(fn, frame_corpus)
    assert n == CORPUS_SIZE


# ---------------------------------------------------------------------------------------------
# one call per batch

def _split_2le(stream):
    """The frames of a 2-byte little-endian length-prefixed stream, as zero-copy slices."""
    mv = memoryview(stream)
    i, n = 0, len(stream)
    while i < n:
        ln = mv[i] | (mv[i + 1] << 8)
        yield mv[i + 2:i + 2 + ln]
        i += 2 + ln


def _loop_parse_status(stream):
    # The per-frame baseline for the batch calls: split in Python, classify each frame.
    status = wire.parse_status
    k = 0
    for f in _split_2le(stream):
        status(f)
        k += 1
    return k


def _loop_dpkt(stream):
    # dpkt has no batch API; it also needs bytes, so each frame is copied out of the stream.
    parse = dpkt.ethernet.Ethernet
    k = 0
    for f in _split_2le(stream):
        parse(bytes(f))
        k += 1
    return k


@pytest.mark.parametrize("impl", ["fastnet-stream-2le", "fastnet-stream-4be", "fastnet-spans",
                                  "fastnet-loop-parse_status", "dpkt-loop"])
def test_parse_batch(benchmark, stream_2le, stream_4be, frame_spans, impl):
    benchmark.group = "parse-batch"
    benchmark.extra_info["frames"] = CORPUS_SIZE
    if impl == "fastnet-stream-2le":
        benchmark.extra_info["bytes"] = len(stream_2le)
        benchmark.extra_info["target frames/s"] = _BATCH_TARGET
        summaries, consumed = benchmark(wire.classify_stream, stream_2le, 2, "little")
        assert len(summaries) == CORPUS_SIZE and consumed == len(stream_2le)
    elif impl == "fastnet-stream-4be":
        benchmark.extra_info["bytes"] = len(stream_4be)
        benchmark.extra_info["target frames/s"] = _BATCH_TARGET
        summaries, consumed = benchmark(wire.classify_stream, stream_4be, 4, "big")
        assert len(summaries) == CORPUS_SIZE and consumed == len(stream_4be)
    elif impl == "fastnet-spans":
        buf, offsets, lengths = frame_spans
        benchmark.extra_info["bytes"] = len(buf)
        benchmark.extra_info["target frames/s"] = _BATCH_TARGET
        summaries = benchmark(wire.classify_spans, buf, offsets, lengths)
        assert len(summaries) == CORPUS_SIZE and (summaries["status"] == 0).all()
    elif impl == "fastnet-loop-parse_status":
        assert benchmark(_loop_parse_status, stream_2le) == CORPUS_SIZE
    else:
        assert benchmark(_loop_dpkt, stream_2le) == CORPUS_SIZE
