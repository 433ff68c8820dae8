"""The DNS server on the gateway (port 53, UDP and TCP), for guests only: its sockets are the far
ends of the forwarder's socketpairs (NatPolicy.udp_services / tcp_services), never a host port.

Where an answer comes from, first match wins:

1. Local names (services/dns_zones.py): the host and gateway aliases, names from the config
   and the control API, one per guest. A local name asked for a type it lacks is NOERROR with no
   data — not NXDOMAIN, and never sent upstream (vpnkit said NXDOMAIN; gvproxy leaked it).
   PTR for addresses of the virtual subnet comes from the same names.
2. The host's hosts file, watched (services/dns_files.py), for A and AAAA.
3. An authoritative local zone that holds the name: its regexp or default address, else
   NXDOMAIN.
4. The cache, then the host's nameservers (services/dns_upstream.py), the query forwarded as
   it came; identical questions in flight share one upstream exchange. Failures are SERVFAIL.

UDP answers fit the client's EDNS0 size (512 without EDNS0, RFC 1035 §4.2.1; RFC 6891 §6.2.5)
capped at max_udp_size; a larger one is truncated to whole records with TC set, and the same
question over TCP gets all of it. Over TCP (RFC 7766) queries on one connection are answered
concurrently and each reply goes out when ready (§6.2.1.1). Nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import Callable

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from fastnet.services.config import DnsConfig, NetworkConfig
from fastnet.services.dns_cache import AnswerCache, cache_key
from fastnet.services.dns_files import WatchedFile, parse_hosts
from fastnet.services.dns_messages import (CLASSIC_UDP_SIZE, MAX_TCP_SIZE, header_reply, new_response, render,
                                           reply_from)
from fastnet.services.dns_upstream import Outcome, Upstream, with_id
from fastnet.services.dns_zones import LocalAnswer, LocalZones

log = logging.getLogger("fastnet.dns")

PORT = 53
MAX_INFLIGHT = 4096          # queries being answered at once, all guests together
MAX_PIPELINE = 64            # per TCP connection; past it the connection is not read (back-pressure)
TCP_IDLE = 10.0              # RFC 7766 §6.2.3: close idle connections, seconds not minutes
UDP_IDLE_MARGIN = 5.0        # our end of a guest's UDP flow outlives the core's (see _sweep)
ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


class _UdpEndpoint:
    __slots__ = ("sock", "guest", "last", "closed")

    def __init__(self, sock: socket.socket, guest: tuple, now: float):
        self.sock = sock
        self.guest = guest
        self.last = now
        self.closed = False


class DnsService:
    """One per VirtualNetwork, on its event loop; every method, the control API's included, is
    to be called on that loop's thread."""

    def __init__(self, config: NetworkConfig, *, pool=None, loop: asyncio.AbstractEventLoop | None = None,
                 settings: DnsConfig | None = None, getaddrinfo: Callable | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.settings = settings or config.dns_service
        self.loop = loop or asyncio.get_event_loop()
        self.local = LocalZones(config, self.settings, pool)
        self.hosts = WatchedFile(self.settings.hosts_file, parse_hosts, interval=self.settings.watch_interval,
                                 clock=clock)
        self.cache = AnswerCache(self.settings.cache_size, self.settings.max_ttl, clock=clock)
        self.upstream = Upstream(self.settings, self.loop, getaddrinfo=getaddrinfo, clock=clock)
        # New nameservers (a VPN came up or went away) may answer differently: start afresh.
        self.upstream.on_change = self.cache.clear
        self.udp_idle = config.udp_idle + UDP_IDLE_MARGIN
        self._inflight: dict[tuple, asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()
        self._udp: dict[int, _UdpEndpoint] = {}
        self._conns: set[asyncio.Task] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self.closed = False
        self.counts = {"queries": 0, "udp_queries": 0, "tcp_queries": 0, "from_local": 0, "from_hosts_file": 0,
                       "from_cache": 0, "from_upstream": 0, "from_system_resolver": 0, "failures": 0, "truncated": 0,
                       "malformed_dropped": 0, "malformed_formerr": 0, "not_implemented": 0,
                       "dropped_overload": 0, "internal_errors": 0, "send_errors": 0, "shared_exchanges": 0,
                       "udp_flows": 0, "tcp_connections": 0}
        self.rcodes: dict[str, int] = {}

    # -- plugging into the network -----------------------------------------------------------

    def register(self, policy, port: int = PORT) -> None:
        """Serve DNS on the gateway (and the configured DNS address) through the NAT policy."""
        policy.udp_services[port] = self.serve_udp
        policy.tcp_services[port] = self.serve_tcp

    def serve_udp(self, sock: socket.socket, tup: tuple) -> None:
        """A guest's UDP flow to port 53: each message on sock is one datagram."""
        if self.closed:
            sock.close()
            return
        ep = _UdpEndpoint(sock, tup, self.loop.time())
        self._udp[sock.fileno()] = ep
        self.counts["udp_flows"] += 1
        self.loop.add_reader(sock.fileno(), self._udp_readable, ep)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(min(self.udp_idle / 4, 5.0), self._sweep)

    def serve_tcp(self, sock: socket.socket, tup: tuple) -> None:
        """A guest's TCP connection to port 53: sock carries its byte stream."""
        if self.closed:
            sock.close()
            return
        self.counts["tcp_connections"] += 1
        task = self.loop.create_task(self._tcp_connection(sock))
        self._conns.add(task)
        task.add_done_callback(self._conns.discard)

    # -- UDP ---------------------------------------------------------------------------------

    def _udp_readable(self, ep: _UdpEndpoint) -> None:
        # A bounded batch per wake-up, so one busy guest cannot starve the loop.
        for _ in range(64):
            try:
                data = ep.sock.recv(65535)
            except BlockingIOError:
                return
            except OSError:
                self._close_udp(ep)
                return
            ep.last = self.loop.time()
            self._spawn(self._udp_query(ep, data))

    async def _udp_query(self, ep: _UdpEndpoint, data: bytes) -> None:
        reply = await self.answer(data, tcp=False)
        if reply is None or ep.closed:
            return
        try:
            ep.sock.send(reply)
            ep.last = self.loop.time()
        except OSError:
            self.counts["send_errors"] += 1

    def _sweep(self) -> None:
        """Close our end of UDP flows idle longer than the core keeps them. The core closes its
        end after udp_idle without telling us (a datagram socketpair has no EOF); closing ours
        first would make a late guest datagram draw a port-unreachable, so ours waits a margin
        longer."""
        self._sweeper = None
        now = self.loop.time()
        for ep in list(self._udp.values()):
            if now - ep.last > self.udp_idle:
                self._close_udp(ep)
        if self._udp and not self.closed:
            self._sweeper = self.loop.call_later(min(self.udp_idle / 4, 5.0), self._sweep)

    def _close_udp(self, ep: _UdpEndpoint) -> None:
        if ep.closed:
            return
        ep.closed = True
        fd = ep.sock.fileno()
        if fd >= 0:
            self.loop.remove_reader(fd)
            self._udp.pop(fd, None)
        ep.sock.close()

    # -- TCP ---------------------------------------------------------------------------------

    async def _tcp_connection(self, sock: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=sock)
        pending: set[asyncio.Task] = set()
        slots = asyncio.Semaphore(MAX_PIPELINE)
        try:
            while not self.closed:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                    (length,) = struct.unpack("!H", head)
                    body = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    break
                await slots.acquire()
                task = self.loop.create_task(self._tcp_query(body, writer, slots))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                # The guest closed its side or went idle: finish what it asked, then close.
                await asyncio.wait(set(pending), timeout=self.settings.timeout + 2)
        finally:
            for task in pending:
                task.cancel()
            writer.close()

    async def _tcp_query(self, body: bytes, writer: asyncio.StreamWriter, slots: asyncio.Semaphore) -> None:
        try:
            reply = await self.answer(body, tcp=True)
            if reply is not None and not writer.is_closing():
                writer.write(struct.pack("!H", len(reply)) + reply)
        finally:
            slots.release()

    # -- answering ---------------------------------------------------------------------------

    def _spawn(self, coro) -> None:
        if len(self._tasks) >= MAX_INFLIGHT:
            self.counts["dropped_overload"] += 1
            coro.close()
            return
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def answer(self, wire: bytes, *, tcp: bool = False) -> bytes | None:
        """The reply to one query message as it came from a guest, or None to send nothing."""
        self.counts["queries"] += 1
        self.counts["tcp_queries" if tcp else "udp_queries"] += 1
        try:
            return await self._answer(wire, tcp)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug must cost one answer, not the service.
            log.exception("DNS: internal error answering a query")
            self.counts["internal_errors"] += 1
            return self._count(header_reply(wire, dns.rcode.SERVFAIL), dns.rcode.SERVFAIL)

    def _count(self, reply: bytes | None, rcode: int) -> bytes | None:
        if reply is not None:
            name = dns.rcode.to_text(rcode)
            self.rcodes[name] = self.rcodes.get(name, 0) + 1
        return reply

    async def _answer(self, wire: bytes, tcp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(wire, keyring=False)
        except Exception:
            # RFC 1035 §4.1.1 FORMERR for anything that does not parse (random bytes, a name
            # running past the end, compression pointers that loop or point forward, trailing
            # junk); nothing at all for what has no header or is itself a response.
            reply = header_reply(wire, dns.rcode.FORMERR)
            self.counts["malformed_formerr" if reply is not None else "malformed_dropped"] += 1
            return self._count(reply, dns.rcode.FORMERR)
        if query.flags & dns.flags.QR:
            self.counts["malformed_dropped"] += 1
            return None
        payload = self.settings.max_udp_size
        if tcp:
            limit = MAX_TCP_SIZE
        else:
            client = query.payload if query.edns >= 0 else CLASSIC_UDP_SIZE
            limit = min(max(CLASSIC_UDP_SIZE, client), payload)
        if query.opcode() != dns.opcode.QUERY:
            self.counts["not_implemented"] += 1
            return self._finish(self._error(query, dns.rcode.NOTIMP), limit)
        if len(query.question) != 1:
            # RFC 9619: a QUERY has exactly one question.
            self.counts["malformed_formerr"] += 1
            return self._finish(self._error(query, dns.rcode.FORMERR), limit)
        if query.edns > 0:
            # RFC 6891 §6.1.3: an EDNS version we do not speak gets BADVERS with our version, 0.
            return self._finish(self._error(query, dns.rcode.BADVERS), limit)
        q = query.question[0]
        if q.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            # Zone transfers are multi-message streams that a resolver does not relay.
            self.counts["not_implemented"] += 1
            return self._finish(self._error(query, dns.rcode.NOTIMP), limit)

        local = self._local(query)
        if local is not None:
            return self._finish(local, limit)
        key = cache_key(query)
        self.upstream.servers()      # notices a changed resolv.conf, which empties the cache
        cached = self.cache.get(key, query, our_payload=payload)
        if cached is not None:
            self.counts["from_cache"] += 1
            return self._finish(cached, limit)
        outcome, leader = await self._forward_shared(key, query, wire)
        if outcome.kind != "answer":
            self.counts["failures"] += 1
            return self._finish(self._servfail(query, outcome), limit)
        self.counts["from_system_resolver" if outcome.via == "system" else "from_upstream"] += 1
        msg = outcome.message
        assert msg is not None
        if leader and outcome.wire is not None:
            # The upstream's reply as it came, with the guest's ID back in place.
            msg.id = query.id
            return self._finish(msg, limit, with_id(outcome.wire, query.id))
        if leader:
            return self._finish(msg, limit)
        return self._finish(reply_from(msg, query, our_payload=payload), limit)

    def _finish(self, msg: dns.message.Message, limit: int, wire: bytes | None = None) -> bytes:
        """msg's wire form in limit bytes; wire, when given, is msg as received, sent unchanged
        if it fits."""
        if wire is None or len(wire) > limit:
            wire, truncated = render(msg, limit)
            if truncated:
                self.counts["truncated"] += 1
        return self._count(wire, msg.rcode())  # type: ignore[return-value]

    def _error(self, query: dns.message.Message, rcode: int) -> dns.message.Message:
        response = new_response(query, self.settings.max_udp_size)
        response.set_rcode(rcode)
        return response

    def _servfail(self, query: dns.message.Message, outcome: Outcome) -> dns.message.Message:
        response = self._error(query, dns.rcode.SERVFAIL)
        if query.edns >= 0 and outcome.kind in ("unreachable", "timeout"):
            # RFC 8914 §4.23: say why, for whoever reads the guest's dig output.
            response.use_edns(0, query.ednsflags & dns.flags.DO, self.settings.max_udp_size, query.payload,
                              options=[dns.edns.EDEOption(dns.edns.EDECode.NO_REACHABLE_AUTHORITY,
                                                          "no nameserver of the host answered")])
            response.set_rcode(dns.rcode.SERVFAIL)
        return response

    # -- local data --------------------------------------------------------------------------

    def _local(self, query: dns.message.Message) -> dns.message.Message | None:
        q = query.question[0]
        if q.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
            return None
        found = self.local.lookup(q.name)
        if found is not None:
            self.counts["from_local"] += 1
            return self._addresses(query, found.addrs, authoritative=True)
        if q.rdtype == dns.rdatatype.PTR:
            names = self.local.reverse(q.name)
            if names is not None:
                self.counts["from_local"] += 1
                response = new_response(query, self.settings.max_udp_size)
                response.flags |= dns.flags.AA
                if names:
                    response.answer.append(dns.rrset.from_text_list(
                        q.name, self.settings.local_ttl, dns.rdataclass.IN, dns.rdatatype.PTR,
                        [n.to_text() for n in names]))
                else:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return response
        if q.rdtype in ADDRESS_TYPES or q.rdtype == dns.rdatatype.ANY:
            addrs = self.hosts.value.get(q.name.to_text(omit_final_dot=True).lower())
            if addrs:
                self.counts["from_hosts_file"] += 1
                return self._addresses(query, addrs, authoritative=False)
        claimed = self.local.claim(q.name)
        if isinstance(claimed, LocalAnswer):
            self.counts["from_local"] += 1
            return self._addresses(query, claimed.addrs, authoritative=True)
        if claimed is not None:
            self.counts["from_local"] += 1
            response = new_response(query, self.settings.max_udp_size)
            response.flags |= dns.flags.AA
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        return None

    def _addresses(self, query: dns.message.Message, addrs, *, authoritative: bool) -> dns.message.Message:
        """The addresses of the asked family (both for ANY); none of it is NOERROR, no data."""
        q = query.question[0]
        response = new_response(query, self.settings.max_udp_size)
        if authoritative:
            response.flags |= dns.flags.AA
        for rdtype, version in ((dns.rdatatype.A, 4), (dns.rdatatype.AAAA, 6)):
            if q.rdtype not in (rdtype, dns.rdatatype.ANY):
                continue
            values = [str(a) for a in addrs if a.version == version]
            if values:
                # The guest's spelling of the name (RFC 4343 case, 0x20 randomisation) comes back.
                response.answer.append(dns.rrset.from_text_list(
                    q.name, self.settings.local_ttl, dns.rdataclass.IN, rdtype, values))
        return response

    # -- upstream ----------------------------------------------------------------------------

    async def _forward_shared(self, key: tuple, query: dns.message.Message, wire: bytes) -> tuple[Outcome, bool]:
        """One upstream exchange per question in flight; the first asker leads, later ones get
        a copy of its answer. Returns the outcome and whether this caller led."""
        task = self._inflight.get(key)
        leader = task is None
        if task is None:
            task = self.loop.create_task(self._forward(key, query, wire))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._inflight.pop(key, None) if self._inflight.get(key) is t else None)
        else:
            self.counts["shared_exchanges"] += 1
        return await asyncio.shield(task), leader

    async def _forward(self, key: tuple, query: dns.message.Message, wire: bytes) -> Outcome:
        deadline = self.loop.time() + self.settings.timeout
        outcome = await self.upstream.forward(query, wire)
        if outcome.kind == "answer":
            if outcome.cacheable and outcome.message is not None:
                self.cache.put(key, outcome.message)
            return outcome
        q = query.question[0]
        if (outcome.kind in ("unreachable", "timeout") and self.settings.system_fallback
                and q.rdtype in ADDRESS_TYPES and q.rdclass == dns.rdataclass.IN):
            # The fallback gets what is left of the timeout, and at least a second.
            return await self.upstream.system_lookup(query, max(deadline, self.loop.time() + 1.0))
        return outcome

    # -- the control API -----------------------------------------------------------------------

    def zones(self) -> list[dict]:
        """Every local zone as JSON-able data (gvproxy: GET /services/dns/all)."""
        return self.local.zones()

    def add_zone(self, spec: dict) -> dict:
        """Add or replace a zone (gvproxy: POST /services/dns/add). Raises ValueError."""
        return self.local.add_zone(spec)

    def remove_zone(self, name: str) -> bool:
        return self.local.remove_zone(name)

    def add_record(self, name: str, ip: str, zone: str | None = None) -> dict:
        """Add name -> ip; returns the zone it went into. Raises ValueError."""
        try:
            return self.local.add_record(name, ip, zone)
        except dns.exception.DNSException as e:
            raise ValueError(f"not a DNS name: {name!r} ({e})") from None

    def remove_record(self, name: str, ip: str | None = None) -> int:
        try:
            return self.local.remove_record(name, ip)
        except dns.exception.DNSException as e:
            raise ValueError(f"not a DNS name: {name!r} ({e})") from None

    def stats(self) -> dict:
        return {**self.counts, "rcodes": dict(self.rcodes), "open_udp_flows": len(self._udp),
                "open_tcp_connections": len(self._conns), "in_flight": len(self._tasks),
                "cache": self.cache.stats(), "upstream": self.upstream.stats(),
                "hosts_file_reloads": self.hosts.reloads}

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving: every guest socket closed, every query and exchange abandoned."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for ep in list(self._udp.values()):
            self._close_udp(ep)
        for task in list(self._tasks) + list(self._conns) + list(self._inflight.values()):
            task.cancel()
        self.upstream.close()
