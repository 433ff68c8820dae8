"""The proxy against real servers on loopback: a recording HTTP server (http.server, in a
thread) plays the upstream proxy and the origin; the guest is the near end of a socketpair
handed to the service exactly as the forwarder hands it over."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from fastnet.aio.forwarder import Handoff
from fastnet.services.config import NetworkConfig
from fastnet.services.proxy import (
    ALERT_ACCESS_DENIED, ALERT_INTERNAL_ERROR, ProxyService, parse_client_hello, split_host_port, tls_alert,
)
from fastnet.services.proxyconf import ProxyConfigSource

GUEST = ipaddress.IPv4Address("192.168.65.3")
GATEWAY = ipaddress.IPv4Address("192.168.65.1")
TIMEOUT = 10


# -- a recording HTTP server: the upstream proxy, or the origin ------------------------------------

class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _record(self, body: bytes = b"") -> None:
        self.server.log.append({"method": self.command, "target": self.path, "headers": dict(self.headers.items()),
                                "raw_headers": list(self.headers.items()), "body": body,
                                "peer": self.client_address, "version": self.request_version})

    def _send(self, status: int, body: bytes, headers=()) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_CONNECT(self):
        self._record()
        status = self.server.connect_status
        if status != 200:
            self._send(status, b"denied\n", [("Proxy-Authenticate", 'Basic realm="test"')])
            self.close_connection = True
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        # The tunnel: echo every byte back untouched, and keep what came for the test.
        conn = self.connection
        while True:
            data = conn.recv(65536)
            if not data:
                break
            self.server.tunnelled += data
            conn.sendall(data)
        self.close_connection = True

    def _handle(self):
        body = self._read_body() if self.command in ("POST", "PUT") else b""
        self._record(body)
        path = urlsplit(self.path).path if "://" in self.path else self.path
        if self.server.status == 407:
            self._send(407, b"auth please\n", [("Proxy-Authenticate", 'Basic realm="test"')])
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command != "HEAD":
                for part in (b"hello ", b"chunked ", b"world\n"):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
        elif path == "/upgrade":
            self.send_response(101)
            self.send_header("Upgrade", "echo")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            data = self.connection.recv(65536)
            self.connection.sendall(b"up:" + data)
            self.close_connection = True
        elif path == "/close":
            # No framing headers: the body ends when the server closes.
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until close\n")
            self.close_connection = True
        elif path == "/then-close":
            # Keep-alive as far as the headers say, but the server closes right after: the
            # next request must find a fresh upstream connection.
            self._send(200, b"bye\n")
            self.close_connection = True
        elif path == "/echo":
            self._send(200, b"got " + body)
        else:
            self._send(200, f"{self.command} {path} via {self.server.name}\n".encode(),
                       [("Content-Type", "text/plain")])

    do_GET = do_POST = do_HEAD = do_PUT = _handle


class Server:
    def __init__(self, name: str):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        self.httpd.daemon_threads = True
        self.httpd.name = name
        self.httpd.log = []
        self.httpd.status = 200
        self.httpd.connect_status = 200
        self.httpd.tunnelled = b""
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def log(self):
        return self.httpd.log

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def upstream():
    s = Server("proxy")
    yield s
    s.close()


@pytest.fixture
def origin():
    s = Server("origin")
    yield s
    s.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- driving the service --------------------------------------------------------------------------

def source(**overrides) -> ProxyConfigSource:
    return ProxyConfigSource(environ={}, system=False, overrides=overrides)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


async def guest_flow(service: ProxyService, kind: str, dst: tuple[str, int], cfg=None):
    """Open a guest connection as the forwarder would: kind is "http"/"https" (intercepted on
    its way to dst) or "explicit" (to gateway:3128)."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    tup = (GUEST, 40000, ipaddress.IPv4Address(dst[0]), dst[1])
    if kind == "explicit":
        service.explicit_handler(theirs, tup)
    else:
        service._handoff(kind, cfg or service.source.current, theirs, tup)
    ours.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=ours)
    service.guest_writers.append(writer)   # closed by service_for, whatever the test did
    return reader, writer


