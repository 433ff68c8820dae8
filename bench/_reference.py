"""Slow, obviously correct RFC 1071 checksum: the baseline fastnet is compared against.

tests/reference/checksum.py holds the test suite's oracle with the same signature (the two
agree on odd and even lengths and on non-zero ``initial``); this copy keeps bench/ runnable on
its own, without importing from tests/.
"""


def checksum(data, initial=0):
    """RFC 1071 checksum of ``data`` (complemented, as written into a header).

    ``initial`` is a folded partial sum to start from, as in ``fastnet.wire.checksum``.
    Sums big-endian 16-bit words one at a time; an odd last byte is the high byte of a
    zero-padded word (RFC 1071 §4.1).
    """
    data = bytes(data)
    if len(data) % 2:
        data += b"\0"
    s = initial
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
