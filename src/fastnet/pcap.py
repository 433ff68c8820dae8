"""Classic pcap files (the libpcap format tcpdump and tshark read), for tests and debugging.

The writer produces microsecond-resolution little-endian files with link type Ethernet (1);
the reader accepts either byte order and both the microsecond and nanosecond magics.
"""

from __future__ import annotations

import io
import os
import struct
import time
from typing import BinaryIO, Iterator

LINKTYPE_ETHERNET = 1
_MAGIC_US = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = "IIII"


class PcapWriter:
    """Append frames to a pcap file (path or binary file object)."""

    def __init__(self, target: str | os.PathLike | BinaryIO, snaplen: int = 262144,
                 linktype: int = LINKTYPE_ETHERNET):
        if isinstance(target, (str, os.PathLike)):
            self._f: BinaryIO = open(target, "wb")
            self._owned = True
        else:
            self._f = target
            self._owned = False
        self.snaplen = snaplen
        self._rec = struct.Struct("<" + _RECORD)
        self._f.write(_GLOBAL.pack(_MAGIC_US, 2, 4, 0, 0, snaplen, linktype))
        self.count = 0

    def write(self, frame, ts: float | None = None) -> None:
        data = bytes(frame)
        if ts is None:
            ts = time.time()
        sec = int(ts)
        usec = int(round((ts - sec) * 1e6))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        cap = data[: self.snaplen]
        self._f.write(self._rec.pack(sec, usec, len(cap), len(data)))
        self._f.write(cap)
        self.count += 1

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if self._owned:
            self._f.close()
        else:
            self._f.flush()

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PcapReader:
    """Iterate (timestamp, frame bytes) over a pcap file (path, bytes or binary file object)."""

    def __init__(self, source: str | os.PathLike | bytes | BinaryIO):
        if isinstance(source, (bytes, bytearray)):
            self._f: BinaryIO = io.BytesIO(source)
            self._owned = True
        elif isinstance(source, (str, os.PathLike)):
            self._f = open(source, "rb")
            self._owned = True
        else:
            self._f = source
            self._owned = False
        head = self._f.read(24)
        if len(head) < 24:
            raise ValueError("not a pcap file: shorter than the 24-byte header")
        for order in "<>":
            magic = struct.unpack(order + "I", head[:4])[0]
            if magic in (_MAGIC_US, _MAGIC_NS):
                break
        else:
            raise ValueError(f"not a pcap file: magic {head[:4].hex()}")
        self._order = order
        self._scale = 1e-9 if magic == _MAGIC_NS else 1e-6
        _, major, minor, _, _, self.snaplen, self.linktype = struct.unpack(order + "IHHiIII", head)
        self._rec = struct.Struct(order + _RECORD)

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        while True:
            h = self._f.read(16)
            if not h:
                return
            if len(h) < 16:
                raise ValueError("pcap file ends inside a record header")
            sec, frac, caplen, _ = self._rec.unpack(h)
            data = self._f.read(caplen)
            if len(data) < caplen:
                raise ValueError("pcap file ends inside a record")
            yield sec + frac * self._scale, data

    def close(self) -> None:
        if self._owned:
            self._f.close()

    def __enter__(self) -> "PcapReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_frames(source) -> list[bytes]:
    with PcapReader(source) as r:
        return [frame for _, frame in r]
