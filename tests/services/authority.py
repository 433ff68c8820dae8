"""A small authoritative DNS server for tests: dnspython, UDP and TCP on one loopback port, in
a background thread. It is the only upstream fastnet's DNS service ever talks to in the tests —
no test query reaches this machine's own resolver.

It serves fixed zones (every record type the service must forward), honours the client's EDNS0
size by setting TC (as real servers do), records every query it gets, and can be told to
misbehave: answer SERVFAIL, stay silent, answer slowly, or refuse TCP."""

from __future__ import annotations

import socket
import struct
import threading
import time

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

ZONE = """
$ORIGIN example.test.
$TTL 300
@        IN SOA  ns1 hostmaster 1 3600 600 86400 60
@        IN NS   ns1
ns1      IN A    10.0.0.53
www      IN A    10.0.0.80
www      IN AAAA 2001:db8::80
@        IN MX   10 mail
mail     IN A    10.0.0.25
@        IN TXT  "v=spf1 -all" "second string"
_http._tcp IN SRV 0 5 80 www
@        IN CAA  0 issue "letsencrypt.org"
short    5 IN A  10.0.0.5
alias    IN CNAME www
"""

REVERSE = """
$ORIGIN 0.0.10.in-addr.arpa.
$TTL 300
@        IN SOA  ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60
@        IN NS   ns1.example.test.
80       IN PTR  www.example.test.
"""

BIG_NAME = "big.example.test."
BIG_COUNT = 100


def build_zones() -> dict[dns.name.Name, dns.zone.Zone]:
    zone = dns.zone.from_text(ZONE, relativize=False)
    node = zone.find_node(dns.name.from_text(BIG_NAME), create=True)
    rds = node.find_rdataset(dns.rdataclass.IN, dns.rdatatype.A, create=True)
    for i in range(BIG_COUNT):
        rds.add(dns.rdata.from_text("IN", "A", f"10.1.{i // 250}.{i % 250 + 1}"), 300)
    rev = dns.zone.from_text(REVERSE, relativize=False)
    return {zone.origin: zone, rev.origin: rev}


class Authority:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.zones = build_zones()
        self.mode = "ok"            # "ok", "servfail", "silent"
        self.delay = 0.0            # seconds before each answer
        self.drop = 0               # UDP queries still to ignore (then answer again)
        self.tcp_enabled = True
        self.queries: list[tuple[str, dns.message.Message, tuple]] = []   # (transport, query, peer)
        self.udp, self.tcp = _bind_pair(host, port)
        self.port = self.udp.getsockname()[1]
        self.host = host
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True),
                         threading.Thread(target=self._serve_tcp, daemon=True)]

    @property
    def address(self) -> str:
        return f"{self.host}#{self.port}"

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        """Close both sockets: afterwards the port answers UDP with ICMP port-unreachable."""
        self._stop.set()
        for s in (self.udp, self.tcp):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(5)

    # -- answering ---------------------------------------------------------------------------

    def respond(self, query: dns.message.Message) -> dns.message.Message | None:
        if self.mode == "silent":
            return None
        response = dns.message.make_response(query)
        if self.mode == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        q = query.question[0]
        zone = None
        for origin, z in self.zones.items():
            if q.name.is_subdomain(origin) and (zone is None or len(origin) > len(zone.origin)):
                zone = z
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        response.flags |= dns.flags.AA
        soa = zone.find_rrset(zone.origin, dns.rdatatype.SOA)
        node = zone.get_node(q.name)
        if node is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(soa)
            return response
        rds = node.get_rdataset(dns.rdataclass.IN, q.rdtype)
        if rds is None:
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is not None:
                rds = cname
        if rds is None:
            response.authority.append(soa)   # NODATA
            return response
        rrset = dns.rrset.RRset(q.name, dns.rdataclass.IN, rds.rdtype)
        rrset.update(rds)
        response.answer.append(rrset)
        return response

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.udp.recvfrom(65535)
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            self.queries.append(("udp", query, peer))
            if self.drop > 0:
                self.drop -= 1
                continue
            response = self.respond(query)
            if response is None:
                continue
            if self.delay:
                time.sleep(self.delay)
            limit = max(512, query.payload) if query.edns >= 0 else 512
            try:
                self.udp.sendto(response.to_wire(max_size=limit, prefer_truncation=True), peer)
            except OSError:
                return

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.tcp.accept()
            except OSError:
                return
            if not self.tcp_enabled:
                conn.close()
                continue
            threading.Thread(target=self._tcp_conn, args=(conn, peer), daemon=True).start()

    def _tcp_conn(self, conn: socket.socket, peer) -> None:
        conn.settimeout(5)
        with conn:
            try:
                while True:
                    head = _recv_exact(conn, 2)
                    if not head:
                        return
                    data = _recv_exact(conn, struct.unpack("!H", head)[0])
                    query = dns.message.from_wire(data)
                    self.queries.append(("tcp", query, peer))
                    response = self.respond(query)
                    if response is None:
                        continue
                    wire = response.to_wire(max_size=65535)   # over TCP the EDNS0 size does not apply
                    conn.sendall(struct.pack("!H", len(wire)) + wire)
            except (OSError, EOFError, dns.exception.DNSException):
                return


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on one port. The UDP port the kernel picks may be taken for TCP
    (another test's connection still holds it), so a few ports are tried."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((host, port))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((host, udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            if port:
                raise
            continue
        tcp.listen(16)
        return udp, tcp
    raise OSError("no port free for both UDP and TCP")


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            if buf:
                raise EOFError
            return b""
        buf += chunk
    return buf
