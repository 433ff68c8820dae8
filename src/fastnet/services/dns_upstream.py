"""Forwarding to the host's nameservers: the guest's query goes out as it came (only the ID is
new), so every record type, EDNS0 option and DNSSEC bit reaches a server that understands it, and
the host's own resolver setup (a loopback stub such as 127.0.0.53, a VPN's split DNS behind it)
decides the answer, as it would for a program on the host.

- Every server is asked at once, each from a fresh socket (random source port) with a random ID
  (RFC 5452 §9); a reply counts only from the address asked (the socket is connected), with that
  ID and the same question. Silent servers are asked again every retry interval until the
  timeout.
- The host's order is kept where it matters: an answer from a later server is taken once the
  earlier ones have failed or stayed silent for a retry interval, so a primary server's answer
  wins over a secondary's as it would with glibc, without waiting out a dead primary.
- A truncated reply is asked again over TCP (RFC 7766 §5); if that fails, the truncated reply
  is still the answer (the client will see TC and may try itself).
- NOERROR and NXDOMAIN are answers. SERVFAIL, REFUSED and the like from one server let the others
  answer; from all of them the result is a failure, which the service reports as SERVFAIL, never
  NXDOMAIN (a failure is not proof that a name does not exist).
- When no server answered at all (none configured, all refused by ICMP, all silent), A and AAAA
  questions go to the system resolver (getaddrinfo on the event loop's executor), which knows the
  host's other sources (nsswitch: files, mDNS, VPN plug-ins).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from fastnet.services.config import DnsConfig, parse_server
from fastnet.services.dns_files import WatchedFile, parse_resolv_conf
from fastnet.services.dns_messages import new_response

log = logging.getLogger("fastnet.dns")

# Upper bounds of the latency histogram, in milliseconds.
LATENCY_BUCKETS_MS = (1, 5, 10, 50, 100, 500, 1000, 5000)


@dataclass
class Outcome:
    """What forwarding gave: an answer (its message and the wire it came in, with the upstream
    ID), or a failure: "failed" when servers answered with errors, "unreachable" when none
    answered at all, "timeout" when the deadline passed with servers still silent."""

    kind: str                                    # "answer", "failed", "unreachable", "timeout"
    message: dns.message.Message | None = None
    wire: bytes | None = None
    cacheable: bool = True
    via: str = "udp"                             # "udp", "tcp", "system"


@dataclass
class LatencyStats:
    count: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))

    def add(self, ms: float) -> None:
        self.count += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)
        for i, bound in enumerate(LATENCY_BUCKETS_MS):
            if ms <= bound:
                self.buckets[i] += 1
                return
        self.buckets[-1] += 1

    def as_dict(self) -> dict:
        labels = [f"<={b}ms" for b in LATENCY_BUCKETS_MS] + [f">{LATENCY_BUCKETS_MS[-1]}ms"]
        return {"count": self.count, "avg_ms": round(self.total_ms / self.count, 3) if self.count else None,
                "max_ms": round(self.max_ms, 3), "histogram": dict(zip(labels, self.buckets))}


def with_id(wire: bytes, qid: int) -> bytes:
    return struct.pack("!H", qid) + wire[2:]


def _same_question(query: dns.message.Message, reply: dns.message.Message) -> bool:
    if not reply.flags & dns.flags.QR or reply.opcode() != query.opcode() or len(reply.question) != 1:
        return False
    q, r = query.question[0], reply.question[0]
    return q.name == r.name and q.rdtype == r.rdtype and q.rdclass == r.rdclass


@functools.lru_cache(maxsize=64)  # per query and retry otherwise; the server list rarely changes
def _sockaddr(server: tuple[str, int], kind: int) -> tuple[int, tuple]:
    # AI_NUMERICHOST: the address is a literal (scoped IPv6 included); nothing is looked up.
    family, _, _, _, addr = socket.getaddrinfo(server[0], server[1], type=kind, flags=socket.AI_NUMERICHOST)[0]
    return family, addr


class Upstream:
    def __init__(self, settings: DnsConfig, loop: asyncio.AbstractEventLoop, *,
                 getaddrinfo: Callable[..., Awaitable[list]] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.loop = loop
        self.getaddrinfo = getaddrinfo or loop.getaddrinfo
        self.on_change: Callable[[], None] | None = None   # the nameservers changed
        self._fixed = [parse_server(s) for s in settings.upstream] if settings.upstream is not None else None
        self.resolv = (WatchedFile(settings.resolv_conf, parse_resolv_conf, interval=settings.watch_interval,
                                   clock=clock) if self._fixed is None else None)
        self._last_servers: list[tuple[str, int]] | None = None
        self._exchanges: set[_Exchange] = set()
        self.counts = {"queries": 0, "sent": 0, "answers": 0, "errors": 0, "timeouts": 0, "unreachable": 0,
                       "tcp_fallbacks": 0, "tcp_failures": 0, "bogus_replies": 0, "system_lookups": 0,
                       "system_failures": 0}
        self.rcodes: dict[str, int] = {}
        self.latency = LatencyStats()

    def servers(self) -> list[tuple[str, int]]:
        if self._fixed is not None:
            return self._fixed
        servers = self.resolv.value   # type: ignore[union-attr]
        if servers != self._last_servers:
            log.info("DNS: nameservers %s", ", ".join(f"{h}#{p}" for h, p in servers) or "none")
            if self._last_servers is not None and self.on_change:
                self.on_change()
        self._last_servers = servers
        return servers

    # -- forwarding -------------------------------------------------------------------------

    async def forward(self, query: dns.message.Message, wire: bytes) -> Outcome:
        self.counts["queries"] += 1
        servers = self.servers()
        if not servers:
            self.counts["unreachable"] += 1
            return Outcome("unreachable")
        ex = _Exchange(self, query, wire, servers, self.loop.time() + self.settings.timeout)
        self._exchanges.add(ex)
        try:
            ex.start()
            return await ex.fut
        finally:
            ex.finish(None)
            self._exchanges.discard(ex)

    async def tcp_exchange(self, server: tuple[str, int], query: dns.message.Message, wire: bytes):
        """One query over a new TCP connection, 2-byte length framing (RFC 1035 §4.2.2)."""
        family, addr = _sockaddr(server, socket.SOCK_STREAM)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        writer = None
        try:
            await self.loop.sock_connect(sock, addr)
            reader, writer = await asyncio.open_connection(sock=sock)
            qid = secrets.randbits(16)
            writer.write(struct.pack("!H", len(wire)) + with_id(wire, qid))
            while True:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(n)
                if data[:2] != struct.pack("!H", qid):
                    continue
                reply = dns.message.from_wire(data, keyring=False, ignore_trailing=True)
                if not _same_question(query, reply):
                    raise dns.exception.FormError("reply to another question")
                return reply, data
        finally:
            if writer is not None:
                writer.close()
            else:
                sock.close()

    # -- the system resolver ----------------------------------------------------------------

    async def system_lookup(self, query: dns.message.Message, deadline: float) -> Outcome:
        """A or AAAA through getaddrinfo; the answer carries TTL 0 (getaddrinfo gives none)."""
        self.counts["system_lookups"] += 1
        q = query.question[0]
        family = socket.AF_INET if q.rdtype == dns.rdatatype.A else socket.AF_INET6
        # The final dot keeps the host's search domains out: the guest already applied its own.
        host = q.name.to_text()
        response = new_response(query, self.settings.max_udp_size)
        try:
            infos = await asyncio.wait_for(
                self.getaddrinfo(host, None, family=family, type=socket.SOCK_STREAM),
                max(0.1, deadline - self.loop.time()))
        except socket.gaierror as e:
            if e.errno == socket.EAI_NONAME:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif e.errno in (getattr(socket, "EAI_NODATA", None), getattr(socket, "EAI_ADDRFAMILY", None)):
                pass   # the name exists without an address of this family: NOERROR, no data
            else:
                self.counts["system_failures"] += 1
                return Outcome("failed", via="system")
            return Outcome("answer", response, cacheable=False, via="system")
        except (asyncio.TimeoutError, OSError):
            self.counts["system_failures"] += 1
            return Outcome("failed", via="system")
        addrs: list[str] = []
        for fam, _, _, _, sockaddr in infos:
            if fam == family and sockaddr[0] not in addrs:
                addrs.append(sockaddr[0].split("%", 1)[0])
        if addrs:
            response.answer.append(dns.rrset.from_text_list(q.name, 0, dns.rdataclass.IN, q.rdtype, addrs))
        return Outcome("answer", response, cacheable=False, via="system")

    # -- bookkeeping ------------------------------------------------------------------------

    def close(self) -> None:
        for ex in list(self._exchanges):
            ex.finish(Outcome("failed"))

    def stats(self) -> dict:
        return {**self.counts, "rcodes": dict(self.rcodes), "latency": self.latency.as_dict(),
                "servers": [f"{h}#{p}" for h, p in self._last_servers or []],
                "resolv_conf_reloads": self.resolv.reloads if self.resolv else 0}


class _Exchange:
    """One query to every server, with retries, until an answer or the deadline."""

    def __init__(self, up: Upstream, query: dns.message.Message, wire: bytes, servers: list, deadline: float):
        self.up = up
        self.loop = up.loop
        self.query = query
        self.wire = wire
        self.servers = servers
        self.deadline = deadline
        self.fut: asyncio.Future = self.loop.create_future()
        n = len(servers)
        self.state = ["waiting"] * n         # waiting, tcp, answered, failed
        self.answers: list[Outcome | None] = [None] * n
        self.reached = False                 # some server sent a DNS reply (any rcode)
        self.patient = True                  # still giving earlier servers their head start
        self.socks: list[socket.socket] = []
        self.tasks: list[asyncio.Task] = []
        self.timer: asyncio.TimerHandle | None = None
        self.started = self.loop.time()

    def start(self) -> None:
        for i in range(len(self.servers)):
            self._send(i)
        self._arm()
        self._decide()

    def _arm(self) -> None:
        at = min(self.loop.time() + self.up.settings.retry_interval, self.deadline)
        self.timer = self.loop.call_at(at, self._tick)

    def _tick(self) -> None:
        self.timer = None
        if self.fut.done():
            return
        self.patient = False
        if self._decide():
            return
        if self.loop.time() >= self.deadline - 1e-3:
            self.up.counts["timeouts"] += 1
            self.finish(Outcome("failed" if self.reached else "timeout"))
            return
        for i, st in enumerate(self.state):
            if st == "waiting":
                self._send(i)
        self._arm()

    def _send(self, i: int) -> None:
        try:
            family, addr = _sockaddr(self.servers[i], socket.SOCK_DGRAM)
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError:
            self._fail(i)
            return
        try:
            sock.setblocking(False)
            sock.connect(addr)
            qid = secrets.randbits(16)
            sock.send(with_id(self.wire, qid))
        except OSError:
            sock.close()
            self._fail(i)
            return
        self.up.counts["sent"] += 1
        self.socks.append(sock)
        self.loop.add_reader(sock.fileno(), self._readable, i, sock, qid)

    def _readable(self, i: int, sock: socket.socket, qid: int) -> None:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            return
        except OSError:
            # ICMP unreachable (ECONNREFUSED and friends): nobody serves DNS there.
            self.loop.remove_reader(sock.fileno())
            self._fail(i)
            return
        if self.state[i] != "waiting":
            return
        if len(data) < 12 or data[:2] != struct.pack("!H", qid):
            self.up.counts["bogus_replies"] += 1
            return
        try:
            reply = dns.message.from_wire(data, keyring=False, ignore_trailing=True)
        except Exception:   # anything a broken or hostile server can make the parser raise
            self.up.counts["bogus_replies"] += 1
            return
        if not _same_question(self.query, reply):
            self.up.counts["bogus_replies"] += 1
            return
        if reply.flags & dns.flags.TC:
            self.state[i] = "tcp"
            self.up.counts["tcp_fallbacks"] += 1
            self.tasks.append(self.loop.create_task(self._tcp(i, reply, data)))
            return
        self._answer(i, Outcome("answer", reply, data))

    async def _tcp(self, i: int, truncated: dns.message.Message, truncated_wire: bytes) -> None:
        try:
            reply, data = await asyncio.wait_for(
                self.up.tcp_exchange(self.servers[i], self.query, self.wire),
                max(0.01, self.deadline - self.loop.time()))
        except asyncio.CancelledError:
            raise
        except Exception as e:   # refused, reset, timed out, or a reply that does not parse
            log.debug("DNS: TCP to %s failed: %r", self.servers[i], e)
            self.up.counts["tcp_failures"] += 1
            self._answer(i, Outcome("answer", truncated, truncated_wire, cacheable=False))
            return
        self._answer(i, Outcome("answer", reply, data, via="tcp"))

    def _answer(self, i: int, outcome: Outcome) -> None:
        if self.fut.done():
            return
        self.reached = True
        rcode = outcome.message.rcode()     # type: ignore[union-attr]
        name = dns.rcode.to_text(rcode)
        self.up.rcodes[name] = self.up.rcodes.get(name, 0) + 1
        if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            self.state[i] = "answered"
            self.answers[i] = outcome
        else:
            self.up.counts["errors"] += 1
            self.state[i] = "failed"
        self._decide()

    def _fail(self, i: int) -> None:
        if self.state[i] in ("waiting", "tcp"):
            self.state[i] = "failed"
        self._decide()

    def _decide(self) -> bool:
        """Finish when the answer to take is known; True if finished."""
        if self.fut.done():
            return True
        for i, st in enumerate(self.state):
            if st == "answered":
                self.up.counts["answers"] += 1
                self.up.latency.add((self.loop.time() - self.started) * 1000)
                self.finish(self.answers[i])
                return True
            if st in ("waiting", "tcp") and self.patient:
                return False
        if all(st == "failed" for st in self.state):
            if not self.reached:
                self.up.counts["unreachable"] += 1
            self.finish(Outcome("failed" if self.reached else "unreachable"))
            return True
        return False

    def finish(self, outcome: Outcome | None) -> None:
        if outcome is not None and not self.fut.done():
            self.fut.set_result(outcome)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for sock in self.socks:
            if sock.fileno() >= 0:
                self.loop.remove_reader(sock.fileno())
                sock.close()
        self.socks.clear()
        for task in self.tasks:
            if not task.done():
                task.cancel()
        self.tasks.clear()
