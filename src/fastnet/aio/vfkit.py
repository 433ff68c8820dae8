"""vfkit's and libkrun's virtio-net over a unix datagram socket (gvproxy's -listen-vfkit): one
Ethernet frame per datagram, no header.

We bind the socket; the VM binds its own and sends to ours. The first datagram tells us its
address (read with MSG_PEEK, so a frame is not lost); older vfkit sent the 4 bytes "VFKT"
first, which is consumed. The socket is then connect()ed to the VM's address, which lets the
C datagram link use plain sendmmsg/recvmmsg and makes the kernel drop datagrams from anyone
else. One VM per socket, as in gvproxy.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Callable

from fastnet import _io
from fastnet.aio.unixsock import bind_unix, bound_inode, unlink_if_ours

log = logging.getLogger("fastnet.vfkit")

KIND = "vfkit"
LINK_ARGS = {"kind": KIND, "link_kind": _io.LINK_DGRAM, "framing": 0}

LEGACY_MAGIC = b"VFKT"
# gvproxy's buffer sizes: a burst of MTU-sized datagrams must not overflow the receive queue.
SNDBUF = 1 << 20
RCVBUF = 4 << 20


class VfkitListener:
    """Waits for the VM's first datagram on ``path``, then calls ``on_attach(fd, info=...)``
    with the socket connected to the VM (non-blocking, ownership passes with it); run it as
    ``LINK_ARGS`` says. ``start()`` and ``close()`` must be called on the loop's thread."""

    def __init__(self, path: str, *, on_attach: Callable[..., Any],
                 loop: asyncio.AbstractEventLoop | None = None):
        self.path = str(path)
        self.on_attach = on_attach
        self.loop = loop
        self.peer: str | None = None
        self.legacy_magic = False
        self._sock: socket.socket | None = None
        self._inode: int | None = None
        self.stats = {"unbound_senders": 0}

    def start(self) -> "VfkitListener":
        self.loop = self.loop or asyncio.get_event_loop()
        sock = bind_unix(self.path, socket.SOCK_DGRAM)
        for opt, size in ((socket.SO_SNDBUF, SNDBUF), (socket.SO_RCVBUF, RCVBUF)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError as e:  # capped by net.core.*mem_max: smaller buffers still work
                log.debug("vfkit: setsockopt %d failed: %s", opt, e)
        self._sock = sock
        self._inode = bound_inode(self.path)
        self.loop.add_reader(sock.fileno(), self._on_first)
        log.info("vfkit: waiting for the VM on %s", self.path)
        return self

    @property
    def attached(self) -> bool:
        return self.peer is not None

    def close(self) -> None:
        """Stop listening (if no VM came) and remove the socket file. An attached link keeps
        working: its socket no longer needs the path."""
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        unlink_if_ours(self.path, self._inode)
        self._inode = None

    def _on_first(self) -> None:
        sock = self._sock
        while True:
            try:
                data, addr = sock.recvfrom(65536, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.error("vfkit: receive on %s failed: %s", self.path, e)
                return
            if addr:
                break
            # An unbound sender has no address to answer: we could never send it a frame.
            self.stats["unbound_senders"] += 1
            log.warning("vfkit: dropping a datagram from an unbound socket (the VM must bind its own)")
            sock.recv(65536)
        if data == LEGACY_MAGIC:
            sock.recv(len(LEGACY_MAGIC))
            self.legacy_magic = True
        try:
            sock.connect(addr)
        except OSError as e:
            log.error("vfkit: cannot connect to the VM's socket %s: %s", addr, e)
            sock.recv(65536)  # drop that datagram and wait for another sender
            return
        self.loop.remove_reader(sock.fileno())
        self.peer = addr
        self._sock = None
        fd = sock.detach()
        info = {"transport": KIND, "path": self.path, "peer": addr, "legacy_magic": self.legacy_magic}
        log.info("vfkit: VM at %s%s", addr, " (legacy VFKT magic)" if self.legacy_magic else "")
        try:
            self.on_attach(fd, info=info)
        except Exception:
            log.exception("vfkit: attaching the VM failed")
