# cython: language_level=3
"""Links and the per-frame dispatch core (csrc/fn_link.c, fn_stack.c, fn_fault.c).

A ``Link`` is a descriptor carrying Ethernet frames (a TAP device, a length-prefixed stream
socket, or a datagram socket), read and written in batches by C. A ``Stack`` joins a link to
a ``TcpEngine``: one ``poll_link()`` call reads a batch, classifies and dispatches every frame
in C (ARP answered, TCP to the engine), queues the rest for Python, flushes the engine and
writes the link. Python calls it once per event-loop wake-up, never per frame.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
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


def if_configure(name, int mtu=0, ip=None, int prefix=24, gateway=None, mac=None):
    """Configure an interface of the current network namespace with ioctls (no iproute2 needed):
    MTU, IPv4 address/prefix, MAC, up (and lo up), default route via gateway."""
    cdef bytes bn = name.encode()
    cdef bytes bip = ipaddress.IPv4Address(ip).packed if ip is not None else b""
    cdef bytes bgw = ipaddress.IPv4Address(gateway).packed if gateway is not None else b""
    cdef bytes bmac = b""
    if mac is not None:
        bmac = bytes.fromhex(mac.replace(":", "")) if isinstance(mac, str) else bytes(mac)
    cdef int rc = fn_if_configure(PyBytes_AS_STRING(bn), mtu,
                                  <const uint8_t *>PyBytes_AS_STRING(bip) if bip else NULL, prefix,
                                  <const uint8_t *>PyBytes_AS_STRING(bgw) if bgw else NULL,
                                  <const uint8_t *>PyBytes_AS_STRING(bmac) if bmac else NULL)
    if rc < 0:
        raise OSError(-rc, f"cannot configure {name}: {os.strerror(-rc)}")


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

    def pcap(self, path, unsigned int snaplen=0):
        """Record every frame in both directions to a pcap file (None stops)."""
        cdef int fd = -1
        if path is not None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        if fn_link_pcap(&self.l, fd, snaplen) < 0:
            raise MemoryError()

    @property
    def pcap_frames(self):
        return self.l.pcap_frames

    def write_fileno(self):
        """The descriptor frames are written to (stdout for stdio links)."""
        return self.l.wfd

    def set_write_fd(self, int fd):
        """Write frames to another descriptor (stdio links read stdin and write stdout)."""
        self.l.wfd = fd

    @property
    def blocked(self):
        """The last write stopped because the peer could not take more."""
        return bool(self.l.blocked)

    @property
    def pending(self):
        """Whole frames wait in the read buffer (a stream read brought more than one batch):
        poll again without waiting for readiness."""
        return bool(fn_link_pending(&self.l))

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


class DatagramEvent:
    NEW_FLOW = FN_DEV_NEW_FLOW
    CLOSED = FN_DEV_CLOSED


cdef object _addr4(const uint8_t *p):
    return ipaddress.IPv4Address(PyBytes_FromStringAndSize(<char *>p, 4))


cdef dict _dgram_info(uint64_t fid, const fn_dgram_flow *f):
    info = {}
    info["flow"] = fid
    info["proto"] = "udp" if f.key.proto == 17 else "icmp"
    info["guest"] = (_addr4(f.key.guest_ip + 12), f.key.guest_port)
    info["remote"] = (_addr4(f.key.remote_ip + 12), f.key.remote_port)
    info["state"] = "pending" if f.state == FN_DG_PENDING else "active"
    info["fd"] = f.fd
    info["packets_g2h"] = f.pkts_g2h
    info["packets_h2g"] = f.pkts_h2g
    info["bytes_g2h"] = f.bytes_g2h
    info["bytes_h2g"] = f.bytes_h2g
    return info


cdef class Switch:
    """Joins the stacks of several guests on one virtual network (vmnet: many VMs per socket)."""

    cdef fn_switch sw
    cdef set _members

    def __cinit__(self):
        fn_switch_init(&self.sw)
        self._members = set()

    def stats(self):
        return {"ports": self.sw.n, "switched": self.sw.switched, "flooded": self.sw.flooded,
                "unknown": self.sw.unknown}


cdef class Stack:
    """A link joined to the TCP engine and the datagram NAT (UDP, ICMP echo), with ARP answered
    for ``arp_ips`` and ICMP echo for ``gateway`` from ``gw_mac``."""

    cdef fn_stack s
    cdef bint inited
    cdef fn_dgram *dg
    cdef readonly Link link
    cdef readonly TcpEngine engine
    cdef readonly bytes gw_mac
    cdef readonly int mtu
    cdef object _switch
    cdef uint16_t ip_id      # IPv4 IDs of the datagrams send_udp builds (fragments must not collide)

    def __cinit__(self, Link link, TcpEngine engine, gw_mac="f6:16:36:bc:f9:c6", arp_ips=(), gateway=None,
                  int mtu=1500, bint datagrams=True, unsigned int max_udp_flows=16384,
                  double udp_idle=60.0, double icmp_idle=10.0, unsigned int slow_bytes=4 << 20, seed=0):
        cdef bytes mac = bytes.fromhex(gw_mac.replace(":", "")) if isinstance(gw_mac, str) else bytes(gw_mac)
        cdef fn_dgram_config dc
        self.link = link
        self.engine = engine
        self.gw_mac = mac
        self.mtu = mtu
        engine._use_txq(&link.l.txq, link)
        if fn_stack_init(&self.s, &link.l, engine.t, <const uint8_t *>PyBytes_AS_STRING(mac), slow_bytes) < 0:
            raise MemoryError()
        self.inited = True
        if datagrams:
            fn_dgram_config_default(&dc)
            memcpy(dc.gw_mac, PyBytes_AS_STRING(mac), 6)
            dc.mtu = mtu
            dc.max_flows = max_udp_flows
            dc.udp_idle = <uint64_t>(udp_idle * 1e6)
            dc.icmp_idle = <uint64_t>(icmp_idle * 1e6)
            self.dg = fn_dgram_new(&dc, &link.l.txq, seed or int.from_bytes(os.urandom(8), "little"))
            if self.dg == NULL:
                raise MemoryError()
            self.s.dgram = self.dg
        for ip in arp_ips:
            self.add_arp(ip)
        if gateway is not None:
            gw = ipaddress.IPv4Address(gateway).packed
            fn_stack_set_gateway(&self.s, <const uint8_t *>PyBytes_AS_STRING(gw))

    def __dealloc__(self):
        if self._switch is not None:
            fn_switch_remove(&(<Switch>self._switch).sw, &self.s)
        if self.inited:
            fn_stack_free(&self.s)
        if self.dg != NULL:
            fn_dgram_free(self.dg)
            self.dg = NULL

    # -- datagram NAT ------------------------------------------------------------------------

    def join(self, Switch sw):
        """Become a port of a switch (frames to other guests go to their links)."""
        if fn_switch_add(&sw.sw, &self.s) < 0:
            raise ValueError("the switch has no free port")
        sw._members.add(self)
        self._switch = sw

    def leave(self):
        if self._switch is not None:
            fn_switch_remove(&(<Switch>self._switch).sw, &self.s)
            (<Switch>self._switch)._members.discard(self)
            self._switch = None

    @property
    def guest_mac(self):
        """The guest's MAC, learned from its frames (None before the first frame)."""
        return PyBytes_FromStringAndSize(<char *>self.s.guest_mac, 6) if self.s.has_guest_mac else None

    def dgram_fileno(self):
        """epoll over the datagram flows' host sockets (readable when one has data)."""
        return self.dg.epfd if self.dg != NULL else -1

    def poll_dgram(self, unsigned long long now):
        """Read ready datagram sockets into frames for the guest, and write the link."""
        if self.dg != NULL:
            fn_dgram_poll(self.dg, now)
        return fn_link_write(self.s.link, now)

    def dgram_events(self):
        """Drain events: (DatagramEvent, flow, proto, err, (guest_ip, guest_port, remote_ip, remote_port)).
        For ICMP echo flows the guest port is the echo identifier and the remote port 0."""
        cdef fn_dgram_event ev
        cdef const fn_dgram_flow *f
        cdef object tup  # (typed: Cython's inference loops on a ctuple/None mix here)
        out = []
        if self.dg == NULL:
            return out
        while fn_dgram_next_event(self.dg, &ev):
            tup = None
            f = fn_dgram_get(self.dg, ev.flow)
            if f != NULL:
                tup = (_addr4(f.key.guest_ip + 12), f.key.guest_port, _addr4(f.key.remote_ip + 12), f.key.remote_port)
            out.append((ev.type, ev.flow, ev.proto, ev.err, tup))
        return out

    def dgram_attach(self, unsigned long long flow, sock, unsigned long long now, bint raw=False):
        """Answer a datagram NEW_FLOW with a connected host socket (taken over: detached)."""
        cdef int fd
        self._need_dgram()
        if hasattr(sock, "detach"):
            sock.setblocking(False)
            fd = sock.detach()
        else:
            fd = int(sock)
        if fn_dgram_attach(self.dg, flow, fd, raw, now) < 0:
            close(fd)
            raise ValueError("no pending datagram flow with that id")
        fn_link_write(self.s.link, now)

    def dgram_open(self, guest_mac, guest_ip, int guest_port, remote_ip, int remote_port, sock,
                   unsigned long long now):
        """A UDP flow opened from the host side (a published UDP port's client): datagrams from
        the connected socket go to guest_ip:guest_port as if from remote_ip:remote_port, and
        the guest's replies go back out on it. The socket is taken over. Returns the flow id."""
        cdef int fd
        cdef bytes gm = bytes.fromhex(guest_mac.replace(":", "")) if isinstance(guest_mac, str) else bytes(guest_mac)
        cdef bytes gi = ipaddress.IPv4Address(guest_ip).packed, ri = ipaddress.IPv4Address(remote_ip).packed
        self._need_dgram()
        if hasattr(sock, "detach"):
            sock.setblocking(False)
            fd = sock.detach()
        else:
            fd = int(sock)
        flow = fn_dgram_open(self.dg, <const uint8_t *>PyBytes_AS_STRING(gm), <const uint8_t *>PyBytes_AS_STRING(gi),
                             guest_port, <const uint8_t *>PyBytes_AS_STRING(ri), remote_port, fd, now)
        if flow == 0:
            close(fd)
            raise ValueError("the 4-tuple is in use or the table is full")
        return flow

    def dgram_refuse(self, unsigned long long flow, int icmp_code, unsigned long long now):
        """Refuse a pending datagram flow: icmp_code < 0 drops silently, else ICMP destination
        unreachable with that code (3 port, 13 prohibited, 0 net, 1 host) goes to the guest."""
        self._need_dgram()
        if fn_dgram_refuse(self.dg, flow, icmp_code if icmp_code >= 0 else -1, now) < 0:
            raise ValueError("no pending datagram flow with that id")
        fn_link_write(self.s.link, now)

    def dgram_close(self, unsigned long long flow):
        self._need_dgram()
        return fn_dgram_close(self.dg, flow) == 0

    cdef _need_dgram(self):
        if self.dg == NULL:
            raise ValueError("this stack has no datagram NAT")

    def dgram_flows(self):
        cdef uint32_t cur = 0
        cdef uint64_t fid
        cdef const fn_dgram_flow *f
        out = []
        if self.dg == NULL:
            return out
        while True:
            fid = fn_dgram_iter(self.dg, &cur)
            if fid == 0:
                return out
            f = fn_dgram_get(self.dg, fid)
            out.append(_dgram_info(fid, f))

    def dgram_stats(self):
        if self.dg == NULL:
            return {}
        cdef dict st = self.dg.st
        return st

    def send_udp(self, dst_mac, src_ip, int sport, dst_ip, int dport, payload, unsigned long long now, int ttl=64):
        """A UDP datagram built here (a Python service's reply, e.g. DHCP), fragmented as needed."""
        cdef bytes dm = bytes.fromhex(dst_mac.replace(":", "")) if isinstance(dst_mac, str) else bytes(dst_mac)
        cdef bytes si = ipaddress.IPv4Address(src_ip).packed, di = ipaddress.IPv4Address(dst_ip).packed
        cdef bytes pl = bytes(payload)
        if fn_dgram_emit_udp(&self.s.link.txq, <const uint8_t *>PyBytes_AS_STRING(dm),
                             <const uint8_t *>PyBytes_AS_STRING(self.gw_mac), <const uint8_t *>PyBytes_AS_STRING(si),
                             sport, <const uint8_t *>PyBytes_AS_STRING(di), dport,
                             <const uint8_t *>PyBytes_AS_STRING(pl), len(pl), self.mtu, self.ip_id, ttl) < 0:
            return False
        self.ip_id += 1
        fn_link_write(self.s.link, now)
        return True

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
        """Run engine and datagram timers, release fault-held frames; returns the next deadline
        (µs, 0 = none)."""
        cdef uint64_t a = fn_tcp_timers(self.s.tcp, now)
        cdef uint64_t c = 0
        if self.dg != NULL:
            c = fn_dgram_timers(self.dg, now)
        fn_frag_expire(&self.s.frag, now)
        fn_stack_output(&self.s, now)
        cdef uint64_t b = fn_link_deadline(self.s.link)
        cdef uint64_t best = a
        if b and (best == 0 or b < best):
            best = b
        if c and (best == 0 or c < best):
            best = c
        return best

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
            # Bucket 0 holds what has no reason of its own (a reassembled datagram that does not
            # parse): shown as "other", not hidden.
            "malformed": {(strerror(-i) if i else "other"): v for i, v in enumerate(st["malformed"]) if v},
            "arp_replies": st["arp_replies"], "arp_ignored": st["arp_ignored"],
            "slow_queued": st["slow_queued"], "slow_dropped": st["slow_dropped"],
            "not_for_us": st["not_for_us"], "polls": st["polls"], "link_blocked": st["link_blocked"],
            "gw_echo_replies": st["gw_echo_replies"], "dropped_proto": st["dropped_proto"],
            "fragments": self._frag_stats(),
        }

    def _frag_stats(self):
        cdef dict fs = self.s.frag.st
        return fs
