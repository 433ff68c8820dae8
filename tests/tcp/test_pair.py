"""Two engines talking to each other through a seeded fault injector (aioquic's roundtrip(),
smoltcp's FaultInjector): engine A opens towards engine B, which sees A's SYN as a guest's and
answers it with attach() + HEV_OUT. Both host sockets send at once; the bytes taken from the
far sockets must be identical, whatever the injector drops, duplicates, reorders or corrupts
(a corrupted frame must die at the receiver's checksum check), with no RST and in a bounded
number of steps. The clock is fake and jumps to the next frame arrival or timer deadline."""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass

import pytest

from fastnet import _tcp, wire
from tests.tcp import harness as h
from tests.tcp.harness import GUEST_IP, GUEST_MAC, GUEST_PORT, HEV_IN, HEV_OUT, HEV_RDHUP, REMOTE_IP, REMOTE_PORT

ETH_IP = 14 + 20  # our frames: Ethernet + IPv4 without options
TCP_FLAGS = ETH_IP + 13
TCP_DOFF = ETH_IP + 12


@dataclass(frozen=True)
class Faults:
    drop: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0


MIXES = {
    "clean": Faults(),
    "loss": Faults(drop=0.03),
    "reorder_dup": Faults(dup=0.03, reorder=0.1),
    "corrupt": Faults(corrupt=0.03),
    "everything": Faults(drop=0.02, dup=0.02, reorder=0.05, corrupt=0.02),
    "heavy": Faults(drop=0.08, dup=0.05, reorder=0.2, corrupt=0.05),
}


class Injector:
    """Decides each frame's fate, seeded. Corruption flips one byte of the TCP header (not the
    data offset or options, so the frame still parses) or of the payload."""

    def __init__(self, rng: random.Random, f: Faults):
        self.rng, self.f = rng, f
        self.dropped = self.duplicated = self.reordered = self.corrupted = 0

    def __call__(self, frame: bytes) -> list[tuple[int, bytes]]:
        """[(extra delay µs, frame)] to deliver."""
        r = self.rng
        if r.random() < self.f.drop:
            self.dropped += 1
            return []
        copies = [frame]
        if r.random() < self.f.dup:
            self.duplicated += 1
            copies.append(frame)
        out = []
        for fr in copies:
            delay = 0
            if r.random() < self.f.reorder:
                self.reordered += 1
                delay = r.randint(1, 8) * 1000
            if r.random() < self.f.corrupt:
                b = bytearray(fr)
                doff = (b[TCP_DOFF] >> 4) * 4
                cand = [ETH_IP + i for i in range(20) if i != 12] + list(range(ETH_IP + doff, len(b)))
                pos = r.choice(cand)
                b[pos] ^= r.randint(1, 255)
                fr = bytes(b)
                self.corrupted += 1
            out.append((delay, fr))
        return out


