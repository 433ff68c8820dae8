"""slirp4netns's API socket (reference/slirp-passt.md §1.3), byte for byte where it matters.

One request per connection on a unix stream socket: the client writes one JSON object
(``{"execute": ..., "arguments": {...}}``, under 4096 bytes) and shuts its side down (or just
waits: a complete object is enough here); the server writes one JSON object, with no trailing
newline, and closes. Requests:

- ``add_hostfwd`` ``{proto, host_addr="0.0.0.0", host_port, guest_addr=<recommended>,
  guest_port}`` → ``{"return":{"id":N}}``, ids from 1;
- ``list_hostfwd`` → the entries ``{id, proto, host_addr, host_port, guest_addr, guest_port}``;
- ``remove_hostfwd`` ``{id}`` → ``{"return":{}}``;
- errors → ``{"error":{"desc":"bad request: ..."}}`` with slirp4netns's texts. When the host
  socket cannot be bound, the reason follows slirp4netns's text
  ("... slirp_add_hostfwd failed: port is already allocated").

list_hostfwd: slirp4netns's man page documents ``{"return":{"entries":[...]}}`` while its
api.c writes ``{"entries":[...]}``; the answer here carries both keys, so a client written
against either reads it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import socket
import stat

from fastnet.aio.unixsock import bind_unix, bound_inode, unlink_if_ours
from fastnet.services.ports import PortError, PortSpec, PublishedPorts

log = logging.getLogger("fastnet.slirp4netns.api")

BUFLEN = 4096          # slirp4netns reads once into 4096 bytes; a full buffer is "too large"
READ_TIMEOUT = 10.0
GRACE = 0.5


def _error(desc: str) -> dict:
    return {"error": {"desc": f"bad request: {desc}"}}


def _number(args: dict, key: str) -> int:
    """parson's json_object_dotget_number, cast to int: 0 when absent or not a number."""
    v = args.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return 0
    try:
        return int(v)
    except (OverflowError, ValueError):
        return 0


def _string(args: dict, key: str) -> str | None:
    v = args.get(key)
    return v if isinstance(v, str) else None


def _ipv4(text: str) -> str | None:
    """inet_pton(AF_INET): dotted quad only."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


class SlirpApi:
    """The request handler, over a network's published ports."""

    def __init__(self, ports: PublishedPorts, recommended_guest):
        self.ports = ports
        self.recommended = str(recommended_guest)
        self.entries: dict[int, dict] = {}       # slirp id -> entry (with the forward's id)
        self.next_id = 1

    def handle(self, data: bytes) -> dict:
        if len(data) >= BUFLEN:
            return _error("too large message")
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error("cannot parse JSON")
        if not isinstance(obj, dict):
            return _error("json_object() failed")
        execute = obj.get("execute")
        if not isinstance(execute, str):
            return _error("no execute found")
        args = obj.get("arguments")
        args = args if isinstance(args, dict) else {}
        if execute == "add_hostfwd":
            return self.add_hostfwd(args)
        if execute == "list_hostfwd":
            entries = [{k: v for k, v in e.items() if k != "forward"} for _, e in sorted(self.entries.items())]
            return {"return": {"entries": entries}, "entries": entries}
        if execute == "remove_hostfwd":
            return self.remove_hostfwd(args)
        return _error("unknown execute")

    def add_hostfwd(self, args: dict) -> dict:
        proto = _string(args, "proto")
        if proto not in ("tcp", "udp"):
            return _error("add_hostfwd: bad arguments.proto")
        host_addr = _string(args, "host_addr") or "0.0.0.0"
        host_addr = _ipv4(host_addr)
        if host_addr is None:
            return _error("add_hostfwd: bad arguments.host_addr")
        host_port = _number(args, "host_port")
        if not 0 < host_port < 65536:
            return _error("add_hostfwd: bad arguments.host_port")
        guest_addr = _string(args, "guest_addr") or self.recommended
        guest_addr = _ipv4(guest_addr)
        if guest_addr is None:
            return _error("add_hostfwd: bad arguments.guest_addr")
        guest_port = _number(args, "guest_port")
        if not 0 < guest_port < 65536:
            return _error("add_hostfwd: bad arguments.guest_port")
        spec = PortSpec(proto=proto, host_addr=host_addr, host_port=host_port, guest_addr=guest_addr,
                        guest_port=guest_port)
        # libslirp binds a new socket for every forward: a second one on a bound port fails.
        if self.ports.find_spec(spec) is not None:
            return _error("add_hostfwd: slirp_add_hostfwd failed: port is already allocated")
        try:
            fwd = self.ports.add(spec, origin="slirp4netns")
        except PortError as e:
            reason = str(e).rsplit(": ", 1)[-1]
            return _error(f"add_hostfwd: slirp_add_hostfwd failed: {reason}")
        fid = self.next_id
        self.next_id += 1
        self.entries[fid] = {"id": fid, "proto": proto, "host_addr": host_addr, "host_port": host_port,
                             "guest_addr": guest_addr, "guest_port": guest_port, "forward": fwd.id}
        return {"return": {"id": fid}}

    def remove_hostfwd(self, args: dict) -> dict:
        fid = _number(args, "id")
        entry = self.entries.get(fid)
        if entry is None:
            return _error("remove_hostfwd: bad arguments.id")
        try:
            self.ports.remove(entry["forward"])
        except PortError:
            return _error("remove_hostfwd: slirp_remove_hostfwd failed")
        del self.entries[fid]
        return {"return": {}}


class SlirpApiServer:
    """Serves SlirpApi on a unix socket at path (an old socket file there is replaced, as
    slirp4netns does)."""

    def __init__(self, path: str, api: SlirpApi, *, loop: asyncio.AbstractEventLoop | None = None):
        self.path = os.fspath(path)
        self.api = api
        self.loop = loop
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None

    def bind(self) -> socket.socket:
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            sock = bind_unix(self.path, listen=128)
        finally:
            os.umask(old)
        self._inode = bound_inode(self.path)
        return sock

    async def start(self) -> "SlirpApiServer":
        self.loop = self.loop or asyncio.get_running_loop()
        self._server = await asyncio.start_unix_server(self._serve, sock=self.bind())
        return self

    def start_sync(self) -> "SlirpApiServer":
        return self.loop.run_until_complete(self.start())

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        unlink_if_ours(self.path, self._inode)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        try:
            # The request ends at EOF (the client's shutdown), at a complete JSON value, or
            # when nothing more comes for a moment after the first bytes (slirp4netns answers
            # whatever its one read() got).
            wait = READ_TIMEOUT
            while len(data) < BUFLEN:
                try:
                    chunk = await asyncio.wait_for(reader.read(BUFLEN - len(data)), wait)
                except asyncio.TimeoutError:
                    break
                if not chunk:
                    break
                data += chunk
                if _complete(data):
                    break
                wait = GRACE
            log.info("api: got request: %s", data.decode(errors="replace").strip())
            reply = self.api.handle(data)
            writer.write(json.dumps(reply, separators=(",", ":")).encode())
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()


def _complete(data: bytes) -> bool:
    """Whether data holds a whole JSON value (a client need not shut its side down)."""
    try:
        json.loads(data.decode("utf-8"))
        return True
    except (UnicodeDecodeError, ValueError):
        return False
