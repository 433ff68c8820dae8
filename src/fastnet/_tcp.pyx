# cython: language_level=3
"""The TCP engine (csrc/fn_tcp.c) as a Python object.

One ``TcpEngine`` is the whole flow table (sans-IO at that level: every call takes ``now``
in microseconds). The forwarder's link layer drives it from C, per frame; this wrapper is the
flow-event and test surface: feed frames, flush, run timers, answer new-flow events with a host
socket, read the frames it produced, and inspect flows and counters. An engine belongs to one
thread (one event loop).

``memory=True`` swaps the real host sockets for in-memory ones (``socket()``, ``push()``,
``take()``, ...), so tests script both peers with a fake clock.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.errno cimport errno
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from posix.unistd cimport close

from fastnet._csrc cimport *

import enum
import ipaddress
import os

from fastnet.errors import ConnectionStateError, MalformedPacket


cdef extern from "<sys/epoll.h>" nogil:
    struct epoll_data_t "epoll_data":
        unsigned long long u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    enum:
        EPOLL_CLOEXEC


class TcpState(enum.IntEnum):
    CLOSED = FN_TCP_CLOSED
    CONNECTING = FN_TCP_CONNECTING
    SYN_SENT = FN_TCP_SYN_SENT
    SYN_RECEIVED = FN_TCP_SYN_RECEIVED
    ESTABLISHED = FN_TCP_ESTABLISHED
    FIN_WAIT_1 = FN_TCP_FIN_WAIT_1
    FIN_WAIT_2 = FN_TCP_FIN_WAIT_2
    CLOSE_WAIT = FN_TCP_CLOSE_WAIT
    CLOSING = FN_TCP_CLOSING
    LAST_ACK = FN_TCP_LAST_ACK
    TIME_WAIT = FN_TCP_TIME_WAIT


class TcpEvent(enum.IntEnum):
    NEW_FLOW = FN_TEV_NEW_FLOW
    ESTABLISHED = FN_TEV_ESTABLISHED
    CLOSED = FN_TEV_CLOSED


class Refusal(enum.IntEnum):
    """How a refused guest SYN is answered."""

    RST = FN_REFUSE_RST
    NET_UNREACHABLE = FN_REFUSE_NET_UNREACH
    HOST_UNREACHABLE = FN_REFUSE_HOST_UNREACH
    PORT_UNREACHABLE = FN_REFUSE_PORT_UNREACH
    ADMIN_PROHIBITED = FN_REFUSE_ADMIN
    DROP = FN_REFUSE_DROP


HEV_IN = FN_HEV_IN
HEV_OUT = FN_HEV_OUT
HEV_ERR = FN_HEV_ERR
HEV_HUP = FN_HEV_HUP
HEV_RDHUP = FN_HEV_RDHUP

CLOSE_GUEST_RST = FN_CLOSE_GUEST_RST
CLOSE_TIMEOUT = FN_CLOSE_TIMEOUT
CLOSE_REFUSED = FN_CLOSE_REFUSED
CLOSE_ADMIN = FN_CLOSE_ADMIN

# struct fn_tcb size: the memory an idle flow costs in the engine (plus the host socket).
TCB_SIZE = sizeof(fn_tcb)


cdef int _sink_flush(void *ctx, fn_txq *q) noexcept with gil:
    """Transmit-queue flush for an engine that owns its queue: frames go to a Python list."""
    cdef TcpEngine e = <TcpEngine>ctx
    cdef uint32_t i
    cdef fn_txd *d
    try:
        for i in range(q.head, q.nd):
            d = &q.d[i]
            e._sink.append((PyBytes_FromStringAndSize(<char *>q.buf + d.off, d.len), d.flags, d.gso_size))
        fn_txq_consumed(q, q.nd - q.head)
        return 0
    except BaseException:
        return -1


cdef bytes _ip4(object v):
    return ipaddress.IPv4Address(v).packed


cdef bytes _mac(object v):
    if isinstance(v, str):
        v = bytes.fromhex(v.replace(":", ""))
    b = bytes(v)
    if len(b) != 6:
        raise ValueError("a MAC address has 6 bytes")
    return b


cdef class TcpEngine:
    """The flow table and TCP state machines facing the guest."""

    def __cinit__(self, *, bint memory=False, int mss=1460, tx_seg_max=None, bint csum_partial=False,
                  bint gso=False, bint verify_checksums=True, unsigned int rx_buf=1 << 21,
                  unsigned int max_flows=65536, gw_mac="f6:16:36:bc:f9:c6", double connect_timeout=30.0,
                  double time_wait=15.0, double fin_timeout=60.0, double idle_timeout=7200.0,
                  double rto_min=0.05, double rto_initial=0.25, double rto_max=60.0,
                  unsigned int max_retries=15, unsigned int init_cwnd=10, unsigned int send_burst=1 << 20,
                  bint tail_loss_probe=True, bint live_clock=False,
                  unsigned int txq_bytes=4 << 20, unsigned int txq_frames=4096, seed=None):
        cdef fn_tcp_config cfg
        fn_tcp_config_default(&cfg)
        memcpy(cfg.gw_mac, PyBytes_AS_STRING(_mac(gw_mac)), 6)
        cfg.mss = mss
        cfg.tx_seg_max = mss if tx_seg_max is None else tx_seg_max
        cfg.tx_csum_partial = csum_partial or gso
        cfg.tx_gso = gso
        cfg.rx_csum_verify = verify_checksums
        cfg.rx_buf = rx_buf
        cfg.max_flows = max_flows
        cfg.connect_timeout = <uint64_t>(connect_timeout * 1e6)
        cfg.time_wait = <uint64_t>(time_wait * 1e6)
        cfg.fin_timeout = <uint64_t>(fin_timeout * 1e6)
        cfg.idle_timeout = <uint64_t>(idle_timeout * 1e6)
        cfg.rto_min = <uint64_t>(rto_min * 1e6)
        cfg.rto_initial = <uint64_t>(rto_initial * 1e6)
        cfg.rto_max = <uint64_t>(rto_max * 1e6)
        cfg.max_retries = max_retries
        cfg.init_cwnd = init_cwnd
        cfg.send_burst = send_burst
        cfg.tail_loss_probe = tail_loss_probe
        key = os.urandom(16) if seed is None else int(seed).to_bytes(16, "little")
        memcpy(cfg.isn_secret, PyBytes_AS_STRING(key), 16)
        self.memory = memory
        self.epfd = -1
        self._keep = []
        self._sink = []
        if memory:
            fn_memhost_init(&self.mem)
            fn_memhost_ops(&self.mem, &self.ops)
        else:
            self.epfd = epoll_create1(EPOLL_CLOEXEC)
            if self.epfd < 0:
                raise OSError(errno, os.strerror(errno))
            fn_host_ops_sys(&self.ops, &self.epfd)
            if live_clock:
                # Re-read time.monotonic()'s clock while working (see fn_host_ops.clock):
                # only for callers whose `now` comes from that clock.
                self.ops.clock = fn_host_clock_monotonic
        if fn_txq_init(&self.own_txq, txq_bytes, txq_frames, 16) < 0:
            raise MemoryError()
        self.owns_txq = True
        self.txq = &self.own_txq
        self.own_txq.flush = _sink_flush
        self.own_txq.flush_ctx = <void *>self
        self.t = fn_tcp_new(&cfg, &self.ops, self.txq)
        if self.t == NULL:
            raise ValueError("invalid TCP engine configuration (rx_buf a power of two >= 4096, "
                             "64 <= mss <= tx_seg_max <= 65495, max_flows > 0)")

    def __dealloc__(self):
        if self.t != NULL:
            fn_tcp_free(self.t)
            self.t = NULL
        fn_txq_free(&self.own_txq)
        if self.memory:
            fn_memhost_free(&self.mem)
        if self.epfd >= 0:
            close(self.epfd)
            self.epfd = -1

    cdef void _use_txq(self, fn_txq *q, object owner):
        """Send frames to a link's transmit queue instead of our own (the forwarder)."""
        fn_txq_flush(&self.own_txq)
        self.txq = q
        self.t.txq = q
        self.owns_txq = False
        self._txq_owner = owner

    # -- frames in, frames out ---------------------------------------------------------------

    def input(self, frame, unsigned long long now, bint csum_ok=False):
        """Feed one guest frame (an Ethernet frame carrying IPv4/TCP). The frame is kept until
        the next flush(). Raises MalformedPacket for a frame that does not parse."""
        cdef Py_buffer v
        cdef fn_frame f
        cdef int rc
        b = bytes(frame)
        rc = fn_parse_frame(<const uint8_t *>PyBytes_AS_STRING(b), len(b), &f)
        if rc != 0:
            raise MalformedPacket(fn_strerror(rc).decode(), rc)
        if f.kind != FN_KIND_TCP4:
            raise ValueError("not an IPv4 TCP frame")
        self._keep.append(b)
        return fn_tcp_input(self.t, <const uint8_t *>PyBytes_AS_STRING(b), &f, csum_ok, now) == 0

    def flush(self, unsigned long long now):
        """End of a batch: host writes, ACKs and data towards the guest."""
        fn_tcp_flush(self.t, now)
        self._keep = []

    def timers(self, unsigned long long now):
        """Run due timers and flush; returns the next deadline in µs (0 = none)."""
        cdef uint64_t nxt = fn_tcp_timers(self.t, now)
        fn_tcp_flush(self.t, now)
        self._keep = []
        return nxt

    def take_frames(self):
        """Frames produced since the last call (engines that own their transmit queue)."""
        if not self.owns_txq:
            raise ConnectionStateError("frames go to the link's queue")
        fn_txq_flush(self.txq)
        out = [f[0] for f in self._sink]
        self._sink = []
        return out

    def take_frames_meta(self):
        """Like take_frames, with (frame, txd flags, gso_size) tuples."""
        fn_txq_flush(self.txq)
        out = self._sink
        self._sink = []
        return out

    # -- host side ---------------------------------------------------------------------------

    def host_event(self, unsigned long long flow, unsigned int events, unsigned long long now):
        fn_tcp_host_event(self.t, flow, events, now)
        fn_tcp_flush(self.t, now)

    cdef int _poll_host(self, unsigned long long now) except -1:
        cdef epoll_event evs[256]
        cdef int n, i
        while True:
            with nogil:
                n = epoll_wait(self.epfd, evs, 256, 0)
            if n < 0:
                if errno == 4:  # EINTR
                    continue
                raise OSError(errno, os.strerror(errno))
            for i in range(n):
                fn_tcp_host_event(self.t, evs[i].data.u64, evs[i].events, now)
            if n < 256:
                return 0

    def poll_host(self, unsigned long long now):
        """Real sockets: handle every ready host socket (epoll, no wait), then flush."""
        if self.memory:
            raise ConnectionStateError("in-memory engines get host events from host_event()")
        self._poll_host(now)
        fn_tcp_flush(self.t, now)

    def fileno(self):
        """The epoll descriptor over every host socket (readable when one is ready)."""
        return self.epfd

    def attach(self, unsigned long long flow, fd, unsigned long long now):
        """Answer NEW_FLOW with a host socket whose connect() is under way (or done). The
        engine owns the descriptor from here on (a socket object is detached)."""
        cdef int n
        if hasattr(fd, "detach"):
            fd.setblocking(False)
            n = fd.detach()
        else:
            n = int(fd)
        if fn_tcp_attach(self.t, flow, n, now) < 0:
            if not self.memory:
                close(n)
            raise ConnectionStateError("no connecting flow with that id")
        fn_tcp_flush(self.t, now)

    def refuse(self, unsigned long long flow, int how, unsigned long long now):
        if fn_tcp_refuse(self.t, flow, how, now) < 0:
            raise ConnectionStateError("no connecting flow with that id")
        fn_tcp_flush(self.t, now)

    def open(self, guest_mac, guest_ip, int guest_port, remote_ip, int remote_port, fd,
             unsigned long long now):
        """Active open towards the guest for a host socket (a published port's client).
        Returns the flow id."""
        cdef int n
        cdef bytes gm = _mac(guest_mac), gi = _ip4(guest_ip), ri = _ip4(remote_ip)
        if hasattr(fd, "detach"):
            fd.setblocking(False)
            n = fd.detach()
        else:
            n = int(fd)
        flow = fn_tcp_open(self.t, <const uint8_t *>PyBytes_AS_STRING(gm), <const uint8_t *>PyBytes_AS_STRING(gi),
                           guest_port, <const uint8_t *>PyBytes_AS_STRING(ri), remote_port, n, now)
        fn_tcp_flush(self.t, now)
        if flow == 0:
            if not self.memory:
                close(n)
            raise ConnectionStateError("the 4-tuple is in use or the flow table is full")
        return flow

    def close_flow(self, unsigned long long flow, bint abort, unsigned long long now):
        if fn_tcp_close(self.t, flow, abort, now) < 0:
            raise ConnectionStateError("no such flow")
        fn_tcp_flush(self.t, now)

    # -- flow events and inspection -----------------------------------------------------------

    def events(self):
        """Drain flow events: (TcpEvent, flow, err, (guest_ip, guest_port, remote_ip, remote_port))."""
        cdef fn_tcp_event ev
        cdef const fn_tcb *c
        out = []
        while fn_tcp_next_event(self.t, &ev):
            tup = None
            c = fn_tcp_get(self.t, ev.flow)
            if c != NULL:
                tup = _tuple(c)
            out.append((TcpEvent(ev.type), ev.flow, ev.err, tup))
        return out

    def flow(self, unsigned long long flow):
        """A dict describing one flow, or None."""
        cdef const fn_tcb *c = fn_tcp_get(self.t, flow)
        if c == NULL:
            return None
        return _info(flow, c)

    def flows(self):
        cdef uint32_t cur = 0
        cdef uint64_t fid
        out = []
        while True:
            fid = fn_tcp_iter(self.t, &cur)
            if fid == 0:
                return out
            out.append(_info(fid, fn_tcp_get(self.t, fid)))

    def stats(self):
        s = self.t.st
        return {k: v for k, v in s.items()}

    @property
    def txq_stats(self):
        return {"frames": self.txq.frames, "bytes": self.txq.bytes, "flushes": self.txq.flushes,
                "full": self.txq.full, "pending": fn_txq_pending(self.txq)}

    # -- in-memory host sockets (memory=True) --------------------------------------------------

    def socket(self, size_t tx_limit=1 << 20):
        """A new in-memory host socket; returns its fd (attach it to a flow)."""
        self._need_memory()
        return fn_memhost_socket(&self.mem, tx_limit)

    def push(self, int fd, data):
        """The host peer sends data (queued for the guest)."""
        self._need_memory()
        cdef bytes b = bytes(data)
        if fn_memhost_push(&self.mem, fd, <const uint8_t *>PyBytes_AS_STRING(b), len(b)) < 0:
            raise ValueError("no such in-memory socket")

    def take(self, int fd, size_t max=1 << 30):
        """What the engine wrote to the host peer (drained)."""
        self._need_memory()
        cdef fn_memsock *s = fn_memhost_get(&self.mem, fd)
        if s == NULL:
            raise ValueError("no such in-memory socket")
        cdef size_t n = s.tx_len if s.tx_len < max else max
        out = bytearray(n)
        cdef unsigned char[::1] o = out
        if n:
            fn_memhost_take(&self.mem, fd, &o[0], n)
        return bytes(out)

    def sock(self, int fd):
        """State of an in-memory socket as a dict."""
        self._need_memory()
        cdef fn_memsock *s = fn_memhost_get(&self.mem, fd)
        if s == NULL:
            raise ValueError("no such in-memory socket")
        return {"rx_len": s.rx_len, "tx_len": s.tx_len, "tx_limit": s.tx_limit, "flow": s.flow,
                "watched": bool(s.watched), "eof": bool(s.rx_eof), "shut_wr": bool(s.shut_wr),
                "closed": bool(s.closed), "rst": bool(s.rst), "error": s.error, "io_error": s.io_error,
                "sends": s.sends, "peeks": s.peeks, "consumes": s.consumes}

    def sock_set(self, int fd, *, tx_limit=None, eof=None, error=None, io_error=None):
        """Script an in-memory socket: its capacity, end of stream, connect result, I/O error."""
        self._need_memory()
        cdef fn_memsock *s = fn_memhost_get(&self.mem, fd)
        if s == NULL:
            raise ValueError("no such in-memory socket")
        if tx_limit is not None:
            s.tx_limit = tx_limit
        if eof is not None:
            s.rx_eof = eof
        if error is not None:
            s.error = error
        if io_error is not None:
            s.io_error = io_error

    def _need_memory(self):
        if not self.memory:
            raise ConnectionStateError("only engines created with memory=True have in-memory sockets")


