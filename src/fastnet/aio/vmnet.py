"""The server side of the vmnet protocol (HyperKit's virtio-vpnkit device, vpnkit-tap-vsockd,
gvproxy's -listen-vpnkit), on a unix stream socket, for many VMs at once.

Per connection (reference/vpnkit.md §2; all integers little-endian):

    client → server  Init      49 bytes  "VMN3T", u32 version (22), 40-byte commit
    server → client  Init      49 bytes  ours; if the client's version is not 22 we close here
    client → server  Command   41 bytes  u8 command, 36-byte UUID, u32 preferred IPv4
    server → client  Response 258 bytes  VIF (u16 MTU, u16 max packet size, MAC) or
                                          Disconnect (u8 reason length, reason)

after which both sides exchange Ethernet frames behind a 2-byte little-endian length: the
connection is handed to ``on_attach`` and becomes a STREAM link with framing -2.

The handshake runs on non-blocking sockets under one deadline, reading exactly the bytes of
each message (never a frame that follows), so a slow or silent client costs nothing but its
own connection. Address allocation is injected (``allocate``), so this module knows nothing
of the services layer: the same UUID gets the same IP and MAC because the allocator says so.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any, Callable

from fastnet import _io
from fastnet.aio.unixsock import bind_unix, bound_inode, pause_accepting, unlink_if_ours

log = logging.getLogger("fastnet.vmnet")

MAGIC = b"VMN3T"
VERSION = 22
# vpnkit sends this placeholder instead of a real git commit; clients only log it.
COMMIT = b"0123456789012345678901234567890123456789"
INIT_SIZE = 5 + 4 + 40
COMMAND_SIZE = 1 + 36 + 4
RESPONSE_SIZE = 1 + 257

CMD_ETHERNET = 1
CMD_BIND_IPV4 = 6
CMD_PREFERRED_IPV4 = 8
COMMAND_NAMES = {CMD_ETHERNET: "Ethernet", CMD_BIND_IPV4: "Bind_ipv4", CMD_PREFERRED_IPV4: "Preferred_ipv4"}

RESP_VIF = 1
RESP_DISCONNECT = 2

# max_packet_size in the VIF is MTU + 50 in vpnkit (room for headers HyperKit may add).
MAX_PACKET_EXTRA = 50

# How the network should run a connection this server hands over.
KIND = "vmnet"
LINK_ARGS = {"kind": KIND, "link_kind": _io.LINK_STREAM, "framing": -2}


class HandshakeError(Exception):
    """The client broke the protocol (short read, bad UUID); the connection is dropped."""


@dataclass(frozen=True)
class Init:
    magic: bytes
    version: int
    commit: bytes


@dataclass(frozen=True)
class Command:
    command: int
    uuid: str | None                    # canonical lower-case; None: 36 NUL bytes ("pick one")
    preferred: ipaddress.IPv4Address | None   # only for CMD_PREFERRED_IPV4
    raw_uuid: bytes


@dataclass(frozen=True)
class Vif:
    mtu: int
    max_packet_size: int
    mac: bytes


@dataclass(frozen=True)
class Disconnect:
    reason: str


def pack_init(version: int = VERSION, commit: bytes = COMMIT, magic: bytes = MAGIC) -> bytes:
    if len(magic) != 5 or len(commit) != 40:
        raise ValueError("magic is 5 bytes and commit 40")
    return magic + struct.pack("<I", version) + commit


def unpack_init(b: bytes) -> Init:
    if len(b) != INIT_SIZE:
        raise ValueError(f"an Init is {INIT_SIZE} bytes, got {len(b)}")
    return Init(magic=b[:5], version=struct.unpack_from("<I", b, 5)[0], commit=b[9:49])


def parse_uuid(raw: bytes) -> str | None:
    """36 ASCII bytes → canonical UUID string; 36 NUL bytes → None. Raises HandshakeError."""
    if raw == bytes(36):
        return None
    try:
        text = raw.decode("ascii")
        # Only the canonical 8-4-4-4-12 form, as Uuidm.of_string accepts (uuid.UUID alone
        # would also take braces, "urn:" and hyphen-less forms).
        if len(text) != 36 or [text[i] for i in (8, 13, 18, 23)] != ["-"] * 4:
            raise ValueError(text)
        return str(uuidlib.UUID(text))
    except ValueError:
        raise HandshakeError(f"Invalid UUID: {raw.decode('ascii', 'replace')!r}") from None


def unpack_command(b: bytes) -> Command:
    if len(b) != COMMAND_SIZE:
        raise ValueError(f"a Command is {COMMAND_SIZE} bytes, got {len(b)}")
    cmd = b[0]
    raw = b[1:37]
    preferred = None
    if cmd == CMD_PREFERRED_IPV4:
        # A u32 LE of the host-order address: 192.168.65.3 travels as 03 41 a8 c0.
        preferred = ipaddress.IPv4Address(struct.unpack_from("<I", b, 37)[0])
    uuid = parse_uuid(raw) if cmd in (CMD_ETHERNET, CMD_PREFERRED_IPV4) else None
    return Command(command=cmd, uuid=uuid, preferred=preferred, raw_uuid=raw)


def pack_command(command: int, uuid: str | None = None, preferred=None) -> bytes:
    """The client's Command (for clients written in Python and for tests)."""
    raw = bytes(36) if uuid is None else str(uuid).encode("ascii")
    if len(raw) != 36:
        raise ValueError("a UUID is 36 characters")
    ip = int(ipaddress.IPv4Address(preferred)) if preferred is not None else 0
    return bytes([command]) + raw + struct.pack("<I", ip)


