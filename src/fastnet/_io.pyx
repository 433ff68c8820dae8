# cython: language_level=3
"""Links and the per-frame dispatch core (csrc/fn_link.c, fn_stack.c, fn_fault.c).

A ``Link`` is a descriptor carrying Ethernet frames (a TAP device, a length-prefixed stream
socket, or a datagram socket), read and written in batches by C. A ``Stack`` joins a link to
a ``TcpEngine``: one ``poll_link()`` call reads a batch, classifies and dispatches every frame
in C (ARP answered, TCP to the engine), queues the rest for Python, flushes the engine and
writes the link. Python calls it once per event-loop wake-up, never per frame.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from posix.unistd cimport close

from fastnet._csrc cimport *
from fastnet._tcp cimport TcpEngine

import ipaddress
import os

LINK_TAP = FN_LINK_TAP
LINK_STREAM = FN_LINK_STREAM
LINK_DGRAM = FN_LINK_DGRAM


def tap_open(name, netns=None, bint vnet_hdr=False, bint offload=False):
    """Open (creating it if absent) TAP device ``name`` in the network namespace at path
    ``netns`` (default: ours). Returns ``(fd, ifname)``; the fd is non-blocking."""
    cdef char out[16]
    memset(out, 0, 16)
    cdef bytes bname = name.encode() if name else b""
    cdef bytes bns = os.fsencode(netns) if netns else b""
    cdef const char *pname = PyBytes_AS_STRING(bname) if bname else NULL
    cdef const char *pns = PyBytes_AS_STRING(bns) if bns else NULL
    cdef int fd = fn_tap_open(pname, pns, vnet_hdr, offload, out)
    if fd < 0:
        raise OSError(-fd, f"cannot open TAP {name!r}" + (f" in {netns}" if netns else "") + f": {os.strerror(-fd)}")
    return fd, out.decode()


cdef class Link:
    """A descriptor carrying guest frames. kind: LINK_TAP (vnet = virtio header size, 0 or 10),
    LINK_STREAM (prefix: 4 = QEMU's big-endian u32, -2 = HyperKit's little-endian u16),
    LINK_DGRAM. The link takes ownership of fd (closed with the link)."""

    cdef fn_link l
    cdef bint inited
    cdef fn_fault fin, fout
    cdef bint has_fin, has_fout
    cdef bint owns_fd

    def __cinit__(self, int kind, int fd, int framing=0, unsigned int max_frame=1514 + 4,
                  unsigned int txq_bytes=8 << 20, unsigned int txq_frames=8192, bint owns_fd=True):
        if fn_link_init(&self.l, kind, fd, framing, max_frame, txq_bytes, txq_frames) < 0:
            raise ValueError("bad link parameters (stream prefix must be 4 or -2/2) or out of memory")
        self.inited = True
        self.owns_fd = owns_fd

    def __dealloc__(self):
        if self.inited:
            fn_link_free(&self.l)
        if self.has_fin:
            fn_fault_free(&self.fin)
        if self.has_fout:
            fn_fault_free(&self.fout)
        if self.owns_fd and self.l.fd >= 0:
            close(self.l.fd)

    def fileno(self):
        return self.l.fd

    @property
    def blocked(self):
        """The last write stopped because the peer could not take more."""
        return bool(self.l.blocked)

    @property
    def eof(self):
        return bool(self.l.eof)

    @property
    def error(self):
        return self.l.err

    def set_faults(self, direction, *, double drop=0, double duplicate=0, double reorder=0, double corrupt=0,
                   double delay=0, double hold=0.001, seed=1):
        """Seeded fault injection on frames from the guest ('in') or to it ('out').
        Probabilities are fractions (0.01 = 1 %); delay and hold are seconds."""
        cdef fn_fault_cfg cfg
        memset(&cfg, 0, sizeof(cfg))
        cfg.drop_ppm = <uint32_t>(drop * 1e6)
        cfg.dup_ppm = <uint32_t>(duplicate * 1e6)
        cfg.reorder_ppm = <uint32_t>(reorder * 1e6)
        cfg.corrupt_ppm = <uint32_t>(corrupt * 1e6)
        cfg.delay_us = <uint32_t>(delay * 1e6)
        cfg.hold_us = <uint32_t>(hold * 1e6)
        cfg.seed = seed
        if direction == "in":
            if self.has_fin:
                fn_fault_free(&self.fin)
            fn_fault_init(&self.fin, &cfg)
            self.has_fin = True
            self.l.fault_in = &self.fin
        elif direction == "out":
            if self.has_fout:
                fn_fault_free(&self.fout)
            fn_fault_init(&self.fout, &cfg)
            self.has_fout = True
            self.l.fault_out = &self.fout
        else:
            raise ValueError("direction is 'in' or 'out'")

    def fault_stats(self):
        out = {}
        if self.has_fin:
            out["in"] = _fault_dict(&self.fin)
        if self.has_fout:
            out["out"] = _fault_dict(&self.fout)
        return out

    def stats(self):
        cdef dict st = self.l.st
        return st

    def send_frame(self, frame):
        """Queue one frame built in Python (a DHCP or DNS reply, say) for the guest."""
        cdef bytes b = bytes(frame)
        cdef uint8_t *p = fn_txq_reserve(&self.l.txq, len(b))
        if p == NULL:
            return False
        memcpy(p, PyBytes_AS_STRING(b), len(b))
        fn_txq_commit(&self.l.txq, p, len(b))
        return True

    def write(self, unsigned long long now):
        """Write queued frames: 0 all sent, 1 blocked, raises on a link error."""
        cdef int r = fn_link_write(&self.l, now)
        if r < 0:
            raise OSError(self.l.err, os.strerror(self.l.err))
        return r


cdef dict _fault_dict(fn_fault *f):
    return {"seen": f.seen, "dropped": f.dropped, "duplicated": f.duplicated, "reordered": f.reordered,
            "corrupted": f.corrupted, "delayed": f.delayed, "held": f.nheld}


cdef extern from "fn_txq.h" nogil:
    uint8_t *fn_txq_reserve(fn_txq *q, uint32_t max_len)
    fn_txd *fn_txq_commit(fn_txq *q, uint8_t *p, uint32_t len)


cdef class Stack:
    """A link joined to the TCP engine, with ARP answered for ``arp_ips`` from ``gw_mac``."""

    cdef fn_stack s
    cdef bint inited
    cdef readonly Link link
    cdef readonly TcpEngine engine

    def __cinit__(self, Link link, TcpEngine engine, gw_mac="f6:16:36:bc:f9:c6", arp_ips=(),
                  unsigned int slow_bytes=4 << 20):
        cdef bytes mac = bytes.fromhex(gw_mac.replace(":", "")) if isinstance(gw_mac, str) else bytes(gw_mac)
        self.link = link
        self.engine = engine
        engine._use_txq(&link.l.txq, link)
        if fn_stack_init(&self.s, &link.l, engine.t, <const uint8_t *>PyBytes_AS_STRING(mac), slow_bytes) < 0:
            raise MemoryError()
        self.inited = True
        for ip in arp_ips:
            self.add_arp(ip)

    def __dealloc__(self):
        if self.inited:
            fn_stack_free(&self.s)

    def add_arp(self, ip):
        cdef bytes b = ipaddress.IPv4Address(ip).packed
        if fn_stack_add_arp(&self.s, <const uint8_t *>PyBytes_AS_STRING(b)) < 0:
            raise ValueError("too many ARP addresses")

    def poll_link(self, unsigned long long now):
        """Read and handle one batch from the link. Returns the number of frames; raises
        EOFError when the peer closed the link and OSError on a link error."""
        cdef int n = fn_stack_poll_link(&self.s, now)
        if n < 0:
            if self.s.link.eof:
                raise EOFError("the link was closed by its peer")
            raise OSError(self.s.link.err, os.strerror(self.s.link.err))
        self.engine._keep = []
        return n

    def poll_host(self, unsigned long long now):
        """Hand every ready host socket to the engine, then flush and write the link."""
        self.engine._poll_host(now)
        return fn_stack_output(&self.s, now)

    def timers(self, unsigned long long now):
        """Run engine timers, release fault-held frames; returns the next deadline (µs, 0 = none)."""
        cdef uint64_t a = fn_tcp_timers(self.s.tcp, now)
        fn_stack_output(&self.s, now)
        cdef uint64_t b = fn_link_deadline(self.s.link)
        if a == 0:
            return b
        if b == 0:
            return a
        return a if a < b else b

    def link_ready(self, unsigned long long now):
        """The link became writable: write what waits, then let blocked flows send again."""
        cdef int r = fn_link_write(self.s.link, now)
        if r == 0:
            fn_tcp_link_ready(self.s.tcp, now)
            r = fn_link_write(self.s.link, now)
        if r < 0:
            raise OSError(self.s.link.err, os.strerror(self.s.link.err))
        return r

    def output(self, unsigned long long now):
        """Flush the engine and write the link (after attach/refuse/open from Python)."""
        return fn_stack_output(&self.s, now)

    def inject(self, frame, unsigned long long now):
        """Handle one frame as if it came from the link."""
        cdef bytes b = bytes(frame)
        fn_stack_input(&self.s, <const uint8_t *>PyBytes_AS_STRING(b), len(b), 0, now)
        fn_stack_output(&self.s, now)

    def slow_frames(self):
        """Frames the C path did not handle (for the Python services), oldest first."""
        cdef uint32_t pos = 0, n
        out = []
        while pos < self.s.slow_len:
            memcpy(&n, self.s.slow + pos, 4)
            out.append(PyBytes_FromStringAndSize(<char *>self.s.slow + pos + 4, n))
            pos += 4 + n
        self.s.slow_len = 0
        self.s.slow_n = 0
        return out

    def stats(self):
        cdef dict st = self.s.st
        from fastnet._wire import Kind, strerror
        return {
            "frames": st["frames"], "bytes": st["bytes"],
            "kinds": {Kind(i).name.lower(): v for i, v in enumerate(st["kind"]) if v},
            "malformed": {strerror(-i): v for i, v in enumerate(st["malformed"]) if v and i},
            "arp_replies": st["arp_replies"], "arp_ignored": st["arp_ignored"],
            "slow_queued": st["slow_queued"], "slow_dropped": st["slow_dropped"],
            "not_for_us": st["not_for_us"], "polls": st["polls"], "link_blocked": st["link_blocked"],
        }