cdef object _addr(const uint8_t *p):
    return ipaddress.IPv4Address(PyBytes_FromStringAndSize(<char *>p, 4))


cdef object _tuple(const fn_tcb *c):
    return (_addr(c.key.guest_ip + 12), c.key.guest_port, _addr(c.key.remote_ip + 12), c.key.remote_port)


cdef dict _info(uint64_t fid, const fn_tcb *c):
    return {
        "flow": fid, "state": TcpState(c.state), "guest": (_addr(c.key.guest_ip + 12), c.key.guest_port),
        "remote": (_addr(c.key.remote_ip + 12), c.key.remote_port), "fd": c.fd,
        "snd_una": c.snd_una, "snd_nxt": c.snd_nxt, "snd_max": c.snd_max, "snd_wnd": c.snd_wnd,
        "rcv_nxt": c.rcv_nxt, "host_seq": c.host_seq, "cwnd": c.cwnd, "ssthresh": c.ssthresh,
        "mss": c.snd_mss, "snd_wscale": c.snd_wscale, "rcv_wscale": c.rcv_wscale,
        "srtt_us": c.srtt, "rto_us": c.rto, "ring": c.ring != NULL,
        "ooo_ranges": c.oo.n if c.oo != NULL else 0, "sacked_bytes": c.txlog.sacked,
        "dupthresh": c.dupthresh,
        "bytes_g2h": c.bytes_g2h, "bytes_h2g": c.bytes_h2g, "rexmits": c.rexmits,
    }
