"""A small HTTP/1.1 server on a unix socket for the control API.

h11 parses the requests (framing, keep-alive, pipelining, chunked bodies); this module adds a
router and the socket's lifecycle. The socket is created with mode 0600 (the umask is narrowed
around bind(), so there is no moment at which others could connect) and removed on close.
Handlers are plain functions run on the network's event loop, one request at a time per
connection: they only read and change in-memory state, so none of them blocks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

import h11

from fastnet.aio.unixsock import SocketPathInUse, bind_unix, bound_inode, unlink_if_ours

log = logging.getLogger("fastnet.api")

MAX_BODY = 1 << 20
IDLE_TIMEOUT = 10.0     # gvproxy's read/write timeouts


class ApiError(Exception):
    """An error response: status and the message for the JSON body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self, *, required: bool = True) -> Any:
        """The body as JSON; a malformed body is a 400 naming the problem."""
        if not self.body.strip():
            if required:
                raise ApiError(400, "the request has no JSON body")
            return None
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ApiError(400, f"the body is not valid JSON: {e}") from None

    def flag(self, name: str) -> bool:
        values = self.query.get(name)
        return bool(values) and values[-1].lower() in ("1", "true", "yes", "on", "")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: list = field(default_factory=list)


def json_response(obj: Any, status: int = 200, *, pretty: bool = False) -> Response:
    """JSON with a trailing newline (as Go's json.Encoder writes it, which gvproxy's clients see)."""
    text = json.dumps(obj, indent=1 if pretty else None, separators=None if pretty else (",", ":"), default=str)
    return Response(status, (text + "\n").encode(), "application/json")


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message, "status": status}, status)


def text_response(text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(status, text.encode(), content_type)


class Router:
    """Routes by method and path; ``{name}`` in a pattern matches one path segment."""

    def __init__(self):
        self._routes: list[tuple[re.Pattern, set[str] | None, Callable[[Request], Response]]] = []
        self.requests = 0
        self.errors = 0

    def add(self, methods: str | tuple | None, pattern: str, handler: Callable[[Request], Response]) -> None:
        regex = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern)) + "$")
        if isinstance(methods, str):
            methods = (methods,)
        self._routes.append((regex, set(methods) if methods else None, handler))

    def dispatch(self, req: Request) -> Response:
        self.requests += 1
        allowed: set[str] = set()
        for regex, methods, handler in self._routes:
            m = regex.match(req.path)
            if m is None:
                continue
            if methods is not None and req.method not in methods:
                allowed |= methods
                continue
            req.params = {k: unquote(v) for k, v in m.groupdict().items()}
            try:
                resp = handler(req)
            except ApiError as e:
                resp = error_response(e.status, e.message)
            except Exception as e:  # a bug in a handler answers 500 and leaves the daemon running
                log.exception("API handler for %s %s failed", req.method, req.path)
                resp = error_response(500, f"internal error: {type(e).__name__}: {e}")
            if resp.status >= 400:
                self.errors += 1
            return resp
        self.errors += 1
        if allowed:
            resp = error_response(405, f"{req.method} is not allowed on {req.path} (use {', '.join(sorted(allowed))})")
            resp.headers.append(("Allow", ", ".join(sorted(allowed))))
            return resp
        return error_response(404, f"no such route: {req.method} {req.path}")


class HttpServer:
    """Serves a Router on a unix stream socket at ``path``."""

    def __init__(self, path: str, router: Router, *, loop: asyncio.AbstractEventLoop | None = None,
                 mode: int = 0o600, idle_timeout: float = IDLE_TIMEOUT, max_body: int = MAX_BODY):
        self.path = os.fspath(path)
        self.router = router
        self.loop = loop
        self.mode = mode
        self.idle_timeout = idle_timeout
        self.max_body = max_body
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._conns: set[asyncio.Task] = set()

    def bind(self) -> socket.socket:
        """Create the socket file (mode 0600 from the start); raises OSError/SocketPathInUse."""
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700, exist_ok=True)
        old = os.umask(0o777 & ~self.mode)
        try:
            # Listening before anyone can see the file: a client that waits for the path to
            # exist (the benchmark harness does) must not find it refusing connections.
            sock = bind_unix(self.path, listen=128)
        finally:
            os.umask(old)
        try:
            os.chmod(self.path, self.mode)
        except BaseException:
            sock.close()
            raise
        self._inode = bound_inode(self.path)
        return sock

    async def start(self) -> "HttpServer":
        self.loop = self.loop or asyncio.get_running_loop()
        sock = self.bind()
        self._server = await asyncio.start_unix_server(self._serve, sock=sock)
        log.info("control API on %s", self.path)
        return self

    def start_sync(self) -> "HttpServer":
        """start() for a loop that is not running yet (the CLI's set-up)."""
        return self.loop.run_until_complete(self.start())

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._conns):
            task.cancel()
        unlink_if_ours(self.path, self._inode)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 << 10)
        try:
            while True:
                try:
                    req = await self._read_request(conn, reader)
                except h11.RemoteProtocolError as e:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await self._send(conn, writer, error_response(400, f"malformed HTTP request: {e}"))
                    return
                except ApiError as e:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        resp = error_response(e.status, e.message)
                        resp.headers.append(("Connection", "close"))
                        await self._send(conn, writer, resp)
                    return
                if req is None:
                    return
                await self._send(conn, writer, self.router.dispatch(req))
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()

    async def _next_event(self, conn: h11.Connection, reader: asyncio.StreamReader):
        while True:
            ev = conn.next_event()
            if ev is not h11.NEED_DATA:
                return ev
            data = await asyncio.wait_for(reader.read(65536), self.idle_timeout)
            conn.receive_data(data)

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Request | None:
        ev = await self._next_event(conn, reader)
        if isinstance(ev, h11.ConnectionClosed):
            return None
        if not isinstance(ev, h11.Request):
            raise h11.RemoteProtocolError(f"expected a request, got {type(ev).__name__}")
        body = bytearray()
        while True:
            part = await self._next_event(conn, reader)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > self.max_body:
                    raise ApiError(413, f"the body is larger than {self.max_body} bytes")
            elif isinstance(part, h11.EndOfMessage):
                break
            elif isinstance(part, h11.ConnectionClosed):
                return None
        target = ev.target.decode("ascii", "replace")
        url = urlsplit(target)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in ev.headers}
        return Request(method=ev.method.decode("ascii", "replace").upper(), path=url.path or "/",
                       query=parse_qs(url.query, keep_blank_values=True), headers=headers, body=bytes(body))

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, resp: Response) -> None:
        headers = [("Content-Length", str(len(resp.body)))]
        if resp.content_type:
            headers.append(("Content-Type", resp.content_type))
        headers += resp.headers
        try:
            reason = HTTPStatus(resp.status).phrase.encode()
        except ValueError:
            reason = b""
        data = conn.send(h11.Response(status_code=resp.status, headers=headers, reason=reason))
        if resp.body:
            data += conn.send(h11.Data(data=resp.body))
        data += conn.send(h11.EndOfMessage())
        writer.write(data)
        await asyncio.wait_for(writer.drain(), self.idle_timeout)


__all__ = ["ApiError", "HttpServer", "Request", "Response", "Router", "SocketPathInUse", "error_response",
           "json_response", "text_response"]
