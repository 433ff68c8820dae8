"""Fixtures for the wire tests: the buffer types every view must accept."""

from __future__ import annotations

import numpy as np
import pytest


def numpy_slice(data) -> np.ndarray:
    """``data`` as a uint8 slice of a bigger array, starting at an odd address."""
    data = bytes(data)
    big = np.full(len(data) + 16, 0xEE, dtype=np.uint8)
    big[5:5 + len(data)] = np.frombuffer(data, dtype=np.uint8)
    return big[5:5 + len(data)]


# name -> (factory, writable)
BUFFER_KINDS = {
    "bytes": (bytes, False),
    "bytearray": (bytearray, True),
    "memoryview": (lambda d: memoryview(bytearray(d)), True),
    "memoryview-readonly": (lambda d: memoryview(bytes(d)), False),
    "numpy": (numpy_slice, True),
}
WRITABLE_KINDS = [k for k, (_, w) in BUFFER_KINDS.items() if w]
READONLY_KINDS = [k for k, (_, w) in BUFFER_KINDS.items() if not w]


@pytest.fixture(params=list(BUFFER_KINDS))
def as_buffer(request):
    """A function turning bytes into each kind of buffer a view must accept."""
    return BUFFER_KINDS[request.param][0]


@pytest.fixture(params=WRITABLE_KINDS)
def as_writable(request):
    return BUFFER_KINDS[request.param][0]


@pytest.fixture(params=READONLY_KINDS)
def as_readonly(request):
    return BUFFER_KINDS[request.param][0]