class Pair:
    LATENCY = 1000  # µs one way
    READ_EVERY = 1000  # µs between two reads of a slow host reader

    def __init__(self, seed: int, faults: Faults, reader_chunk: int = 0, **cfg):
        # A slow host reader: its socket buffer holds reader_chunk bytes and it reads that much
        # per step, so the engine's receive window closes and reopens.
        self.reader_chunk = reader_chunk or 1 << 30
        self.sock_limit = 2 * reader_chunk if reader_chunk else 1 << 20
        self.rng = random.Random(seed)
        self.clock = h.Clock()
        # TIME-WAIT as the engine ships it: long enough to outlast a backed-off retransmission.
        cfg.setdefault("time_wait", 15.0)
        self.a = h.make_engine(seed=seed * 2 + 1, **cfg)
        self.b = h.make_engine(seed=seed * 2 + 2, **cfg)
        self.inject = Injector(random.Random(seed ^ 0x5EED), faults)
        self.wire: list = []  # heap of (arrival, n, engine, frame)
        self.n = 0
        self.rsts_abort = self.rsts_stray = self.rsts_early = 0
        self.no_flow_seen = {}
        self.len_up = self.len_down = -1
        self.steps = 0
        self.fa = self.a.socket(self.sock_limit)
        self.fb = -1
        self.flow_a = self.a.open(GUEST_MAC, GUEST_IP, GUEST_PORT, REMOTE_IP, REMOTE_PORT, self.fa, self.clock.now)
        self.flow_b = 0
        self.closed = {"a": [], "b": []}
        self.got_a = bytearray()  # what A's host peer received (sent by B's)
        self.got_b = bytearray()

    def _ship(self, src, dst):
        frames = src.take_frames()
        rsts = sum(1 for fr in frames if fr[TCP_FLAGS] & 0x04)
        if rsts:
            # An RST answering a segment for no flow (a stray duplicate or a late reordered copy
            # arriving after that end closed, RFC 9293 §3.10.7.1) is normal; any other RST is
            # an abort.
            nf = src.stats()["no_flow"]
            stray = nf - self.no_flow_seen.get(id(src), 0)
            self.no_flow_seen[id(src)] = nf
            self.rsts_abort += max(0, rsts - stray)
            self.rsts_stray += min(rsts, stray)
            if not self._complete():
                self.rsts_early += rsts
        elif src is not None:
            self.no_flow_seen[id(src)] = src.stats()["no_flow"]
        for fr in frames:
            assert wire.parse_frame(fr).verify_checksums()
            for delay, out in self.inject(fr):
                self.n += 1
                heapq.heappush(self.wire, (self.clock.now + self.LATENCY + delay, self.n, dst, out))

    def _unread(self):
        return (self.a.sock(self.fa)["tx_len"] > 0 or
                (self.fb >= 0 and self.b.sock(self.fb)["tx_len"] > 0))

    @staticmethod
    def _held(eng, flow):
        """Bytes the engine received and acknowledged but has not written to its host socket
        yet (a slow reader), and the guest's FIN if it is in."""
        f = eng.flow(flow)
        return 0 if f is None else (f["rcv_nxt"] - f["host_seq"]) % 2**32

    def _complete(self):
        """Both engines received every byte of their incoming stream (delivered to the host
        socket or still waiting for a slow host reader)."""
        if self.fb < 0:
            return False
        a = len(self.got_a) + self.a.sock(self.fa)["tx_len"] + self._held(self.a, self.flow_a)
        b = len(self.got_b) + self.b.sock(self.fb)["tx_len"] + self._held(self.b, self.flow_b)
        return a >= self.len_down and b >= self.len_up

    def _events(self):
        for ev in self.b.events():
            if ev[0] == _tcp.TcpEvent.NEW_FLOW:
                assert self.flow_b == 0, "one connection only"
                self.flow_b = ev[1]
                self.fb = self.b.socket(self.sock_limit)
                self.b.attach(self.flow_b, self.fb, self.clock.now)
                self.b.host_event(self.flow_b, HEV_OUT, self.clock.now)
                if self.pending_b is not None:
                    self._push(self.b, self.fb, self.flow_b, self.pending_b)
            elif ev[0] == _tcp.TcpEvent.CLOSED:
                self.closed["b"].append(ev[2])
        for ev in self.a.events():
            if ev[0] == _tcp.TcpEvent.CLOSED:
                self.closed["a"].append(ev[2])

    def _push(self, eng, fd, flow, data):
        eng.push(fd, data)
        eng.sock_set(fd, eof=True)  # the host peer writes everything and closes at once
        eng.host_event(flow, HEV_IN | HEV_RDHUP, self.clock.now)

    def _host_read(self):
        for eng, fd, flow, got in ((self.a, self.fa, self.flow_a, self.got_a),
                                   (self.b, self.fb, self.flow_b, self.got_b)):
            if fd >= 0 and flow:
                s = eng.sock(fd)
                if s["tx_len"]:
                    got += eng.take(fd, self.reader_chunk)
                    if not s["closed"]:
                        eng.host_event(flow, HEV_OUT, self.clock.now)

    def run(self, data_a: bytes, data_b: bytes, max_steps: int) -> None:
        """A's host peer sends data_a (to B's), B's sends data_b; both then close."""
        self.pending_b = data_b
        self.len_up, self.len_down = len(data_a), len(data_b)
        self._push(self.a, self.fa, self.flow_a, data_a)
        while self.steps < max_steps:
            self.steps += 1
            self._events()
            self._ship(self.a, self.b)
            self._ship(self.b, self.a)
            self._host_read()
            self._ship(self.a, self.b)
            self._ship(self.b, self.a)
            done = self.closed["a"] and self.closed["b"]
            if done and not self.wire:
                self.reader_chunk = 1 << 30
                self._host_read()  # what the sockets still hold (the engines are done)
                return
            na = self.a.timers(self.clock.now)
            nb = self.b.timers(self.clock.now)
            cands = [t for t in (na, nb) if t]
            if self.wire:
                cands.append(self.wire[0][0])
            if self._unread():
                cands.append(self.clock.now + self.READ_EVERY)  # a slow reader keeps reading
            if not cands:
                return
            t = min(cands)
            self.clock.to(max(t, self.clock.now))
            # Everything arriving now goes in as one batch per engine.
            batch = {}
            while self.wire and self.wire[0][0] <= self.clock.now:
                _, _, dst, fr = heapq.heappop(self.wire)
                batch.setdefault(id(dst), (dst, []))[1].append(fr)
            for dst, frames in batch.values():
                for fr in frames:
                    dst.input(fr, self.clock.now)
                dst.flush(self.clock.now)
            self.a.timers(self.clock.now)
            self.b.timers(self.clock.now)
        raise AssertionError(f"not done after {max_steps} steps: got {len(self.got_b)}/{len(data_a)} and "
                             f"{len(self.got_a)}/{len(data_b)} bytes, flows {self.a.flows()} {self.b.flows()}")


