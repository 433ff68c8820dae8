"""Scripted-peer harness for the TCP engine (smoltcp's socket tests, in Python).

The test plays the guest: it builds each segment from a template (``Seg``, a frozen dataclass
of header fields) overridden field by field with ``dataclasses.replace``, feeds it to a
``TcpEngine(memory=True)`` and asserts the exact segments that come back. Host sockets are the
engine's in-memory ones, time is a fake ``Clock`` in microseconds.

A ``Conn`` bundles one connection's engine, clock, host socket and the two templates:
``conn.tx`` (guest → engine) and ``conn.rx`` (engine → guest, what ``conn.expect()`` builds).
The state builders below (``connecting()`` … ``time_wait()``) drive the engine into each state
through the API only and move the templates along, so a test starts from ``conn.send()`` /
``conn.recv()`` with sequence numbers already right.
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass, field, replace

from fastnet import wire
from fastnet._tcp import HEV_ERR, HEV_IN, HEV_OUT, HEV_RDHUP, TcpEngine, TcpEvent, TcpState
from fastnet.wire import TcpFlags as F

__all__ = [
    "F", "HEV_ERR", "HEV_IN", "HEV_OUT", "HEV_RDHUP", "TcpEvent", "TcpState", "errno",
    "GUEST_IP", "REMOTE_IP", "GUEST_PORT", "REMOTE_PORT", "GUEST_MAC", "GW_MAC", "GUEST_ISN",
    "START", "Clock", "Seg", "Conn", "make_engine", "drain", "parse_icmp",
    "SEND_TEMPL", "RECV_TEMPL", "send", "recv", "recv_nothing",
    "connecting", "syn_received", "established", "close_wait", "fin_wait_1", "fin_wait_2",
    "last_ack", "closing", "time_wait", "syn_sent", "OPTION_SETS", "now_for_isn",
]

TXD_CSUM_PARTIAL = 0x01  # fn_txq.h: the L4 checksum holds the pseudo-header sum only
TXD_GSO_TCPV4 = 0x02     # a super-frame the link cuts at gso_size

GUEST_IP = ipaddress.IPv4Address("192.168.65.3")
REMOTE_IP = ipaddress.IPv4Address("192.168.65.2")
GUEST_PORT = 40000
REMOTE_PORT = 80
GW_MAC = bytes.fromhex("f61636bcf9c6")
GUEST_MAC = bytes.fromhex("5a94ef0e4c11")
GUEST_ISN = 0x1000_0000
START = 1_000_000_000  # µs: the fake clock starts at 1000 s
MS = 1000
SEC = 1_000_000

# The SYN options the guest offers, by name (conn_established is parametrized over them).
OPTION_SETS = {
    "plain": dict(mss=1460),
    "full": dict(mss=1460, window_scale=7, sack_permitted=True, timestamps=True),
    "ts": dict(mss=1460, timestamps=True),
    "sack_ws": dict(mss=1460, window_scale=2, sack_permitted=True),
}


class Clock:
    """The fake clock: µs, only moves when a test says so."""

    def __init__(self, now: int = START):
        self.now = now

    def advance(self, us: int) -> int:
        self.now += us
        return self.now

    def to(self, t: int) -> int:
        assert t >= self.now, "the clock never goes back"
        self.now = t
        return t


def make_engine(**cfg) -> TcpEngine:
    """The scripted tests pin RFC 6298's classic timers (1 s initial RTO, 200 ms floor), a short
    2 s TIME-WAIT and no tail-loss probes, so each expected segment is exactly what the RFC text says; the
    engine's local-link defaults (test_retransmit.py) and tail-loss probes (test_rack.py) have
    tests of their own."""
    cfg.setdefault("seed", 1)
    cfg.setdefault("rto_initial", 1.0)
    cfg.setdefault("rto_min", 0.2)
    cfg.setdefault("tail_loss_probe", False)
    cfg.setdefault("time_wait", 2.0)
    return TcpEngine(memory=True, **cfg)


@dataclass(frozen=True)
class Seg:
    """One TCP segment as the test sees it: every field compared by ``==``."""

    seq: int = 0
    ack: int = 0
    flags: int = int(F.ACK)
    window: int = 0
    payload: bytes = b""
    mss: int | None = None
    window_scale: int | None = None
    sack_permitted: bool = False
    timestamps: tuple[int, int] | None = None
    sack_blocks: tuple[tuple[int, int], ...] = ()
    src_port: int = GUEST_PORT
    dst_port: int = REMOTE_PORT
    src_ip: ipaddress.IPv4Address = GUEST_IP
    dst_ip: ipaddress.IPv4Address = REMOTE_IP
    src_mac: bytes = field(default=GUEST_MAC, repr=False)
    dst_mac: bytes = field(default=GW_MAC, repr=False)

    def frame(self) -> bytearray:
        return wire.build_frame(
            wire.EthernetFields(self.dst_mac, self.src_mac, wire.ETHERTYPE_IPV4),
            wire.Ipv4Fields(self.src_ip, self.dst_ip, wire.IPPROTO_TCP),
            wire.TcpFields(self.src_port, self.dst_port, self.seq % 2**32, self.ack % 2**32, int(self.flags),
                           self.window, 0, self.mss, self.window_scale, self.sack_permitted,
                           None if self.timestamps is None else tuple(x % 2**32 for x in self.timestamps),
                           tuple((a % 2**32, b % 2**32) for a, b in self.sack_blocks)),
            self.payload)

    @classmethod
    def parse(cls, frame, partial: bool = False) -> "Seg":
        """A frame the engine sent, checked like smoltcp's ``sanity!``: it parses, both
        checksums verify (with partial=True, for a link that completes L4 checksums, the TCP
        checksum field must hold the pseudo-header sum), and the Ethernet/IP header is what
        the engine always writes."""
        f = wire.parse_frame(bytes(frame))
        assert f.kind == wire.Kind.TCP4, f"not TCP/IPv4: {f!r}"
        ip, t = f.ip, f.l4
        if partial:
            assert wire.checksum(bytes(frame)[f.l3_off:f.l3_off + ip.header_len]) == 0
            assert t.checksum == wire.pseudo_header_sum(ip.src, ip.dst, wire.IPPROTO_TCP, f.l4_len)
        else:
            assert f.verify_checksums(), "bad checksum in a frame from the engine"
        assert ip.ttl == 64 and ip.dont_fragment and not ip.more_fragments
        return cls(t.seq, t.ack, int(t.flags), t.window, bytes(t.payload), t.mss, t.window_scale,
                   t.sack_permitted, t.timestamps, t.sack_blocks, t.src_port, t.dst_port,
                   ip.src, ip.dst, bytes(f.eth.src), bytes(f.eth.dst))

    def __repr__(self):
        opts = []
        for k in ("mss", "window_scale", "timestamps"):
            v = getattr(self, k)
            if v is not None:
                opts.append(f"{k}={v}")
        if self.sack_permitted:
            opts.append("sack_perm")
        if self.sack_blocks:
            opts.append(f"sack={self.sack_blocks}")
        pl = self.payload if len(self.payload) <= 16 else self.payload[:16] + b"..."
        return (f"Seg({F(self.flags)!r} {self.src_port}>{self.dst_port} seq={self.seq} ack={self.ack} "
                f"win={self.window} len={len(self.payload)} {pl!r} {' '.join(opts)})")

    @property
    def seg_len(self) -> int:
        return len(self.payload) + bool(self.flags & F.SYN) + bool(self.flags & F.FIN)


# smoltcp's SEND_TEMPL / RECV_TEMPL: a guest → engine segment and an engine → guest segment,
# overridden field by field with dataclasses.replace (Conn keeps its own copies, moved along
# the connection's sequence numbers).
SEND_TEMPL = Seg(seq=GUEST_ISN + 1, ack=0, flags=int(F.ACK), window=65535)
RECV_TEMPL = Seg(seq=0, ack=GUEST_ISN + 1, flags=int(F.ACK), window=0, src_port=REMOTE_PORT, dst_port=GUEST_PORT,
                 src_ip=REMOTE_IP, dst_ip=GUEST_IP, src_mac=GW_MAC, dst_mac=GUEST_MAC)


def send(engine: TcpEngine, now: int, seg: Seg | None = None, **overrides) -> bool:
    """Feed SEND_TEMPL (or seg) with overrides as one batch."""
    s = replace(seg if seg is not None else SEND_TEMPL, **overrides)
    ok = engine.input(bytes(s.frame()), now)
    engine.flush(now)
    return ok


def recv(engine: TcpEngine) -> list[Seg]:
    """Every TCP segment the engine sent since the last call, parsed and checked."""
    return [Seg.parse(fr, partial=bool(fl & TXD_CSUM_PARTIAL)) for fr, fl, _ in engine.take_frames_meta()]


def recv_nothing(engine: TcpEngine) -> None:
    segs = recv(engine)
    assert segs == [], f"expected no segment, got {segs}"


def parse_icmp(frame):
    """(outer Frame, Icmpv4Packet, quoted bytes) of an ICMP error the engine sent."""
    f = wire.parse_frame(bytes(frame))
    assert f.kind == wire.Kind.ICMP4
    assert f.verify_checksums()
    icmp = f.l4
    assert icmp.verify_checksum()
    return f, icmp, bytes(icmp.payload)


class Conn:
    """One guest connection under test."""

    def __init__(self, engine: TcpEngine, clock: Clock, *, guest_isn: int = GUEST_ISN, port: int = GUEST_PORT,
                 window: int = 65535, mss: int | None = 1460, window_scale: int | None = None,
                 sack_permitted: bool = False, timestamps: bool = False, rx_buf: int = 1 << 21):
        self.engine = engine
        self.rx_buf = rx_buf
        self.clock = clock
        self.g_isn = guest_isn % 2**32
        self.e_isn = 0
        self.port = port
        self.syn_opts = dict(mss=mss, window_scale=window_scale, sack_permitted=sack_permitted,
                             timestamps=timestamps)
        self.flow = 0
        self.fd = -1
        # Negotiated (filled by the SYN exchange).
        self.ts = False
        self.sack = False
        self.ws_guest = 0   # shift applied to the windows the guest sends
        self.ws_engine = 0  # shift applied to the windows the engine sends
        self.g_ts_base = 7_000_000
        self.last_e_tsval = 0   # the engine's latest TSval (the guest echoes it)
        self.last_g_tsval = 0   # our latest TSval the engine accepted (it echoes it)
        self.tx = replace(SEND_TEMPL, seq=self.g_isn + 1, window=window, src_port=port)
        self.rx = replace(RECV_TEMPL, ack=self.g_isn + 1, dst_port=port)
        self.frames_seen: list[bytes] = []

    # -- sequence helpers ----------------------------------------------------------------------

    def gs(self, n: int = 0) -> int:
        """Guest sequence number of guest data byte n (0 = the first after the SYN)."""
        return (self.g_isn + 1 + n) % 2**32

    def es(self, n: int = 0) -> int:
        """Engine sequence number of host data byte n."""
        return (self.e_isn + 1 + n) % 2**32

    def g_tsval(self) -> int:
        return (self.g_ts_base + self.clock.now // MS) % 2**32

    def e_tsval(self) -> int:
        return (self.clock.now // MS) % 2**32

    # -- guest → engine ------------------------------------------------------------------------

    def seg(self, **kw) -> Seg:
        s = replace(self.tx, **kw)
        if self.ts and "timestamps" not in kw and not (s.flags & F.RST):
            s = replace(s, timestamps=(self.g_tsval(), self.last_e_tsval))
        return s

    def send(self, seg: Seg | None = None, *, flush: bool = True, old: bool = False, **kw) -> bool:
        """Feed one segment (the template with overrides) and end the batch. old=True marks a
        duplicate of something already received; its TSval still becomes TS.Recent when newer,
        since its sequence number is at or below Last.ACK.sent (RFC 7323 §4.3 rule 2)."""
        s = seg if seg is not None else self.seg(**kw)
        fr = bytes(s.frame())
        self.frames_seen.append(fr)
        ok = self.engine.input(fr, self.clock.now)
        if s.timestamps is not None and ((s.timestamps[0] - self.last_g_tsval) % 2**32) < 2**31:
            self.last_g_tsval = s.timestamps[0] % 2**32  # what TS.Recent becomes (PAWS keeps the newest)
        if flush:
            self.engine.flush(self.clock.now)
        return ok

    def send_batch(self, segs: list[Seg]) -> None:
        """Several segments in one batch (one flush)."""
        for s in segs:
            self.send(s, flush=False)
        self.engine.flush(self.clock.now)

    # -- engine → guest ------------------------------------------------------------------------

    def recv(self) -> list[Seg]:
        out = []
        for fr, txflags, _gso in self.engine.take_frames_meta():
            self.frames_seen.append(bytes(fr))
            s = Seg.parse(fr, partial=bool(txflags & TXD_CSUM_PARTIAL))
            assert (s.src_ip, s.dst_ip, s.src_mac, s.dst_mac) == (REMOTE_IP, GUEST_IP, GW_MAC, GUEST_MAC)
            if s.timestamps is not None:
                self.last_e_tsval = s.timestamps[0]
            out.append(s)
        return out

    def recv_one(self) -> Seg:
        segs = self.recv()
        assert len(segs) == 1, segs
        return segs[0]

    def recv_nothing(self) -> None:
        segs = self.recv()
        assert segs == [], f"expected no segment, got {segs}"

    def expect(self, **kw) -> Seg:
        """The segment the engine should send: the rx template with overrides (timestamps
        filled from the clock and the guest's last TSval when negotiated)."""
        s = replace(self.rx, **kw)
        if self.ts and "timestamps" not in kw and not (s.flags & F.RST):
            s = replace(s, timestamps=(self.e_tsval(), self.last_g_tsval))
        return s

    @property
    def full_window(self) -> int:
        """The window field the engine advertises when nothing waits for the host."""
        return self.window_after(0)

    def window_after(self, unread: int) -> int:
        """The window field with `unread` bytes received but not yet taken by the host socket."""
        w = self.rx_buf - unread
        if self.syn_opts["window_scale"] is not None:
            return min(w >> self.ws_engine, 0xFFFF)
        return min(w, 0xFFFF)

    # -- host side -----------------------------------------------------------------------------

    def host_push(self, data: bytes, events: int = HEV_IN) -> None:
        self.engine.push(self.fd, data)
        self.engine.host_event(self.flow, events, self.clock.now)

    def host_eof(self, events: int = HEV_IN | HEV_RDHUP) -> None:
        """The host peer closes its side: what epoll reports for a real socket is
        EPOLLIN|EPOLLRDHUP (the peer's FIN)."""
        self.engine.sock_set(self.fd, eof=True)
        self.engine.host_event(self.flow, events, self.clock.now)

    def host_take(self) -> bytes:
        return self.engine.take(self.fd)

    def sock(self) -> dict:
        return self.engine.sock(self.fd)

    # -- inspection ----------------------------------------------------------------------------

    def info(self) -> dict | None:
        return self.engine.flow(self.flow)

    @property
    def state(self) -> TcpState:
        i = self.engine.flow(self.flow)
        return TcpState.CLOSED if i is None else i["state"]

    def events(self) -> list[tuple]:
        return [(e[0], e[1], e[2]) for e in self.engine.events()]

    def timers(self) -> int:
        return self.engine.timers(self.clock.now)

    def run_until(self, t: int) -> None:
        """Advance the clock to t, firing every timer on the way at its own deadline."""
        while True:
            nxt = self.engine.timers(self.clock.now)
            if nxt == 0 or nxt > t:
                break
            self.clock.to(max(nxt, self.clock.now))
        self.clock.to(t)
        self.engine.timers(t)


def now_for_isn(seed: int, target: int, not_before: int = START) -> int:
    """A clock value at which the engine (memory, this seed) picks ISS == target for the
    standard 4-tuple: the ISN is F(4-tuple, key) + now/4 (RFC 6528), so probe F once."""
    e = make_engine(seed=seed)
    c = Conn(e, Clock(0))
    syn_received(c)
    k = (target - c.e_isn) % 2**32  # c.e_isn = F(4-tuple, key) + 0/4
    while 4 * k < not_before:
        k += 2**32
    return 4 * k


def drain(engine: TcpEngine, clock: Clock, limit: int = 10_000) -> None:
    """Run timers at each deadline until none is left (every flow must then be gone)."""
    for _ in range(limit):
        nxt = engine.timers(clock.now)
        engine.take_frames()
        if nxt == 0:
            return
        clock.to(max(nxt, clock.now))
    raise AssertionError("timers never settle")


# ---------------------------------------------------------------------------------------------
# state builders: each one drives the engine through the API and checks every step


def connecting(c: Conn) -> Conn:
    """Guest SYN seen, NEW_FLOW reported, no host socket yet."""
    o = c.syn_opts
    syn = replace(c.tx, seq=c.g_isn, ack=0, flags=int(F.SYN), mss=o["mss"], window_scale=o["window_scale"],
                  sack_permitted=o["sack_permitted"],
                  timestamps=(c.g_tsval(), 0) if o["timestamps"] else None)
    c.syn = syn
    c.send(syn)
    ev = c.engine.events()
    assert len(ev) == 1 and ev[0][0] == TcpEvent.NEW_FLOW, ev
    assert ev[0][3] == (GUEST_IP, c.port, REMOTE_IP, REMOTE_PORT)
    c.flow = ev[0][1]
    c.recv_nothing()
    assert c.state == TcpState.CONNECTING
    return c


def syn_received(c: Conn) -> Conn:
    """Host connect done, SYN-ACK sent (options answered from the guest's SYN)."""
    if not c.flow:
        connecting(c)
    c.fd = c.engine.socket()
    c.engine.attach(c.flow, c.fd, c.clock.now)
    c.recv_nothing()
    c.engine.host_event(c.flow, HEV_OUT, c.clock.now)
    synack = c.recv_one()
    assert synack.flags == F.SYN | F.ACK, synack
    assert synack.ack == c.gs(0)
    o = c.syn_opts
    c.e_isn = synack.seq
    c.ts = o["timestamps"]
    c.sack = o["sack_permitted"]
    c.ws_guest = min(o["window_scale"], 14) if o["window_scale"] is not None else 0
    c.ws_engine = synack.window_scale or 0
    c.synack = synack
    c.tx = replace(c.tx, seq=c.gs(0), ack=c.es(0))
    c.rx = replace(c.rx, seq=c.es(0), ack=c.gs(0), window=c.full_window)
    assert c.state == TcpState.SYN_RECEIVED
    return c


def established(c: Conn) -> Conn:
    if not c.e_isn:
        syn_received(c)
    c.send()
    assert c.events() == [(TcpEvent.ESTABLISHED, c.flow, 0)]
    c.recv_nothing()
    assert c.state == TcpState.ESTABLISHED
    return c


def close_wait(c: Conn) -> Conn:
    """The guest closed (FIN acknowledged, host socket shut for writing)."""
    if c.state != TcpState.ESTABLISHED:
        established(c)
    c.send(flags=F.FIN | F.ACK)
    # The FIN takes one sequence number of the window (RFC 9293 §3.8.6).
    c.rx = replace(c.rx, ack=c.gs(1), window=c.window_after(1))
    assert c.recv() == [c.expect()]
    c.tx = replace(c.tx, seq=c.gs(1))
    assert c.state == TcpState.CLOSE_WAIT
    assert c.sock()["shut_wr"]
    return c


def fin_wait_1(c: Conn) -> Conn:
    """The host reached end of stream: our FIN is out, not yet acknowledged."""
    if c.state != TcpState.ESTABLISHED:
        established(c)
    c.host_eof()
    assert c.recv() == [c.expect(flags=F.FIN | F.ACK)]
    c.rx = replace(c.rx, seq=c.es(1))
    assert c.state == TcpState.FIN_WAIT_1
    return c


def fin_wait_2(c: Conn) -> Conn:
    fin_wait_1(c)
    c.send(ack=c.es(1))
    c.recv_nothing()
    c.tx = replace(c.tx, ack=c.es(1))
    assert c.state == TcpState.FIN_WAIT_2
    return c


def last_ack(c: Conn) -> Conn:
    close_wait(c)
    c.host_eof()
    assert c.recv() == [c.expect(flags=F.FIN | F.ACK)]
    c.rx = replace(c.rx, seq=c.es(1))
    assert c.state == TcpState.LAST_ACK
    return c


def closing(c: Conn) -> Conn:
    """Simultaneous close: the guest's FIN crosses ours (it does not acknowledge ours)."""
    fin_wait_1(c)
    c.send(flags=F.FIN | F.ACK)
    c.rx = replace(c.rx, ack=c.gs(1), window=c.window_after(1))
    assert c.recv() == [c.expect()]
    c.tx = replace(c.tx, seq=c.gs(1))
    assert c.state == TcpState.CLOSING
    return c


def time_wait(c: Conn) -> Conn:
    fin_wait_2(c)
    c.send(flags=F.FIN | F.ACK)
    c.rx = replace(c.rx, ack=c.gs(1), window=c.window_after(1))
    assert c.recv() == [c.expect()]
    c.tx = replace(c.tx, seq=c.gs(1))
    assert c.state == TcpState.TIME_WAIT
    return c


def syn_sent(c: Conn) -> Conn:
    """Active open (a published port's client): the engine sent its SYN to the guest."""
    c.fd = c.engine.socket()
    c.flow = c.engine.open(GUEST_MAC, GUEST_IP, c.port, REMOTE_IP, REMOTE_PORT, c.fd, c.clock.now)
    syn = c.recv_one()
    assert syn.flags == F.SYN
    c.e_isn = syn.seq
    c.syn = syn
    c.rx = replace(c.rx, seq=c.es(0), ack=0)
    c.tx = replace(c.tx, seq=c.g_isn, ack=c.es(0))
    assert c.state == TcpState.SYN_SENT
    assert c.engine.events() == []
    return c
