"""RFC 1071 checksum: fastnet (C) against the pure-Python reference and a numpy version.

One group per buffer size, so each table compares the three implementations on the same bytes.
"""

from __future__ import annotations

import numpy as np
import pytest

from _corpus import PAYLOAD_SIZES
from _reference import checksum as reference_checksum
from fastnet import wire

_BE16 = np.dtype(">u2")


def numpy_checksum(data, initial=0):
    """Vectorised RFC 1071: big-endian 16-bit words summed into a uint64 (no overflow below
    2^48 words), then folded and complemented like the C code."""
    a = np.frombuffer(data, dtype=np.uint8)
    if a.size % 2:
        a = np.concatenate((a, np.zeros(1, np.uint8)))  # odd length: zero-padded last word
    s = int(a.view(_BE16).sum(dtype=np.uint64)) + initial
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


IMPLS = {
    "fastnet": wire.checksum,
    "reference": reference_checksum,
    "numpy": numpy_checksum,
}

# The reference sums one word per interpreter loop (~3 ms at 64 KiB): a fixed handful of rounds
# is enough to show it is 1000x slower and keeps the run short.
_REFERENCE_ROUNDS = {9000: 20, 65536: 10}

_expected: dict[int, int] = {}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("size", PAYLOAD_SIZES)
def test_checksum(benchmark, payload_buffers, size, impl):
    buf = payload_buffers[size]
    fn = IMPLS[impl]
    if size not in _expected:
        _expected[size] = reference_checksum(buf)
    benchmark.group = f"checksum-{size}"
    benchmark.extra_info["bytes"] = size
    if impl == "fastnet" and size == 65536:
        benchmark.extra_info["target GB/s"] = 10
    if impl == "reference" and size in _REFERENCE_ROUNDS:
        result = benchmark.pedantic(fn, args=(buf,), rounds=_REFERENCE_ROUNDS[size], warmup_rounds=1)
    else:
        result = benchmark(fn, buf)
    assert result == _expected[size]