def sha(b):
    return hashlib.sha256(bytes(b)).hexdigest()


# 20 seeds, each through every fault mix, 1 MiB each way; then bigger transfers, small
# windows (rx_buf 64 KiB: the receiver's window, not the congestion window, limits) and slow
# host readers (the advertised window closes and reopens).
CASES = [(seed, mix, 1 << 20, {}) for seed in range(20) for mix in MIXES]
CASES += [(100, "everything", 4 << 20, {}), (101, "loss", 4 << 20, {}), (102, "heavy", 2 << 20, {})]
CASES += [(200 + i, mix, 1 << 20, {"rx_buf": 1 << 16}) for i, mix in enumerate(MIXES)]
CASES += [(300 + i, mix, 1 << 19, {"rx_buf": 1 << 15, "reader_chunk": 3000}) for i, mix in enumerate(MIXES)]


def case_id(seed, mix, size, cfg):
    extra = "".join(f"-{k}={v}" for k, v in cfg.items())
    return f"{mix}-{seed}-{size >> 10}KiB{extra}"


@pytest.mark.parametrize("seed,mix,size,cfg", CASES, ids=[case_id(*c) for c in CASES])
def test_pair_transfers_both_ways(seed, mix, size, cfg):
    rng = random.Random(seed)
    up = rng.randbytes(size)
    down = rng.randbytes(size - rng.randint(0, 5000))
    p = Pair(seed, MIXES[mix], **cfg)
    p.run(up, down, max_steps=20_000)  # passing runs need < 1,500
    assert sha(p.got_b) == sha(up), "A → B stream"
    assert sha(p.got_a) == sha(down), "B → A stream"
    # No connection was ever aborted, and no RST at all went out before both streams were
    # complete. After that, a late duplicate reaching an end that has already closed gets an RST
    # (RFC 9293 §3.10.7.1), which may end the other end's TIME-WAIT early (RFC 9293 allows it;
    # RFC 1337 describes the hazard).
    assert p.rsts_abort == 0 and p.rsts_early == 0
    sa, sb = p.a.stats(), p.b.stats()
    assert sa["rst_in"] + sb["rst_in"] <= p.rsts_stray
    # Every corrupted frame was caught by the receiver's checksum check (the fault injector
    # counts the copies it corrupted and delivered; all of them were delivered by the end).
    assert sa["bad_csum"] + sb["bad_csum"] == p.inject.corrupted
    if MIXES[mix].corrupt:
        assert p.inject.corrupted > 0
    # Both ends closed cleanly, and nothing is left once the timers have run out.
    assert p.closed["a"] in ([0], [_tcp.CLOSE_GUEST_RST]) and p.closed["b"] in ([0], [_tcp.CLOSE_GUEST_RST])
    assert 0 in p.closed["a"] + p.closed["b"], "at least one end closed cleanly"
    if _tcp.CLOSE_GUEST_RST in p.closed["a"] + p.closed["b"]:
        assert p.rsts_stray > 0
    assert p.a.flows() == [] and p.b.flows() == []
    for eng, fd in ((p.a, p.fa), (p.b, p.fb)):
        s = eng.sock(fd)
        assert s["closed"] and not s["rst"] and s["rx_len"] == 0
