"""Drive a ``Stack`` (link + TCP engine) from an asyncio event loop.

Python runs once per event-loop wake-up (the link is readable, a host socket is ready, a timer
is due) and once per flow event (a guest SYN needs a host connect, a flow closed). Frames and
segments never reach Python: ``Stack.poll_link`` handles a whole batch in C.

The forwarder asks a policy where a guest connection should go; the policy lives in the
services layer (NAT rules, proxy redirection) and is handed in, so this module stays below it.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from fastnet._io import Stack
from fastnet._tcp import Refusal, TcpEvent
from fastnet.errors import ConnectionStateError

log = logging.getLogger("fastnet.forwarder")

# How a failed host connect is shown to the guest (RFC 1122 §4.2.3.9: ICMP unreachable for
# network/host errors, RST for a refused port).
CONNECT_ERRORS = {
    errno.ECONNREFUSED: Refusal.RST,
    errno.ENETUNREACH: Refusal.NET_UNREACHABLE,
    errno.EHOSTUNREACH: Refusal.HOST_UNREACHABLE,
    errno.EACCES: Refusal.ADMIN_PROHIBITED,
    errno.EPERM: Refusal.ADMIN_PROHIBITED,
    errno.EADDRNOTAVAIL: Refusal.HOST_UNREACHABLE,
}


@dataclass(frozen=True)
class Connect:
    """Open a host connection to (host, port), optionally from a local address."""

    host: str
    port: int
    bind: str | None = None


@dataclass(frozen=True)
class Refuse:
    how: Refusal = Refusal.RST


@dataclass(frozen=True)
class Handoff:
    """Give the flow to a Python handler: it gets the engine's end of a socketpair."""

    handler: Callable[[socket.socket, tuple], None]


class Policy(Protocol):
    """Where guest flows go. Handoff handlers get the far end of a socketpair: a stream for TCP,
    datagrams (one per guest datagram, replies the same way) for UDP."""

    def tcp_target(self, guest_ip: ipaddress.IPv4Address, guest_port: int,
                   dst_ip: ipaddress.IPv4Address, dst_port: int) -> Connect | Refuse | Handoff: ...

    def udp_target(self, guest_ip: ipaddress.IPv4Address, guest_port: int,
                   dst_ip: ipaddress.IPv4Address, dst_port: int) -> Connect | Refuse | Handoff: ...

    def icmp_target(self, guest_ip: ipaddress.IPv4Address, dst_ip: ipaddress.IPv4Address) -> Connect | Refuse: ...


# ICMP destination-unreachable codes for refused datagram flows (RFC 792).
DGRAM_REFUSAL_CODES = {
    Refusal.RST: 3,                # port unreachable
    Refusal.PORT_UNREACHABLE: 3,
    Refusal.NET_UNREACHABLE: 0,
    Refusal.HOST_UNREACHABLE: 1,
    Refusal.ADMIN_PROHIBITED: 13,
    Refusal.DROP: -1,
}

UDP = 17
ICMP = 1


def now_us() -> int:
    return time.monotonic_ns() // 1000


def _close(fd) -> None:
    """Close a descriptor or a socket object (what the engine would have taken over)."""
    if isinstance(fd, int):
        os.close(fd)
    else:
        fd.close()


