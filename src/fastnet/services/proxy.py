"""The HTTP/HTTPS proxy inside the virtual network (design: reference/vpnkit.md §5).

Two entry points, both fed with the guest's TCP byte stream (the far end of a socketpair that
the forwarder hands over) and both running on the network's event loop:

- The explicit proxy on gateway:3128: an ordinary HTTP proxy (absolute-URI requests and
  CONNECT). Each request goes to the upstream proxy, or directly when no upstream is set or
  the destination is excluded. Guests can be told ``HTTP_PROXY=http://gateway.docker.internal:3128``
  once: upstream changes, credentials and the exclude list are all handled here.
- The transparent interceptor, consulted by the NAT policy for every new guest TCP flow. When
  an upstream is configured (and ``transparent`` is not false), flows to the transparent HTTP
  ports (default 80) and HTTPS ports (default 443) of destinations outside the virtual network
  are taken over:
  - HTTP/1.x is parsed with h11 and each request is sent to the upstream proxy in absolute
    form with its credentials; keep-alive and pipelining are kept (requests are answered in
    order, one upstream connection per guest connection), HEAD and chunked bodies are framed
    by h11, ``Connection: close`` and HTTP/1.0 end the connection after the response.
    A request whose Host is excluded goes straight to the address the guest dialled.
  - TLS: the ClientHello is read (and kept) to learn the server name (SNI); the exclude list
    is applied to the name and to the address; otherwise ``CONNECT name:port`` (the address
    when there is no SNI, the port the guest dialled, not a fixed 443) goes to the upstream,
    and after its 2xx the ClientHello and everything after it are relayed untouched. This
    lifts vpnkit's limit of tunnelling HTTPS to the address only, where domain excludes could
    never apply.
  Destinations whose address is excluded are not intercepted at all (plain NAT).

Failures reach the guest as HTTP errors, not resets: 502 with the reason when the upstream or
the destination cannot be reached, the upstream's own answer (407 included) passed through.
On the TLS path, where the guest expects a ServerHello, the failure is a TLS alert
(access_denied for a refused CONNECT, internal_error otherwise) and a warning in the log.

Each guest connection takes the configuration in force when it starts and keeps it. The
upstream's credentials are added as Proxy-Authorization; a guest's own Proxy-Authorization
is removed. Direct connections are ordinary host sockets (from ``outbound_address`` if set).
"""

from __future__ import annotations

import asyncio
import functools
import html
import http
import ipaddress
import logging
import os
import socket
from urllib.parse import urlsplit

import h11

from fastnet.aio.forwarder import Handoff
from fastnet.services.config import NetworkConfig
from fastnet.services.proxyconf import (
    EXPLICIT_PROXY_PORT, ProxyConfig, ProxyConfigSource, ProxyServer, is_loopback_host, own_names,
)

log = logging.getLogger("fastnet.proxy")

READ_SIZE = 65536
HELLO_TIMEOUT = 10.0        # a TLS client sends its ClientHello at once; after this, give up on SNI
HELLO_LIMIT = 1 << 16       # a ClientHello never needs more (records are at most 16 KiB each)

# Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus the proxy ones we
# own: never forwarded as they came.
_HOP_REQUEST = {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization", b"te", b"upgrade"}
_HOP_RESPONSE = {b"connection", b"keep-alive", b"proxy-connection", b"upgrade"}

TLS_HANDSHAKE = 22
TLS_ALERT = 21
ALERT_ACCESS_DENIED = 49
ALERT_INTERNAL_ERROR = 80


class ProxyError(Exception):
    """A failure answered with an HTTP error: status and a reason for the guest."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Stale(Exception):
    """A reused upstream connection closed before answering: the request may be retried."""


def _oserror_text(e: BaseException) -> str:
    if isinstance(e, socket.gaierror):
        return f"name not resolved ({e.strerror or e})"
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno)  # asyncio's strerror is "Connect call failed (...)"
    return str(e) or type(e).__name__


def error_response(status: int, reason: str, *, head: bool = False) -> bytes:
    """A small HTML error page, always ending the connection (the request's body, if any, may
    still be on its way, so the connection cannot be reused)."""
    title = f"{status} {h11_reason(status)}"
    body = (f"<html><head><title>{title}</title></head><body><h1>{title}</h1>"
            f"<p>fastnet: {html.escape(reason)}</p></body></html>\n").encode()
    head_bytes = (f"HTTP/1.1 {title}\r\nContent-Type: text/html; charset=utf-8\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return head_bytes if head else head_bytes + body


def h11_reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def split_host_port(authority: str, default_port: int | None) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` → (host without brackets, port)."""
    authority = authority.strip()
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ValueError(f"bad authority {authority!r}")
        host, rest = authority[1:end], authority[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad authority {authority!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = authority.rpartition(":")
        if not sep:
            host, port_text = authority, ""
    if not host:
        raise ValueError(f"no host in {authority!r}")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad port in {authority!r}")
        return host.lower(), int(port_text)
    return host.lower(), default_port


def join_host_port(host: str, port: int | None, default: int | None = None) -> str:
    h = f"[{host}]" if ":" in host else host
    return h if port is None or port == default else f"{h}:{port}"


# -- TLS ClientHello ------------------------------------------------------------------------------

def parse_client_hello(buf: bytes) -> tuple[bool, str | None]:
    """(complete, server_name) for the bytes a TLS client sent so far. ``complete`` is False
    while more bytes are needed to see the whole ClientHello; then ``server_name`` is the SNI
    host name, or None (no SNI, not TLS, or malformed: the caller then tunnels to the address)."""
    if not buf:
        return False, None
    if buf[0] != TLS_HANDSHAKE:
        return True, None
    # The handshake message may span several records: gather their fragments in order.
    hs = bytearray()
    pos = 0
    while True:
        if len(buf) - pos < 5:
            return len(buf) >= HELLO_LIMIT, None
        ctype, length = buf[pos], int.from_bytes(buf[pos + 3:pos + 5], "big")
        if ctype != TLS_HANDSHAKE or length == 0 or length > 16384 + 2048:
            return True, None
        if len(buf) - pos - 5 < length:
            return len(buf) >= HELLO_LIMIT, None
        hs += buf[pos + 5:pos + 5 + length]
        pos += 5 + length
        if len(hs) >= 4:
            if hs[0] != 1:  # not a ClientHello
                return True, None
            need = 4 + int.from_bytes(hs[1:4], "big")
            if len(hs) >= need:
                return True, _sni(bytes(hs[4:need]))
            if need > HELLO_LIMIT:
                return True, None


def _sni(body: bytes) -> str | None:
    """The host_name of the server_name extension (RFC 6066 §3) in a ClientHello body."""
    try:
        p = 2 + 32                                   # client_version, random
        p += 1 + body[p]                             # session_id
        p += 2 + int.from_bytes(body[p:p + 2], "big")  # cipher_suites
        p += 1 + body[p]                             # compression_methods
        if p + 2 > len(body):
            return None                              # no extensions at all
        end = p + 2 + int.from_bytes(body[p:p + 2], "big")
        p += 2
        if end > len(body):
            return None
        while p + 4 <= end:
            etype, elen = int.from_bytes(body[p:p + 2], "big"), int.from_bytes(body[p + 2:p + 4], "big")
            data = body[p + 4:p + 4 + elen]
            p += 4 + elen
            if etype != 0:
                continue
            q = 2
            list_end = min(2 + int.from_bytes(data[0:2], "big"), len(data))
            while q + 3 <= list_end:
                ntype, nlen = data[q], int.from_bytes(data[q + 1:q + 3], "big")
                name = data[q + 3:q + 3 + nlen]
                q += 3 + nlen
                if ntype == 0:
                    return _valid_name(name)
            return None
    except IndexError:
        return None
    return None


def _valid_name(raw: bytes) -> str | None:
    try:
        name = raw.decode("ascii").lower().rstrip(".")
    except UnicodeDecodeError:
        return None
    if not name or len(name) > 253 or not all(c.isalnum() or c in "-._" for c in name):
        return None
    return name


async def read_client_hello(reader: asyncio.StreamReader, timeout: float = HELLO_TIMEOUT) -> tuple[bytes, str | None]:
    """Read until the ClientHello is complete (or it is clear there is none); return every byte
    read, to be replayed, and the SNI name."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    buf = bytearray()
    while True:
        complete, name = parse_client_hello(buf)
        if complete:
            return bytes(buf), name
        left = deadline - loop.time()
        if left <= 0:
            return bytes(buf), None
        try:
            chunk = await asyncio.wait_for(reader.read(READ_SIZE), left)
        except asyncio.TimeoutError:
            return bytes(buf), None
        if not chunk:
            return bytes(buf), None
        buf += chunk


def tls_alert(description: int, hello: bytes = b"") -> bytes:
    """A fatal TLS alert record, in the record version the client used."""
    version = hello[1:3] if len(hello) >= 3 and hello[0] == TLS_HANDSHAKE else b"\x03\x01"
    return bytes([TLS_ALERT]) + version + b"\x00\x02" + bytes([2, description])


# -- byte relays -----------------------------------------------------------------------------------

async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        data = await reader.read(READ_SIZE)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    # Half-close: the other direction may still be carrying data (RFC 9293 §3.6).
    if writer.can_write_eof() and not writer.is_closing():
        try:
            writer.write_eof()
        except OSError:
            pass


async def relay(r1: asyncio.StreamReader, w1: asyncio.StreamWriter,
                r2: asyncio.StreamReader, w2: asyncio.StreamWriter) -> None:
    """Copy bytes both ways until both directions are done; an error on one side aborts both
    (a reset must not leave the other side waiting forever)."""
    tasks = {asyncio.ensure_future(_pipe(r1, w2)), asyncio.ensure_future(_pipe(r2, w1))}
    try:
        pending = tasks
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(t.exception() is not None for t in done):
                break
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in (w1, w2):
            _abort_or_close(w)


def _abort_or_close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None and not writer.is_closing():
        writer.close()


# -- h11 over asyncio streams ------------------------------------------------------------------------

class _Http:
    """One side of an HTTP/1.x connection: an h11 state machine over a stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, role):
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(role)
        self.received_any = False

    async def event(self):
        while True:
            ev = self.conn.next_event()
            if ev is not h11.NEED_DATA:
                return ev
            data = await self.reader.read(READ_SIZE)
            if data:
                self.received_any = True
            self.conn.receive_data(data)

    def send(self, event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def reusable(self) -> bool:
        return (self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE
                and not self.reader.at_eof() and not self.writer.is_closing())

    def close(self) -> None:
        _abort_or_close(self.writer)


def _connection_tokens(headers) -> set[bytes]:
    out = set()
    for name, value in headers:
        if name == b"connection":
            out.update(t.strip().lower() for t in value.split(b","))
    return out


def _forward_headers(headers: h11.Headers, drop: set[bytes], *, keep_upgrade: bool = False) -> list:
    """The end-to-end headers, original spelling kept, without hop-by-hop ones."""
    named = _connection_tokens(headers) - {b"close", b"keep-alive", b"upgrade"}
    out = []
    for raw_name, value in headers.raw_items():
        name = raw_name.lower()
        if name == b"upgrade" and keep_upgrade:
            out.append((raw_name, value))
            continue
        if name in drop or name in named:
            continue
        out.append((raw_name, value))
    if keep_upgrade:
        out.append((b"Connection", b"upgrade"))
    return out


# -- the service --------------------------------------------------------------------------------------

class ProxyService:
    """The explicit proxy and the transparent interceptor for one virtual network."""

    def __init__(self, network: NetworkConfig, source: ProxyConfigSource, *,
                 loop: asyncio.AbstractEventLoop | None = None):
        self.network = network
        self.source = source
        self.loop = loop or asyncio.get_event_loop()
        self._tasks: set[asyncio.Task] = set()

    # -- hooking into the NAT policy --------------------------------------------------------------

    def install(self, policy) -> None:
        """Register on a NatPolicy: gateway:3128 and the interceptor."""
        policy.tcp_services[EXPLICIT_PROXY_PORT] = self.explicit_handler
        policy.tcp_interceptors.append(self.intercept)

    def intercept(self, guest_ip, dst_ip, dst_port: int):
        """The NAT policy asks this for every new guest TCP flow: a Handoff or None (NAT)."""
        cfg = self.source.current
        net = self.network
        if dst_ip in net.subnet or dst_ip.is_loopback or dst_ip.is_multicast or dst_ip.is_unspecified:
            return None  # the gateway, the host alias and guests are never proxied (vpnkit too)
        if dst_port in cfg.intercept_http_ports:
            kind = "http"
        elif dst_port in cfg.intercept_https_ports:
            kind = "https"
        else:
            return None
        if cfg.excluded(str(dst_ip), dst_port):
            return None
        return Handoff(functools.partial(self._handoff, kind, cfg))

    def explicit_handler(self, sock: socket.socket, tup) -> None:
        """tcp_services[3128]: the guest's connection to the explicit proxy."""
        self._handoff("explicit", self.source.current, sock, tup)

    def _handoff(self, kind: str, cfg: ProxyConfig, sock: socket.socket, tup) -> None:
        task = self.loop.create_task(self._serve(kind, cfg, sock, tup))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _serve(self, kind: str, cfg: ProxyConfig, sock: socket.socket, tup) -> None:
        gip, gport, dip, dport = tup
        try:
            reader, writer = await asyncio.open_connection(sock=sock)
        except OSError:
            sock.close()
            return
        try:
            if kind == "https":
                await self._serve_tls(cfg, reader, writer, dip, dport)
            else:
                await _HttpSession(self, cfg, reader, writer,
                                   None if kind == "explicit" else (dip, dport)).run()
        except asyncio.CancelledError:
            raise
        except (ConnectionError, OSError) as e:
            log.debug("%s flow %s:%d -> %s:%d ended: %s", kind, gip, gport, dip, dport, _oserror_text(e))
        except Exception:
            log.exception("%s flow %s:%d -> %s:%d failed", kind, gip, gport, dip, dport)
        finally:
            _abort_or_close(writer)

    # -- connections out ---------------------------------------------------------------------------

    async def open_upstream(self, server: ProxyServer):
        try:
            return await asyncio.wait_for(asyncio.open_connection(server.host, server.port),
                                          self.network.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise ProxyError(502, f"cannot connect to the HTTP proxy {server.address}: {_oserror_text(e)}") from None

    async def open_direct(self, host: str, port: int):
        bind = self.network.outbound_address
        kw = {"local_addr": (bind, 0)} if bind and not is_loopback_host(host) else {}
        try:
            return await asyncio.wait_for(asyncio.open_connection(host, port, **kw), self.network.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise ProxyError(502, f"cannot connect to {join_host_port(host, port)}: {_oserror_text(e)}") from None

    def is_internal(self, host: str) -> bool:
        """A name or address of the virtual network itself: never sent to an upstream proxy,
        which could not know it."""
        name = host.lower().rstrip(".")
        host_names, gateway_names = own_names(self.network)
        if name in host_names or name in gateway_names:
            return True
        try:
            addr = ipaddress.ip_address(name)
        except ValueError:
            return False
        return addr.version == 4 and addr in self.network.subnet

    def direct_target(self, host: str, port: int) -> tuple[str, int]:
        """Where the explicit proxy connects for a destination it reaches directly. The virtual
        network's own addresses and names keep their meaning (the host alias is the host's
        loopback when that is allowed); nothing else inside the virtual subnet is reachable."""
        net = self.network
        loopback_ok = net.host_alias is not None and net.host_loopback
        name = host.lower().rstrip(".")
        try:
            addr = ipaddress.ip_address(name)
        except ValueError:
            addr = None
        host_names, gateway_names = own_names(net)
        if name in host_names or (addr is not None and net.host_alias is not None and addr == net.host_alias):
            if not loopback_ok:
                raise ProxyError(403, f"{host} (the host's loopback) is not reachable from this network")
            return "127.0.0.1", port
        if name in gateway_names or (addr is not None and addr.version == 4 and addr in net.subnet):
            raise ProxyError(403, f"{host} is inside the virtual network, not behind this proxy")
        if is_loopback_host(name) and not loopback_ok:
            raise ProxyError(403, f"{host} (the host's loopback) is not reachable from this network")
        return name, port

    # -- TLS --------------------------------------------------------------------------------------

    async def _serve_tls(self, cfg: ProxyConfig, reader, writer, dst_ip, dst_port: int) -> None:
        hello, name = await read_client_hello(reader)
        # (the address itself was checked before the connection was handed over: intercept())
        excluded = name is not None and cfg.excluded(name, dst_port)
        server = cfg.https
        if excluded or server is None:
            try:
                up_reader, up_writer = await self.open_direct(str(dst_ip), dst_port)
            except ProxyError as e:
                log.warning("TLS to %s: %s", name or dst_ip, e.reason)
                writer.write(tls_alert(ALERT_INTERNAL_ERROR, hello))
                await writer.drain()
                return
            trailing = b""
        else:
            authority = join_host_port(name or str(dst_ip), dst_port)
            try:
                up_reader, up_writer, trailing = await self._tunnel(server, authority)
            except ProxyError as e:
                answer = getattr(e, "response", None)
                if answer is not None:  # the refusal's body is of no use to a TLS client
                    answer[1].close()
                log.warning("TLS to %s: %s", authority, e.reason)
                alert = ALERT_ACCESS_DENIED if e.status in (403, 407) else ALERT_INTERNAL_ERROR
                writer.write(tls_alert(alert, hello))
                await writer.drain()
                return
        try:
            if trailing:  # bytes the proxy sent after its 2xx: the start of the server's reply
                writer.write(trailing)
            up_writer.write(hello)
            await up_writer.drain()
        except BaseException:  # failed or cancelled before relay() took the connection over
            _abort_or_close(up_writer)
            raise
        await relay(reader, writer, up_reader, up_writer)

    async def _tunnel(self, server: ProxyServer, authority: str, auth_headers: list | None = None):
        """CONNECT authority through the upstream, authenticating with auth_headers (default:
        the server's credentials). Returns (reader, writer, bytes after the 2xx). A refusal
        raises ProxyError with the status, and with ``response`` = (the h11 Response, the
        upstream connection) so the explicit proxy can pass the whole answer on."""
        up_reader, up_writer = await self.open_upstream(server)
        up = _Http(up_reader, up_writer, h11.CLIENT)
        if auth_headers is None:
            auth_headers = [(b"Proxy-Authorization", server.authorization.encode())] if server.authorization else []
        headers = [(b"Host", authority.encode()), *auth_headers]
        try:
            up.send(h11.Request(method=b"CONNECT", target=authority.encode(), headers=headers))
            up.send(h11.EndOfMessage())
            await up.drain()
            ev = await up.event()
            while isinstance(ev, h11.InformationalResponse):
                ev = await up.event()
        except (OSError, h11.ProtocolError) as e:
            up.close()
            raise ProxyError(502, f"the HTTP proxy {server.address} failed: {_oserror_text(e)}") from None
        except BaseException:  # cancelled: the connection is ours to close
            up.close()
            raise
        if not isinstance(ev, h11.Response):
            up.close()
            raise ProxyError(502, f"the HTTP proxy {server.address} closed the connection")
        if 200 <= ev.status_code < 300:
            trailing, _ = up.conn.trailing_data
            return up_reader, up_writer, bytes(trailing)
        err = ProxyError(ev.status_code, f"the HTTP proxy {server.address} refused CONNECT {authority}: "
                                         f"{ev.status_code} {ev.reason.decode('latin-1')}")
        err.response = (ev, up)  # type: ignore[attr-defined]
        raise err


class _HttpSession:
    """One guest HTTP connection: to the explicit proxy (dst is None) or intercepted on its
    way to dst = (address, port)."""

    def __init__(self, service: ProxyService, cfg: ProxyConfig, reader, writer, dst):
        self.service = service
        self.cfg = cfg
        self.guest = _Http(reader, writer, h11.SERVER)
        self.dst = dst
        self.up: _Http | None = None
        self.up_key: tuple | None = None

    # -- the request loop ------------------------------------------------------------------------

    async def run(self) -> None:
        guest = self.guest
        try:
            while True:
                try:
                    ev = await guest.event()
                except h11.RemoteProtocolError as e:
                    self._write_error(e.error_status_hint, f"malformed request: {e}")
                    return
                if not isinstance(ev, h11.Request):
                    return  # ConnectionClosed: the guest is done
                try:
                    keep = await self._request(ev)
                except ProxyError as e:
                    log.info("%s %s: %s", ev.method.decode("latin-1"), self._where(ev), e.reason)
                    if guest.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        self._write_error(e.status, e.reason, head=ev.method == b"HEAD")
                    return
                # The guest's h11 state decides, not its socket: pipelined requests may still be
                # buffered after the guest half-closed.
                if not keep or guest.conn.our_state is not h11.DONE or guest.conn.their_state is not h11.DONE:
                    return
                guest.conn.start_next_cycle()
        finally:
            if self.up is not None:
                self.up.close()
            await self._flush()

    async def _flush(self) -> None:
        try:
            await asyncio.wait_for(self.guest.drain(), 10)
        except (OSError, asyncio.TimeoutError):
            pass

    def _write_error(self, status: int, reason: str, head: bool = False) -> None:
        if not self.guest.writer.is_closing():
            self.guest.writer.write(error_response(status, reason, head=head))

    def _where(self, req: h11.Request) -> str:
        """The request's destination for logs: never the path or query (they may carry tokens)."""
        try:
            scheme, host, port, _ = self._target(req)
            return f"{scheme}://{join_host_port(host, port, 80 if scheme == 'http' else None)}"
        except ProxyError:
            return "?"

    # -- where a request goes ---------------------------------------------------------------------

    def _target(self, req: h11.Request) -> tuple[str, str, int, bytes]:
        """(scheme, host, port, origin-form path) of a request."""
        target = req.target
        host_header = next((v for n, v in req.headers if n == b"host"), None)
        if target.startswith(b"/") or target == b"*":
            if self.dst is None:
                raise ProxyError(400, "this is an HTTP proxy: requests need an absolute URI (http://host/path)")
            if host_header:
                try:
                    host, port = split_host_port(host_header.decode("latin-1"), None)
                except ValueError as e:
                    raise ProxyError(400, f"bad Host header: {e}") from None
            else:
                host, port = str(self.dst[0]), None
            return "http", host, port if port is not None else self.dst[1], target
        try:
            parts = urlsplit(target.decode("latin-1"))
            port = parts.port
        except ValueError as e:
            raise ProxyError(400, f"bad request target: {e}") from None
        scheme = parts.scheme.lower()
        if not scheme or not parts.hostname:
            raise ProxyError(400, "bad request target")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        default = 80 if scheme == "http" else 443 if scheme == "https" else None
        return scheme, parts.hostname.lower(), port or default or 0, path.encode("latin-1")

    async def _request(self, req: h11.Request) -> bool:
        """Forward one request and its response; False when the guest connection must end."""
        if req.method == b"CONNECT":
            await self._connect(req)
            return False
        cfg = self.cfg
        scheme, host, port, path = self._target(req)
        # A transparent session's address passed the exclude list before it was handed over
        # (intercept()); the name in the request is checked here.
        excluded = cfg.excluded(host, port) or (self.dst is None and self.service.is_internal(host))
        server = cfg.http
        authority = join_host_port(host, port, 80 if scheme == "http" else 443 if scheme == "https" else None)
        if server is not None and not excluded:
            key: tuple = ("proxy", server)
            target = f"{scheme}://{authority}".encode("latin-1") + path
        else:
            if scheme != "http":
                raise ProxyError(501, f"{scheme}:// requests are only forwarded to an upstream proxy")
            connect = (str(self.dst[0]), self.dst[1]) if self.dst is not None else self.service.direct_target(host, port)
            key = ("direct",) + connect
            target = path
        upgrading = b"upgrade" in _connection_tokens(req.headers) and any(n == b"upgrade" for n, _ in req.headers)
        headers = _forward_headers(req.headers, _HOP_REQUEST | {b"host"}, keep_upgrade=upgrading)
        # A proxy replaces Host with the authority of an absolute URI (RFC 9112 §3.2.2).
        headers.insert(0, (b"Host", authority.encode("latin-1")))
        if key[0] == "proxy":
            headers += self._proxy_auth(req, server)
        log.debug("%s %s -> %s", req.method.decode("latin-1"), self._where(req),
                  server.display() if key[0] == "proxy" else "direct")
        try:
            out = h11.Request(method=req.method, target=target, headers=headers)
        except h11.LocalProtocolError as e:
            raise ProxyError(400, f"cannot forward this request: {e}") from None
        has_body = any(n in (b"content-length", b"transfer-encoding") and v not in (b"0",) for n, v in req.headers)
        for attempt in (1, 2):
            reused = await self._upstream(key)
            try:
                return await self._exchange(out, upgrading)
            except _Stale:
                # A kept-alive upstream connection closed before answering: retry once on a
                # fresh one, which is safe only while no body has been consumed.
                self.up.close()
                self.up = None
                if not reused or has_body or attempt == 2:
                    raise ProxyError(502, f"{self._peer_name(key)} closed the connection") from None
        return False

    def _proxy_auth(self, req: h11.Request, server: ProxyServer) -> list:
        """Our credentials for the upstream; without any, the guest's own (a guest told of a
        proxy may answer its 407 itself). Never both."""
        if server.authorization:
            return [(b"Proxy-Authorization", server.authorization.encode())]
        return [(b"Proxy-Authorization", v) for n, v in req.headers if n == b"proxy-authorization"][:1]

    def _peer_name(self, key: tuple) -> str:
        return f"the HTTP proxy {key[1].address}" if key[0] == "proxy" else join_host_port(key[1], key[2])

    async def _upstream(self, key: tuple) -> bool:
        """Make self.up a connection for key; True when an existing one is reused."""
        if self.up is not None and self.up_key == key and self.up.reusable():
            self.up.conn.start_next_cycle()
            return True
        if self.up is not None:
            self.up.close()
            self.up = None
        if key[0] == "proxy":
            reader, writer = await self.service.open_upstream(key[1])
        else:
            reader, writer = await self.service.open_direct(key[1], key[2])
        self.up = _Http(reader, writer, h11.CLIENT)
        self.up_key = key
        return False

    async def _exchange(self, out: h11.Request, upgrading: bool) -> bool:
        guest, up = self.guest, self.up
        assert up is not None
        try:
            up.send(out)
            await up.drain()
        except h11.LocalProtocolError as e:
            raise ProxyError(400, f"cannot forward this request: {e}") from None
        except OSError:
            raise _Stale() from None
        up.received_any = False
        pump = asyncio.ensure_future(self._pump_body(up))
        answer = asyncio.ensure_future(self._relay_response(up, upgrading))
        try:
            pending = {pump, answer}
            while answer in pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if pump in done and pump.exception() is not None:
                    return False  # the guest went away or sent a broken body: nothing to answer
            result = answer.result()   # raises ProxyError / _Stale for the caller
            if not pump.done() and guest.conn.their_state is h11.DONE:
                await pump  # the whole body is in: only its last write is still draining
        finally:
            for t in (pump, answer):
                if not t.done():
                    t.cancel()
            await asyncio.gather(pump, answer, return_exceptions=True)
        if result == "switched":
            return False
        if pump.cancelled() or pump.exception() is not None:
            return False  # answered before the whole request body: the connection cannot go on
        if not up.reusable():
            up.close()
            self.up = None
        return True

    async def _pump_body(self, up: _Http) -> None:
        guest = self.guest
        if guest.conn.their_state is h11.DONE:
            # A retry (see _request): the request, which had no body, was already read.
            up.send(h11.EndOfMessage())
            await up.drain()
            return
        while True:
            ev = await guest.event()
            if not isinstance(ev, (h11.Data, h11.EndOfMessage)):
                raise ConnectionError("the guest closed the connection during the request")
            try:
                up.send(ev)
                await up.drain()
            except OSError:
                # The upstream went away mid-body: its side of the exchange reports that
                # (an early answer, or a 502), so stop quietly here.
                return
            if isinstance(ev, h11.EndOfMessage):
                return

    async def _relay_response(self, up: _Http, upgrading: bool) -> str:
        guest = self.guest
        started = False
        guest_11 = self._guest_version() >= (1, 1)
        try:
            while True:
                try:
                    ev = await up.event()
                except (h11.RemoteProtocolError, OSError) as e:
                    if not started and not up.received_any:
                        raise _Stale() from None
                    if not started:
                        raise ProxyError(502, f"bad answer from upstream: {_oserror_text(e)}") from None
                    raise ConnectionError("upstream failed during the response") from None
                if isinstance(ev, h11.InformationalResponse):
                    if ev.status_code == 101 and upgrading:
                        guest.send(h11.InformationalResponse(status_code=101, reason=ev.reason,
                                                             headers=_forward_headers(ev.headers, _HOP_RESPONSE,
                                                                                      keep_upgrade=True)))
                        await guest.drain()
                        await self._switch(up)
                        return "switched"
                    if guest_11 and ev.status_code != 101:
                        guest.send(h11.InformationalResponse(status_code=ev.status_code, reason=ev.reason,
                                                             headers=_forward_headers(ev.headers, _HOP_RESPONSE)))
                        await guest.drain()
                    continue
                if isinstance(ev, h11.Response):
                    started = True
                    guest.send(h11.Response(status_code=ev.status_code, reason=ev.reason,
                                            headers=_forward_headers(ev.headers, _HOP_RESPONSE)))
                elif isinstance(ev, h11.Data):
                    guest.send(ev)
                    await guest.drain()
                elif isinstance(ev, h11.EndOfMessage):
                    guest.send(ev)
                    await guest.drain()
                    return "done"
                else:  # ConnectionClosed before a response
                    if not started and not up.received_any:
                        raise _Stale()
                    if not started:
                        raise ProxyError(502, "the upstream closed the connection without answering")
                    raise ConnectionError("upstream closed during the response")
        except h11.LocalProtocolError as e:
            raise ConnectionError(f"cannot relay the response: {e}") from None

    def _guest_version(self) -> tuple[int, int]:
        v = self.guest.conn.their_http_version or b"1.1"
        major, _, minor = v.partition(b".")
        return int(major), int(minor or 0)

    async def _switch(self, up: _Http) -> None:
        """After a 101: both sides speak the new protocol; relay raw bytes."""
        guest = self.guest
        g_trailing, _ = guest.conn.trailing_data
        u_trailing, _ = up.conn.trailing_data
        if g_trailing:
            up.writer.write(bytes(g_trailing))
        if u_trailing:
            guest.writer.write(bytes(u_trailing))
        self.up = None
        await relay(guest.reader, guest.writer, up.reader, up.writer)

    # -- CONNECT ----------------------------------------------------------------------------------

    async def _connect(self, req: h11.Request) -> None:
        guest, cfg = self.guest, self.cfg
        try:
            host, port = split_host_port(req.target.decode("latin-1"), None)
        except ValueError as e:
            raise ProxyError(400, f"bad CONNECT target: {e}") from None
        if port is None:
            raise ProxyError(400, "CONNECT needs host:port")
        authority = join_host_port(host, port)
        server = cfg.https or cfg.http
        if server is not None and not cfg.excluded(host, port) and not self.service.is_internal(host):
            log.debug("CONNECT %s -> %s", authority, server.display())
            try:
                up_reader, up_writer, trailing = await self.service._tunnel(server, authority,
                                                                            self._proxy_auth(req, server))
            except ProxyError as e:
                answer = getattr(e, "response", None)
                if answer is None:
                    raise
                await self._pass_refusal(*answer)
                return
        else:
            up_reader, up_writer = await self.service.open_direct(*self.service.direct_target(host, port))
            trailing = b""
        try:
            guest.send(h11.Response(status_code=200, reason=b"Connection established", headers=[]))
            g_trailing, _ = guest.conn.trailing_data
            await guest.drain()
            if g_trailing:
                up_writer.write(bytes(g_trailing))
            if trailing:
                guest.writer.write(trailing)
        except BaseException:  # failed or cancelled before relay() took the connection over
            _abort_or_close(up_writer)
            raise
        await relay(guest.reader, guest.writer, up_reader, up_writer)

    async def _pass_refusal(self, response: h11.Response, up: _Http) -> None:
        """Give the guest the upstream's non-2xx answer to CONNECT (407, 403...) with its body."""
        guest = self.guest
        headers = _forward_headers(response.headers, _HOP_RESPONSE) + [(b"Connection", b"close")]
        guest.send(h11.Response(status_code=response.status_code, reason=response.reason, headers=headers))
        try:
            while True:
                ev = await asyncio.wait_for(up.event(), self.service.network.connect_timeout)
                if isinstance(ev, h11.Data):
                    guest.send(ev)
                elif isinstance(ev, h11.EndOfMessage):
                    guest.send(ev)
                    break
                else:
                    break
        except (OSError, h11.ProtocolError, asyncio.TimeoutError):
            pass
        finally:
            up.close()
        await guest.drain()