def pack_vif(mtu: int, mac: bytes, max_packet_size: int | None = None) -> bytes:
    if len(mac) != 6:
        raise ValueError("a MAC is 6 bytes")
    mps = mtu + MAX_PACKET_EXTRA if max_packet_size is None else max_packet_size
    body = struct.pack("<BHH", RESP_VIF, mtu, min(mps, 0xFFFF)) + bytes(mac)
    return body.ljust(RESPONSE_SIZE, b"\0")


def pack_disconnect(reason: str) -> bytes:
    r = reason.encode("utf-8", "replace")[:255]   # the length is one byte
    return (bytes([RESP_DISCONNECT, len(r)]) + r).ljust(RESPONSE_SIZE, b"\0")


def unpack_response(b: bytes) -> Vif | Disconnect:
    if len(b) != RESPONSE_SIZE:
        raise ValueError(f"a Response is {RESPONSE_SIZE} bytes, got {len(b)}")
    if b[0] == RESP_VIF:
        mtu, mps = struct.unpack_from("<HH", b, 1)
        return Vif(mtu=mtu, max_packet_size=mps, mac=bytes(b[5:11]))
    if b[0] == RESP_DISCONNECT:
        return Disconnect(reason=b[2:2 + b[1]].decode("utf-8", "replace"))
    raise ValueError(f"unknown response type {b[0]}")


def _fmt_mac(mac: bytes) -> str:
    return ":".join(f"{x:02x}" for x in mac)


Allocate = Callable[[str, "ipaddress.IPv4Address | None"], Any]
OnAttach = Callable[..., Any]