class Forwarder:
    """Registers the link and the engine's host-socket epoll with the loop and keeps timers."""

    def __init__(self, stack: Stack, policy: Policy, *, loop: asyncio.AbstractEventLoop | None = None,
                 max_pending_per_destination: int = 256,
                 on_slow_frames: Callable[[list[bytes]], None] | None = None,
                 on_closed: Callable[[], None] | None = None):
        self.stack = stack
        self.engine = stack.engine
        self.link = stack.link
        self.policy = policy
        self.loop = loop or asyncio.get_event_loop()
        self.max_pending = max_pending_per_destination
        self.on_slow_frames = on_slow_frames
        self.on_closed = on_closed
        self._pending: dict[tuple, int] = {}     # destination -> connects in progress
        self._flow_dst: dict[int, tuple] = {}    # connecting flow -> destination
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0
        self._deadline = 0  # the engine's next timer (µs), as last reported
        self._writer = False
        self._relink = False  # a _on_link is scheduled for frames already read
        self.closed = False
        self._ping_denied = False
        self.flow_events = {"new": 0, "established": 0, "closed": 0, "refused": 0, "deferred": 0,
                            "udp_new": 0, "icmp_new": 0, "dgram_refused": 0, "dgram_closed": 0}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self.loop.add_reader(self.link.fileno(), self._on_link)
        self.loop.add_reader(self.engine.fileno(), self._on_host)
        if self.stack.dgram_fileno() >= 0:
            self.loop.add_reader(self.stack.dgram_fileno(), self._on_dgram)
        self._after(now_us())

    def shutdown(self) -> None:
        """Abort every TCP flow (RST both ways) and write the link once more."""
        now = now_us()
        for info in self.engine.flows():
            try:
                self.engine.close_flow(info["flow"], True, now)
            except Exception:  # a flow that closed meanwhile
                pass
        for info in self.stack.dgram_flows():
            self.stack.dgram_close(info["flow"])
        try:
            self.stack.output(now)
        except OSError:
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.link.fileno())
        self.loop.remove_reader(self.engine.fileno())
        if self.stack.dgram_fileno() >= 0:
            self.loop.remove_reader(self.stack.dgram_fileno())
        if self._writer:
            self.loop.remove_writer(self.link.write_fileno())
        if self._timer:
            self._timer.cancel()
        if self.on_closed:
            self.on_closed()

    # -- flows opened from the host side (published ports) --------------------------------------

    def open_tcp(self, guest_mac, guest_ip, guest_port: int, remote_ip, remote_port: int, fd) -> int:
        """Active open towards the guest for an accepted host client: the engine sends the SYN
        from remote_ip:remote_port and owns fd from here on (it closes fd when the open fails:
        ConnectionStateError, the 4-tuple is in use). Returns the flow id."""
        if self.closed:
            _close(fd)
            raise ConnectionStateError("the link is closed")
        now = now_us()
        try:
            flow = self.engine.open(guest_mac, guest_ip, guest_port, remote_ip, remote_port, fd, now)
        finally:
            self._after(now)  # the SYN leaves now, and its retransmission timer is armed
        self.flow_events["opened"] = self.flow_events.get("opened", 0) + 1
        return flow

    def open_udp(self, guest_mac, guest_ip, guest_port: int, remote_ip, remote_port: int, sock) -> int:
        """A UDP flow from the host side: datagrams read from the connected socket go to the
        guest as from remote_ip:remote_port, and the guest's replies go out on it. The socket is
        taken over (closed on failure: ValueError, the 4-tuple is in use). Returns the flow id."""
        if self.closed:
            _close(sock)
            raise ValueError("the link is closed")
        now = now_us()
        flow = self.stack.dgram_open(guest_mac, guest_ip, guest_port, remote_ip, remote_port, sock, now)
        self.flow_events["udp_opened"] = self.flow_events.get("udp_opened", 0) + 1
        self._after(now)
        return flow

    def send_udp(self, guest_mac, src_ip, src_port: int, dst_ip, dst_port: int, payload) -> bool:
        """One datagram to the guest, built here (fragmented as needed)."""
        if self.closed:
            return False
        now = now_us()
        ok = self.stack.send_udp(guest_mac, src_ip, src_port, dst_ip, dst_port, payload, now)
        self._after(now)
        return ok

    def wake(self) -> None:
        """Run what a wake-up runs (after Python queued frames or closed flows itself)."""
        self._after(now_us())

    # -- wake-ups ------------------------------------------------------------------------------

    def _on_link(self) -> None:
        self._relink = False
        now = now_us()
        try:
            self.stack.poll_link(now)
        except EOFError:
            log.info("link closed by its peer")
            self.close()
            return
        except OSError as e:
            log.error("link failed: %s", e)
            self.close()
            return
        self._after(now)

    def _on_host(self) -> None:
        now = now_us()
        self.stack.poll_host(now)
        self._after(now)

    def _on_dgram(self) -> None:
        now = now_us()
        self.stack.poll_dgram(now)
        self._after(now)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = 0
        self._after(now_us())

    def _on_writable(self) -> None:
        now = now_us()
        try:
            self.stack.link_ready(now)
        except OSError as e:
            log.error("link failed: %s", e)
            self.close()
            return
        self._after(now)

    def _after(self, now: int) -> None:
        """Per wake-up: flow events, slow-path frames, timers, link back-pressure."""
        if self.closed:
            return
        if self._deadline and self._deadline <= now:
            # A timer is due. Read what the link holds first: after a stall (a descheduled
            # forwarder, a busy host) the ACKs that make a retransmission timeout moot may be
            # waiting unread, and firing before them would resend needlessly and collapse the
            # window. Bounded: a link that never drains still gets its timers.
            for _ in range(16):
                try:
                    if self.stack.poll_link(now) == 0:
                        break
                except (EOFError, OSError):
                    break  # the next link wake-up reports it
        events = self.engine.events()
        if events:
            for ev, flow, err, tup in events:
                if ev == TcpEvent.NEW_FLOW:
                    try:
                        self._new_flow(flow, tup, now)
                    except Exception:  # (EMFILE, a service's handler): this flow, not the wake-up
                        log.exception("new TCP flow %s failed", tup)
                        self._abandon(self.engine.refuse, flow, int(Refusal.RST), now)
                elif ev == TcpEvent.CLOSED:
                    self.flow_events["closed"] += 1
                    self._connect_finished(flow)
                else:
                    self.flow_events["established"] += 1
                    self._connect_finished(flow)
            self.stack.output(now)
        dgram_events = self.stack.dgram_events()
        for ev, flow, proto, err, tup in dgram_events:
            if ev == 1:
                try:
                    self._new_dgram_flow(flow, proto, tup, now)
                except Exception:
                    log.exception("new datagram flow %s failed", tup)
                    self._abandon(self.stack.dgram_refuse, flow, -1, now)
            else:
                self.flow_events["dgram_closed"] += 1
        if self.on_slow_frames is not None:
            frames = self.stack.slow_frames()
            if frames:
                self.on_slow_frames(frames)
        deadline = self.stack.timers(now)
        self._deadline = deadline
        self._arm(deadline)
        blocked = self.link.blocked
        # Wait for the descriptor frames are written to (not the one read: stdio has two).
        if blocked and not self._writer:
            self.loop.add_writer(self.link.write_fileno(), self._on_writable)
            self._writer = True
        elif not blocked and self._writer:
            self.loop.remove_writer(self.link.write_fileno())
            self._writer = False
        # Frames a read already buffered (by any wake-up's link drain): no readiness will
        # announce them.
        if self.link.pending and not self._relink:
            self._relink = True
            self.loop.call_soon(self._on_link)

    def _arm(self, deadline: int) -> None:
        if not deadline:
            return
        if self._timer is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        # The loop's clock is time.monotonic(), the same clock as now_us().
        self._timer = self.loop.call_at(deadline / 1e6, self._on_timer)

    # -- flow events ---------------------------------------------------------------------------

    def _connect_finished(self, flow: int) -> None:
        dst = self._flow_dst.pop(flow, None)
        if dst is not None:
            left = self._pending.get(dst, 1) - 1
            if left:
                self._pending[dst] = left
            else:
                self._pending.pop(dst, None)

    @staticmethod
    def _abandon(refuse, flow: int, how: int, now: int) -> None:
        try:
            refuse(flow, how, now)
        except (ConnectionStateError, ValueError):
            pass  # it got past pending (attached) before the failure: its own timers end it

    def _new_flow(self, flow: int, tup, now: int) -> None:
        self.flow_events["new"] += 1
        gip, gport, dip, dport = tup
        try:
            decision = self.policy.tcp_target(gip, gport, dip, dport)
        except Exception:  # a policy bug must not take the forwarder down
            log.exception("TCP policy failed for %s:%d -> %s:%d", gip, gport, dip, dport)
            decision = Refuse(Refusal.RST)
        if isinstance(decision, Refuse):
            self.flow_events["refused"] += 1
            self.engine.refuse(flow, int(decision.how), now)
            return
        if isinstance(decision, Handoff):
            ours, theirs = socket.socketpair()
            theirs.setblocking(False)
            self.engine.attach(flow, ours, now)
            decision.handler(theirs, tup)
            return
        dst = (decision.host, decision.port)
        if self._pending.get(dst, 0) >= self.max_pending:
            # Too many connects to one destination under way: say nothing now, the guest
            # retransmits its SYN; other destinations are not affected.
            self.flow_events["deferred"] += 1
            self.engine.refuse(flow, int(Refusal.DROP), now)
            return
        family = socket.AF_INET6 if ":" in decision.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if decision.bind:
                sock.bind((decision.bind, 0))
            err = sock.connect_ex(dst)
        except OSError as e:
            err = e.errno or errno.EINVAL
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.flow_events["refused"] += 1
            self.engine.refuse(flow, int(CONNECT_ERRORS.get(err, Refusal.RST)), now)
            return
        self._pending[dst] = self._pending.get(dst, 0) + 1
        self._flow_dst[flow] = dst
        self.engine.attach(flow, sock, now)

    def _new_dgram_flow(self, flow: int, proto: int, tup, now: int) -> None:
        gip, gport, dip, dport = tup
        try:
            if proto == UDP:
                self.flow_events["udp_new"] += 1
                decision = self.policy.udp_target(gip, gport, dip, dport)
            else:
                self.flow_events["icmp_new"] += 1
                decision = self.policy.icmp_target(gip, dip)
        except Exception:
            log.exception("datagram policy failed for %s -> %s", gip, dip)
            decision = Refuse(Refusal.ADMIN_PROHIBITED)
        if isinstance(decision, Refuse):
            self.flow_events["dgram_refused"] += 1
            self.stack.dgram_refuse(flow, DGRAM_REFUSAL_CODES.get(decision.how, 3), now)
            return
        if isinstance(decision, Handoff):
            # SEQPACKET keeps datagram boundaries and, unlike SOCK_DGRAM, tells the service when
            # the flow ends (the C side closes its end at the idle timeout): recv() returns b"".
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            theirs.setblocking(False)
            self.stack.dgram_attach(flow, ours, now)
            decision.handler(theirs, tup)
            return
        family = socket.AF_INET6 if ":" in decision.host else socket.AF_INET
        raw = False
        try:
            if proto == UDP:
                sock = socket.socket(family, socket.SOCK_DGRAM)
            else:
                sock, raw = self._icmp_socket(family)
            try:
                if decision.bind:
                    sock.bind((decision.bind, 0))
                sock.connect((decision.host, decision.port if proto == UDP else 0))
            except OSError:
                sock.close()
                raise
        except OSError as e:
            self.flow_events["dgram_refused"] += 1
            how = CONNECT_ERRORS.get(e.errno or 0, Refusal.HOST_UNREACHABLE)
            self.stack.dgram_refuse(flow, -1 if proto == ICMP else DGRAM_REFUSAL_CODES.get(how, 1), now)
            return
        self.stack.dgram_attach(flow, sock, now, raw=raw)

    def _icmp_socket(self, family: int) -> tuple[socket.socket, bool]:
        """A ping socket (unprivileged ICMP, net.ipv4.ping_group_range), or a raw socket when we
        are privileged and ping sockets are not allowed. Raises when neither is possible: then
        the guest's echo goes unanswered, as it would with no route (never a forged reply)."""
        proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
        if not self._ping_denied:
            try:
                return socket.socket(family, socket.SOCK_DGRAM, proto), False
            except PermissionError:
                self._ping_denied = True
                log.info("ping sockets are not allowed (net.ipv4.ping_group_range); trying raw sockets")
        return socket.socket(family, socket.SOCK_RAW, proto), True
