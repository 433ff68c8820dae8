"""QEMU's socket networking (``-netdev stream`` / ``-netdev socket``, gvproxy's -listen-qemu):
Ethernet frames behind a 4-byte big-endian length on a stream socket, no handshake.

The listener takes a unix path or a TCP host:port and accepts any number of connections, each
a guest of its own (gvproxy accepts once; QEMU reconnecting after a restart is then served
without restarting us).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Callable

from fastnet import _io
from fastnet.aio.unixsock import bind_unix, bound_inode, pause_accepting, unlink_if_ours

log = logging.getLogger("fastnet.qemu")

KIND = "qemu"
LINK_ARGS = {"kind": KIND, "link_kind": _io.LINK_STREAM, "framing": 4}


def parse_address(spec) -> tuple[str, Any]:
    """("unix", path) or ("tcp", (host, port)) from "unix:///p", "unix:/p", "tcp://h:p",
    "tcp:h:p", "/p", "h:p" or a (host, port) tuple. IPv6 hosts go in brackets: "tcp://[::1]:1234"."""
    if isinstance(spec, tuple):
        return "tcp", (str(spec[0]), int(spec[1]))
    spec = str(spec)
    if spec.startswith("unix://"):
        return "unix", spec[len("unix://"):]
    if spec.startswith("unix:"):  # the and gvproxy's short form, unix:PATH
        return "unix", spec[len("unix:"):]
    if spec.startswith("tcp://"):
        spec = spec[len("tcp://"):]
    elif spec.startswith("tcp:"):
        spec = spec[len("tcp:"):]
    elif "/" in spec or ":" not in spec:
        return "unix", spec
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"not a host:port address: {spec!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return "tcp", (host, int(port))


class QemuListener:
    """Accepts QEMU stream connections; ``on_attach(fd, info=...)`` gets each one
    (non-blocking, ownership passes with it); run it as ``LINK_ARGS`` says.

    ``start()`` and ``close()`` must be called on the loop's thread."""

    def __init__(self, address, *, on_attach: Callable[..., Any],
                 loop: asyncio.AbstractEventLoop | None = None, backlog: int = 32):
        self.family, self.address = parse_address(address)
        self.on_attach = on_attach
        self.loop = loop
        self.backlog = backlog
        self._sock: socket.socket | None = None
        self._inode: int | None = None
        self.stats = {"accepted": 0}

    @property
    def bound_address(self):
        """The path, or (host, port) with the port the kernel chose for port 0."""
        if self.family == "tcp" and self._sock is not None:
            return self._sock.getsockname()[:2]
        return self.address

    def start(self) -> "QemuListener":
        self.loop = self.loop or asyncio.get_event_loop()
        if self.family == "unix":
            sock = bind_unix(self.address, socket.SOCK_STREAM)
            self._inode = bound_inode(self.address)
        else:
            host, port = self.address
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            fam, typ, proto, _, addr = info[0]
            sock = socket.socket(fam, typ, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(addr)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
        try:
            sock.listen(self.backlog)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.loop.add_reader(sock.fileno(), self._on_accept)
        log.info("qemu: listening on %s", self.bound_address)
        return self

    def close(self) -> None:
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            if self.family == "unix":
                unlink_if_ours(self.address, self._inode)

    def _pause_accepting(self, delay: float = 0.2) -> None:
        pause_accepting(self, delay)

    def _on_accept(self) -> None:
        for _ in range(64):
            try:
                conn, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # EMFILE and friends: the pending connection stays readable, so pause
                # accepting for a moment instead of spinning on the error.
                log.error("qemu: accept failed: %s", e)
                self._pause_accepting()
                return
            self.stats["accepted"] += 1
            conn.setblocking(False)
            if self.family == "tcp":
                # Frames are whole messages: a frame held back by Nagle is latency for nothing.
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            info = {"transport": KIND, "listen": str(self.bound_address), "peer": str(peer) if peer else None}
            fd = conn.detach()
            try:
                self.on_attach(fd, info=info)
            except Exception:
                log.exception("qemu: attaching a connection failed")