async def read_response(reader: asyncio.StreamReader, head: bool = False):
    """(status, headers, body) of one response, framed by hand (not by h11, which is under test)."""
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if head or status in (204, 304) or 100 <= status < 200:
        return status, headers, b""
    if "chunked" in headers.get("transfer-encoding", ""):
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, headers, body
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    return status, headers, await reader.read()


async def expect_eof(reader: asyncio.StreamReader) -> None:
    assert await asyncio.wait_for(reader.read(1), 5) == b""


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@contextlib.asynccontextmanager
async def service_for(src: ProxyConfigSource, network: NetworkConfig | None = None):
    svc = ProxyService(network or NetworkConfig(), src, loop=asyncio.get_running_loop())
    svc.guest_writers = []
    try:
        yield svc
    finally:
        for w in svc.guest_writers:
            w.close()
        svc.close()
        # Let the cancelled flows run their cleanup before the loop goes away.
        await asyncio.gather(*svc._tasks, return_exceptions=True)


# -- transparent HTTP ----------------------------------------------------------------------------------

def test_transparent_request_goes_to_the_upstream_in_absolute_form_with_credentials(upstream, origin):
    async def main():
        async with service_for(source(http=f"http://alice:pw@127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "http", ("127.0.0.1", origin.port))
            w.write(b"GET /hello?q=1 HTTP/1.1\r\nHost: web.test\r\nProxy-Authorization: Basic guest\r\n"
                    b"X-Custom: Kept\r\n\r\n")
            status, headers, body = await read_response(r)
            w.close()
            return status, body
    status, body = run(main())
    assert status == 200 and body == b"GET /hello via proxy\n"
    (req,) = upstream.log
    # The destination port the guest dialled is the port of the absolute URI.
    assert req["target"] == f"http://web.test:{origin.port}/hello?q=1"
    assert req["headers"]["Host"] == f"web.test:{origin.port}"
    assert req["headers"]["Proxy-Authorization"] == basic("alice", "pw")
    assert ("X-Custom", "Kept") in req["raw_headers"]
    assert origin.log == []


def test_keep_alive_reuses_one_upstream_connection(upstream):
    async def main():
        async with service_for(source(http=f"127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "http", ("10.0.0.1", 80))
            out = []
            for path in (b"/a", b"/b"):
                w.write(b"GET " + path + b" HTTP/1.1\r\nHost: web.test\r\n\r\n")
                out.append(await read_response(r))
            w.close()
            return out
    (s1, _, b1), (s2, _, b2) = run(main())
    assert (s1, b1, s2, b2) == (200, b"GET /a via proxy\n", 200, b"GET /b via proxy\n")
    assert [e["target"] for e in upstream.log] == ["http://web.test/a", "http://web.test/b"]
    assert upstream.log[0]["peer"] == upstream.log[1]["peer"]


def test_pipelined_requests_are_answered_in_order_and_head_has_no_body(upstream):
    async def main():
        async with service_for(source(http=f"127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "http", ("10.0.0.1", 80))
            w.write(b"GET /one HTTP/1.1\r\nHost: web.test\r\n\r\n"
                    b"HEAD /two HTTP/1.1\r\nHost: web.test\r\n\r\n"
                    b"HEAD /chunked HTTP/1.1\r\nHost: web.test\r\n\r\n"
                    b"GET /three HTTP/1.1\r\nHost: web.test\r\n\r\n")
            one = await read_response(r)
            two = await read_response(r, head=True)
            three = await read_response(r, head=True)
            four = await read_response(r)
            w.close()
            return one, two, three, four
    one, two, three, four = run(main())
    assert one[2] == b"GET /one via proxy\n"
    assert two[0] == 200 and two[1]["content-length"] == str(len(b"HEAD /two via proxy\n"))
    assert three[0] == 200 and three[1].get("transfer-encoding") == "chunked"
    assert four[2] == b"GET /three via proxy\n"     # framing intact after two HEADs
    assert [e["method"] for e in upstream.log] == ["GET", "HEAD", "HEAD", "GET"]


def test_chunked_bodies_both_ways(upstream):
    async def main():
        async with service_for(source(http=f"127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "http", ("10.0.0.1", 80))
            w.write(b"GET /chunked HTTP/1.1\r\nHost: web.test\r\n\r\n")
            got = await read_response(r)
            w.write(b"POST /echo HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            echoed = await read_response(r)
            w.close()
            return got, echoed
    got, echoed = run(main())
    assert got[1].get("transfer-encoding") == "chunked" and got[2] == b"hello chunked world\n"
    assert echoed[2] == b"got hello world"
    assert upstream.log[1]["body"] == b"hello world"


def test_expect_100_continue_is_relayed(upstream):
    async def main():
        async with service_for(source(http=f"127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "http", ("10.0.0.1", 80))
            w.write(b"POST /echo HTTP/1.1\r\nHost: web.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            interim = await read_response(r)
            w.write(b"data")
            final = await read_response(r)
            w.close()
            return interim, final
    interim, final = run(main())
    assert interim[0] == 100 and final == (200, final[1], b"got data")


def test_connection_close_from_the_guest_ends_the_connection(upstream):
    async def main():
        async with service_for(source(http=f"127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "http", ("10.0.0.1", 80))
            w.write(b"GET /x HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n")
            status, headers, body = await read_response(r)
            await expect_eof(r)
            return status, headers
    status, headers = run(main())
    assert status == 200 and headers.get("connection") == "close"
    # Hop-by-hop headers stay on their hop.
    assert "Connection" not in upstream.log[0]["headers"]


def test_http_1_0_gets_host_from_the_destination_and_a_close_delimited_body(upstream):
    async def main():
        async with service_for(source(http=f"127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "http", ("10.1.2.3", 8080))
            w.write(b"GET /chunked HTTP/1.0\r\n\r\n")
            raw = await asyncio.wait_for(r.read(), 5)   # to EOF: 1.0 ends with the connection
            return raw
    raw = run(main())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower() and b"connection: close" in head.lower()
    assert body == b"hello chunked world\n"
    assert upstream.log[0]["target"] == "http://10.1.2.3:8080/chunked"


def test_close_delimited_upstream_response_is_rechunked_for_a_1_1_guest(upstream):
    async def main():
        async with service_for(source(http=f"127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "http", ("10.0.0.1", 80))
            w.write(b"GET /close HTTP/1.1\r\nHost: web.test\r\n\r\n")
            first = await read_response(r)
            w.write(b"GET /after HTTP/1.1\r\nHost: web.test\r\n\r\n")
            second = await read_response(r)
            w.close()
            return first, second
    first, second = run(main())
    assert first[1].get("transfer-encoding") == "chunked" and first[2] == b"until close\n"
    assert second[2] == b"GET /after via proxy\n"   # a new upstream connection, same guest connection
    assert upstream.log[0]["peer"] != upstream.log[1]["peer"]


def test_unreachable_upstream_is_a_502_with_the_reason():
    port = closed_port()

    async def main():
        async with service_for(source(http=f"http://alice:pw@127.0.0.1:{port}")) as svc:
            r, w = await guest_flow(svc, "http", ("10.0.0.1", 80))
            w.write(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
            got = await read_response(r)
            await expect_eof(r)
            return got
    status, headers, body = run(main())
    assert status == 502 and headers["content-type"].startswith("text/html")
    assert f"cannot connect to the HTTP proxy 127.0.0.1:{port}".encode() in body
    assert b"refused" in body.lower()
    assert b"alice" not in body and b"pw@" not in body


def test_407_from_the_upstream_is_passed_through(upstream):
    upstream.httpd.status = 407

    async def main():
        async with service_for(source(http=f"127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "http", ("10.0.0.1", 80))
            w.write(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
            got = await read_response(r)
            w.close()
            return got
    status, headers, body = run(main())
    assert status == 407 and headers["proxy-authenticate"] == 'Basic realm="test"' and body == b"auth please\n"


def test_excluded_host_goes_straight_to_the_address_the_guest_dialled(upstream, origin):
    async def main():
        async with service_for(source(http=f"http://u:p@127.0.0.1:{upstream.port}", exclude="intra.test")) as svc:
            r, w = await guest_flow(svc, "http", ("127.0.0.1", origin.port))
            w.write(b"GET /doc HTTP/1.1\r\nHost: www.intra.test\r\n\r\n")
            got = await read_response(r)
            w.write(b"GET /doc HTTP/1.1\r\nHost: other.test\r\n\r\n")
            got2 = await read_response(r)
            w.close()
            return got, got2
    got, got2 = run(main())
    assert got[2] == b"GET /doc via origin\n" and got2[2] == b"GET /doc via proxy\n"
    (req,) = origin.log
    assert req["target"] == "/doc" and "Proxy-Authorization" not in req["headers"]
    assert [e["target"] for e in upstream.log] == [f"http://other.test:{origin.port}/doc"]


def test_upgrade_switches_to_a_byte_relay(upstream):
    async def main():
        async with service_for(source(http=f"127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "http", ("10.0.0.1", 80))
            w.write(b"GET /upgrade HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
            status, headers, _ = await read_response(r)
            w.write(b"raw bytes")
            data = await asyncio.wait_for(r.read(100), 5)
            w.close()
            return status, headers, data
    status, headers, data = run(main())
    assert status == 101 and headers["upgrade"] == "echo" and data == b"up:raw bytes"
    assert upstream.log[0]["headers"]["Upgrade"] == "echo"


def test_a_connection_keeps_its_configuration_and_new_ones_follow_changes(upstream, origin):
    async def main():
        src = source()
        src.set_api({"http": f"127.0.0.1:{upstream.port}"})
        async with service_for(src) as svc:
            r, w = await guest_flow(svc, "http", ("10.0.0.1", 80))
            w.write(b"GET /1 HTTP/1.1\r\nHost: web.test\r\n\r\n")
            await read_response(r)
            src.set_api({"http": f"127.0.0.1:{origin.port}"})   # "origin" now plays the proxy
            w.write(b"GET /2 HTTP/1.1\r\nHost: web.test\r\n\r\n")
            old = await read_response(r)
            r2, w2 = await guest_flow(svc, "http", ("10.0.0.1", 80))
            w2.write(b"GET /3 HTTP/1.1\r\nHost: web.test\r\n\r\n")
            new = await read_response(r2)
            w.close()
            w2.close()
            return old, new
    old, new = run(main())
    assert old[2] == b"GET /2 via proxy\n" and new[2] == b"GET /3 via origin\n"


def test_malformed_request_is_a_400():
    async def main():
        async with service_for(source(http="127.0.0.1:9")) as svc:
            r, w = await guest_flow(svc, "http", ("10.0.0.1", 80))
            w.write(b"NOT HTTP AT ALL\r\n\r\n")
            got = await read_response(r)
            await expect_eof(r)
            return got
    assert run(main())[0] == 400


# -- the explicit proxy on gateway:3128 -----------------------------------------------------------------

def test_explicit_proxy_forwards_absolute_requests_upstream(upstream):
    async def main():
        async with service_for(source(http=f"http://bob:pw@127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "explicit", (str(GATEWAY), 3128))
            w.write(b"GET http://web.test/page HTTP/1.1\r\nHost: web.test\r\nProxy-Connection: keep-alive\r\n\r\n")
            got = await read_response(r)
            w.close()
            return got
    status, _, body = run(main())
    assert status == 200 and body == b"GET /page via proxy\n"
    req = upstream.log[0]
    assert req["target"] == "http://web.test/page" and req["headers"]["Proxy-Authorization"] == basic("bob", "pw")
    assert "Proxy-Connection" not in req["headers"]


def test_explicit_proxy_goes_direct_without_an_upstream_or_when_excluded(upstream, origin):
    async def main():
        async with service_for(source()) as svc:
            r, w = await guest_flow(svc, "explicit", (str(GATEWAY), 3128))
            w.write(f"GET http://127.0.0.1:{origin.port}/direct HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            a = await read_response(r)
            w.close()
        async with service_for(source(http=f"127.0.0.1:{upstream.port}", exclude="127.0.0.0/8")) as svc:
            r, w = await guest_flow(svc, "explicit", (str(GATEWAY), 3128))
            w.write(f"GET http://127.0.0.1:{origin.port}/excluded HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            b = await read_response(r)
            w.close()
        return a, b
    a, b = run(main())
    assert a[2] == b"GET /direct via origin\n" and b[2] == b"GET /excluded via origin\n"
    assert [e["target"] for e in origin.log] == ["/direct", "/excluded"]
    assert origin.log[0]["headers"]["Host"] == f"127.0.0.1:{origin.port}"
    assert upstream.log == []


def test_explicit_proxy_answers_origin_form_with_400_and_guards_the_virtual_network():
    async def main():
        out = []
        async with service_for(source()) as svc:
            for request in (b"GET / HTTP/1.1\r\nHost: gateway.docker.internal:3128\r\n\r\n",
                            b"GET http://192.168.65.7/ HTTP/1.1\r\nHost: x\r\n\r\n",
                            b"CONNECT gateway.docker.internal:22 HTTP/1.1\r\nHost: x\r\n\r\n"):
                r, w = await guest_flow(svc, "explicit", (str(GATEWAY), 3128))
                w.write(request)
                out.append(await read_response(r))
                w.close()
        return out
    (s1, _, b1), (s2, _, b2), (s3, _, _) = run(main())
    assert s1 == 400 and b"absolute URI" in b1
    assert s2 == 403 and b"inside the virtual network" in b2
    assert s3 == 403


def test_explicit_connect_through_the_upstream_relays_bytes(upstream):
    async def main():
        async with service_for(source(https=f"http://carol:pw@127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "explicit", (str(GATEWAY), 3128))
            w.write(b"CONNECT secure.test:8443 HTTP/1.1\r\nHost: secure.test:8443\r\n\r\n")
            status, _, _ = await read_response(r, head=True)
            w.write(b"opaque tls bytes")
            echoed = await r.readexactly(len(b"opaque tls bytes"))
            w.close()
            return status, echoed
    status, echoed = run(main())
    assert status == 200 and echoed == b"opaque tls bytes"
    req = upstream.log[0]
    assert req["method"] == "CONNECT" and req["target"] == "secure.test:8443"
    assert req["headers"]["Proxy-Authorization"] == basic("carol", "pw")


def test_explicit_connect_refusal_is_passed_through(upstream):
    upstream.httpd.connect_status = 407

    async def main():
        async with service_for(source(http=f"127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "explicit", (str(GATEWAY), 3128))
            w.write(b"CONNECT secure.test:443 HTTP/1.1\r\nHost: secure.test:443\r\n\r\n")
            got = await read_response(r)
            await expect_eof(r)
            return got
    status, headers, body = run(main())
    assert status == 407 and headers["proxy-authenticate"] == 'Basic realm="test"' and body == b"denied\n"


def test_explicit_connect_direct_and_its_failure():
    async def echo(reader, writer):
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with service_for(source()) as svc:
                r, w = await guest_flow(svc, "explicit", (str(GATEWAY), 3128))
                w.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                ok = await read_response(r, head=True)
                w.write(b"ping")
                echoed = await r.read(100)
                r2, w2 = await guest_flow(svc, "explicit", (str(GATEWAY), 3128))
                w2.write(f"CONNECT 127.0.0.1:{closed_port()} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                failed = await read_response(r2)
                w.close()
                w2.close()
                return ok[0], echoed, failed
        finally:
            server.close()
    ok, echoed, failed = run(main())
    assert ok == 200 and echoed == b"ping"
    assert failed[0] == 502 and b"cannot connect to 127.0.0.1:" in failed[2]


# -- transparent HTTPS ----------------------------------------------------------------------------------

def client_hello(server_hostname: str) -> bytes:
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_client_hello_parser_needs_the_whole_message_and_finds_sni():
    hello = client_hello("www.Example.test")
    for n in range(len(hello)):
        assert parse_client_hello(hello[:n]) == (False, None), n
    assert parse_client_hello(hello) == (True, "www.example.test")
    assert parse_client_hello(client_hello("10.1.2.3")) == (True, None)   # no SNI for addresses
    assert parse_client_hello(b"GET / HTTP/1.1\r\n") == (True, None)


def test_client_hello_split_over_two_records():
    hello = client_hello("split.example.test")
    body = hello[5:]
    half = len(body) // 2
    version = hello[1:3]
    two = (b"\x16" + version + half.to_bytes(2, "big") + body[:half]
           + b"\x16" + version + (len(body) - half).to_bytes(2, "big") + body[half:])
    assert parse_client_hello(two[:-1]) == (False, None)
    assert parse_client_hello(two) == (True, "split.example.test")


def test_split_host_port():
    assert split_host_port("a.test:81", 80) == ("a.test", 81)
    assert split_host_port("A.test", 80) == ("a.test", 80)
    assert split_host_port("[::1]:443", None) == ("::1", 443)
    with pytest.raises(ValueError):
        split_host_port("a.test:x", 80)


async def _tls_through(svc, dst, hello, trickle=False):
    r, w = await guest_flow(svc, "https", dst)
    if trickle:  # one byte at a time: the ClientHello arrives in many reads
        for i in range(len(hello)):
            w.write(hello[i:i + 1])
            await w.drain()
            await asyncio.sleep(0)
    else:
        w.write(hello)
    w.write(b"+more")
    data = b""
    while len(data) < len(hello) + 5:
        chunk = await asyncio.wait_for(r.read(65536), 5)
        if not chunk:
            break
        data += chunk
    w.close()
    return data


@pytest.mark.parametrize("trickle", [False, True])
def test_tls_is_tunnelled_by_sni_name_and_the_dialled_port(upstream, trickle):
    hello = client_hello("secure.example.test")

    async def main():
        async with service_for(source(https=f"http://dave:pw@127.0.0.1:{upstream.port}")) as svc:
            return await _tls_through(svc, ("10.9.9.9", 8443), hello, trickle)
    data = run(main())
    assert data == hello + b"+more"            # relayed untouched, both ways
    assert upstream.httpd.tunnelled == hello + b"+more"
    req = upstream.log[0]
    assert req["method"] == "CONNECT" and req["target"] == "secure.example.test:8443"
    assert req["headers"]["Proxy-Authorization"] == basic("dave", "pw")


def test_tls_without_sni_is_tunnelled_to_the_address(upstream):
    hello = client_hello("10.9.9.9")

    async def main():
        async with service_for(source(https=f"127.0.0.1:{upstream.port}")) as svc:
            return await _tls_through(svc, ("10.9.9.9", 443), hello)
    assert run(main()) == hello + b"+more"
    assert upstream.log[0]["target"] == "10.9.9.9:443"


def test_tls_with_an_excluded_name_goes_direct(upstream):
    seen = bytearray()

    async def echo(reader, writer):
        data = await reader.read(65536)
        while data:
            seen.extend(data)
            writer.write(data)
            await writer.drain()
            if bytes(seen).endswith(b"+more"):
                break
            data = await reader.read(65536)
        writer.close()

    hello = client_hello("bank.internal.test")

    async def main():
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with service_for(source(https=f"127.0.0.1:{upstream.port}", exclude=".internal.test")) as svc:
                return await _tls_through(svc, ("127.0.0.1", port), hello)
        finally:
            server.close()
    assert run(main()) == hello + b"+more"
    assert bytes(seen) == hello + b"+more" and upstream.log == []


@pytest.mark.parametrize("refusal", ["down", "407"])
def test_tls_failure_is_a_tls_alert(upstream, refusal):
    upstream.httpd.connect_status = 407
    port = closed_port() if refusal == "down" else upstream.port
    hello = client_hello("secure.example.test")

    async def main():
        async with service_for(source(https=f"127.0.0.1:{port}")) as svc:
            r, w = await guest_flow(svc, "https", ("10.9.9.9", 443))
            w.write(hello)
            data = await asyncio.wait_for(r.read(), 5)
            w.close()
            return data
    data = run(main())
    want = ALERT_INTERNAL_ERROR if refusal == "down" else ALERT_ACCESS_DENIED
    assert data == tls_alert(want, hello)
    assert data[0] == 21 and data[-2:] == bytes([2, want])


# -- which flows are intercepted ---------------------------------------------------------------------

def test_interception_decisions():
    net = NetworkConfig()

    def decide(overrides, dst, port):
        svc = ProxyService(net, source(**overrides), loop=asyncio.new_event_loop())
        try:
            return svc.intercept(GUEST, ipaddress.IPv4Address(dst), port)
        finally:
            svc.loop.close()

    both = {"http": "127.0.0.1:3128", "https": "127.0.0.1:3128"}
    assert isinstance(decide(both, "93.184.216.34", 80), Handoff)
    assert isinstance(decide(both, "93.184.216.34", 443), Handoff)
    assert decide(both, "93.184.216.34", 22) is None
    assert decide(both, "192.168.65.1", 80) is None          # gateway
    assert decide(both, "192.168.65.2", 80) is None          # host alias
    assert decide(both, "192.168.65.9", 443) is None         # another guest
    assert decide({**both, "exclude": "93.184.0.0/16"}, "93.184.216.34", 80) is None
    assert decide({**both, "exclude": "93.184.216.34:443"}, "93.184.216.34", 443) is None
    assert isinstance(decide({**both, "exclude": "93.184.216.34:443"}, "93.184.216.34", 80), Handoff)
    assert decide({}, "93.184.216.34", 80) is None            # no upstream: plain NAT
    assert decide({"http": "127.0.0.1:3128"}, "93.184.216.34", 443) is None   # no https upstream
    assert decide({**both, "transparent": False}, "93.184.216.34", 80) is None
    assert isinstance(decide({**both, "transparent_http_ports": [8080]}, "93.184.216.34", 8080), Handoff)
    assert decide({**both, "transparent_http_ports": [8080]}, "93.184.216.34", 80) is None


def test_install_registers_the_gateway_service_and_the_interceptor():
    from fastnet.services.policy import NatPolicy

    net = NetworkConfig()
    policy = NatPolicy(net)
    loop = asyncio.new_event_loop()
    try:
        svc = ProxyService(net, source(http="127.0.0.1:3128"), loop=loop)
        svc.install(policy)
        assert policy.tcp_services[3128] == svc.explicit_handler
        assert isinstance(policy.tcp_target(GUEST, 40000, ipaddress.IPv4Address("93.184.216.34"), 80), Handoff)
        assert isinstance(policy.tcp_target(GUEST, 40000, GATEWAY, 3128), Handoff)
    finally:
        loop.close()


def test_without_credentials_of_its_own_the_guests_proxy_authorization_is_passed_on(upstream):
    async def main():
        async with service_for(source(http=f"127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "explicit", (str(GATEWAY), 3128))
            w.write(b"GET http://web.test/ HTTP/1.1\r\nHost: web.test\r\nProxy-Authorization: Basic Z3Vlc3Q=\r\n\r\n")
            await read_response(r)
            w.write(b"CONNECT secure.test:443 HTTP/1.1\r\nHost: secure.test:443\r\n"
                    b"Proxy-Authorization: Basic Z3Vlc3Q=\r\n\r\n")
            status, _, _ = await read_response(r, head=True)
            w.close()
            return status
    assert run(main()) == 200
    assert [e["headers"].get("Proxy-Authorization") for e in upstream.log] == ["Basic Z3Vlc3Q="] * 2


def test_explicit_proxy_never_sends_the_networks_own_names_upstream(upstream, origin):
    async def main():
        async with service_for(source(http=f"127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "explicit", (str(GATEWAY), 3128))
            w.write(f"GET http://host.docker.internal:{origin.port}/alias HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            got = await read_response(r)
            w.close()
            return got
    status, _, body = run(main())
    assert status == 200 and body == b"GET /alias via origin\n"   # the host alias is the host's loopback
    assert upstream.log == []


def test_an_upstream_that_closes_a_kept_alive_connection_is_replaced(upstream):
    async def main():
        async with service_for(source(http=f"127.0.0.1:{upstream.port}")) as svc:
            r, w = await guest_flow(svc, "http", ("10.0.0.1", 80))
            w.write(b"GET /then-close HTTP/1.1\r\nHost: web.test\r\n\r\n")
            first = await read_response(r)
            await asyncio.sleep(0.2)
            w.write(b"GET /next HTTP/1.1\r\nHost: web.test\r\n\r\n")
            second = await read_response(r)
            return first, second
    first, second = run(main())
    assert first[2] == b"bye\n" and second[2] == b"GET /next via proxy\n"
    assert upstream.log[0]["peer"] != upstream.log[1]["peer"]