class VmnetServer:
    """Accepts vmnet clients on a unix socket path.

    ``allocate(uuid, preferred)`` returns an object with ``.ip`` and ``.mac`` (6 bytes) or
    raises; the exception's text is sent as the Disconnect reason (vpnkit's wording comes from
    the allocator). ``on_attach(fd, uuid=, lease=, info=)`` receives each negotiated
    connection (non-blocking, ownership passes with it); run it as ``LINK_ARGS`` says.

    ``start()`` and ``close()`` must be called on the loop's thread.
    """

    def __init__(self, path: str, *, allocate: Allocate, on_attach: OnAttach, mtu: int = 1500,
                 loop: asyncio.AbstractEventLoop | None = None, handshake_timeout: float = 10.0,
                 max_handshakes: int = 64, commit: bytes = COMMIT, sock: socket.socket | None = None):
        """``sock``: an already bound unix stream socket to serve instead of binding ``path``
        (vpnkit's ``--ethernet fd:N``); it is listened on, and no file is removed on close."""
        if not 68 <= mtu <= 0xFFFF:
            raise ValueError("the vmnet MTU is a u16")
        self.path = str(path)
        self.allocate = allocate
        self.on_attach = on_attach
        self.mtu = mtu
        self.loop = loop
        self.handshake_timeout = handshake_timeout
        self.max_handshakes = max_handshakes
        self.commit = commit
        self._sock: socket.socket | None = None
        self._given = sock
        self._inode: int | None = None
        self._tasks: set[asyncio.Task] = set()
        self.stats = {"accepted": 0, "attached": 0, "disconnected": 0, "version_mismatch": 0,
                      "failed": 0, "timeouts": 0, "overflow": 0}

    def start(self) -> "VmnetServer":
        self.loop = self.loop or asyncio.get_event_loop()
        if self._given is not None:
            sock = self._given
            sock.setblocking(False)
        else:
            sock = bind_unix(self.path, socket.SOCK_STREAM)
        try:
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._inode = bound_inode(self.path) if self._given is None else None
        self.loop.add_reader(sock.fileno(), self._on_accept)
        log.info("vmnet: listening on %s", self.path)
        return self

    def close(self) -> None:
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            unlink_if_ours(self.path, self._inode)
        for t in list(self._tasks):
            t.cancel()

    @property
    def handshakes_in_progress(self) -> int:
        return len(self._tasks)

    def _pause_accepting(self, delay: float = 0.2) -> None:
        pause_accepting(self, delay)

    def _on_accept(self) -> None:
        for _ in range(64):  # a burst of connects is taken in one wake-up, bounded
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # EMFILE and friends: the pending connection stays readable, so pause
                # accepting for a moment instead of spinning on the error.
                log.error("vmnet: accept on %s failed: %s", self.path, e)
                self._pause_accepting()
                return
            self.stats["accepted"] += 1
            if len(self._tasks) >= self.max_handshakes:
                # Unfinished handshakes pile up only when clients stall; do not let them
                # exhaust descriptors.
                self.stats["overflow"] += 1
                log.warning("vmnet: %d handshakes in progress, dropping a new connection", len(self._tasks))
                conn.close()
                continue
            conn.setblocking(False)
            task = self.loop.create_task(self._serve(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket) -> None:
        try:
            result = await asyncio.wait_for(self._negotiate(conn), self.handshake_timeout)
        except asyncio.TimeoutError:
            self.stats["timeouts"] += 1
            log.warning("vmnet: handshake timed out after %.1fs", self.handshake_timeout)
            conn.close()
            return
        except (HandshakeError, OSError, EOFError) as e:
            self.stats["failed"] += 1
            log.warning("vmnet: handshake failed: %s", e)
            conn.close()
            return
        except asyncio.CancelledError:
            conn.close()
            raise
        if result is None:  # answered with a Disconnect or a version mismatch
            conn.close()
            return
        uuid, lease, info = result
        fd = conn.detach()
        self.stats["attached"] += 1
        try:
            self.on_attach(fd, uuid=uuid, lease=lease, info=info)
        except Exception:
            # The callee owns fd once called (it may already be inside a link); a failure here
            # is a bug on that side, logged rather than taking the listener down.
            log.exception("vmnet: attaching %s failed", uuid)

    async def _recv_exactly(self, conn: socket.socket, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = await self.loop.sock_recv(conn, n - len(buf))
            if not chunk:
                raise EOFError(f"client closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    async def _negotiate(self, conn: socket.socket):
        init = unpack_init(await self._recv_exactly(conn, INIT_SIZE))
        # vpnkit does not check the magic; it answers with its own Init in every case.
        await self.loop.sock_sendall(conn, pack_init(VERSION, self.commit))
        if init.version != VERSION:
            self.stats["version_mismatch"] += 1
            log.warning("vmnet: client speaks protocol version %d, we speak %d: closing", init.version, VERSION)
            return None
        raw = await self._recv_exactly(conn, COMMAND_SIZE)
        try:
            cmd = unpack_command(raw)
        except HandshakeError as e:
            return await self._disconnect(conn, str(e))
        if cmd.command not in (CMD_ETHERNET, CMD_PREFERRED_IPV4):
            name = COMMAND_NAMES.get(cmd.command, str(cmd.command))
            return await self._disconnect(conn, f"Unsupported command {name}")
        uuid = cmd.uuid or str(uuidlib.uuid4())
        try:
            lease = self.allocate(uuid, cmd.preferred)
        except Exception as e:
            return await self._disconnect(conn, str(e) or type(e).__name__)
        await self.loop.sock_sendall(conn, pack_vif(self.mtu, bytes(lease.mac)))
        info = {"transport": KIND, "path": self.path, "uuid": uuid, "uuid_chosen_by_server": cmd.uuid is None,
                "command": COMMAND_NAMES[cmd.command], "preferred": str(cmd.preferred) if cmd.preferred else None,
                "client_version": init.version, "client_commit": init.commit.decode("ascii", "replace"),
                "mac": _fmt_mac(bytes(lease.mac)), "ip": str(lease.ip), "mtu": self.mtu}
        log.info("vmnet: %s gets %s %s", uuid, lease.ip, info["mac"])
        return uuid, lease, info

    async def _disconnect(self, conn: socket.socket, reason: str) -> None:
        self.stats["disconnected"] += 1
        log.warning("vmnet: disconnecting client: %s", reason)
        await self.loop.sock_sendall(conn, pack_disconnect(reason))
        return None
