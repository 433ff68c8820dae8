# cython: language_level=3, freethreading_compatible=True
"""Zero-copy views over frames, the Internet checksum, header builders and batch classification.

Contract of a view (smoltcp's): the constructor validates every length it will later read
against the buffer, once; after that, properties read and write through a raw pointer with
no further checks. A view holds the buffer export for its lifetime, so a ``bytearray`` under
a view cannot be resized. Setters change bytes in place and do not touch checksums: call
``fill_checksum()`` after the last change. Views over ``bytes`` (or any read-only buffer)
raise ``TypeError`` on assignment.

Everything here is stateless, so the module is safe to share between threads.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize
from libc.stdint cimport int8_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from fastnet._csrc cimport *

import enum
import ipaddress

import numpy as np

from fastnet._fields import (
    ArpFields,
    EthernetFields,
    IcmpFields,
    Ipv4Fields,
    Ipv6Fields,
    TcpFields,
    UdpFields,
)
from fastnet.errors import ChecksumError, MalformedPacket

_IPv4Address = ipaddress.IPv4Address
_IPv6Address = ipaddress.IPv6Address


class Kind(enum.IntEnum):
    """What fn_parse_frame found (mirrors enum fn_kind)."""

    INVALID = FN_KIND_INVALID
    ETHERNET = FN_KIND_ETHERNET
    ARP = FN_KIND_ARP
    IPV4 = FN_KIND_IPV4
    IPV4_FRAG = FN_KIND_IPV4_FRAG
    TCP4 = FN_KIND_TCP4
    UDP4 = FN_KIND_UDP4
    ICMP4 = FN_KIND_ICMP4
    IPV6 = FN_KIND_IPV6
    IPV6_FRAG = FN_KIND_IPV6_FRAG
    TCP6 = FN_KIND_TCP6
    UDP6 = FN_KIND_UDP6
    ICMP6 = FN_KIND_ICMP6


_KINDS = tuple(Kind)


class TcpFlags(enum.IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


ETHERTYPE_IPV4 = FN_ETHERTYPE_IPV4
ETHERTYPE_ARP = FN_ETHERTYPE_ARP
ETHERTYPE_IPV6 = FN_ETHERTYPE_IPV6
ETHERTYPE_VLAN = FN_ETHERTYPE_VLAN
IPPROTO_ICMP = FN_IPPROTO_ICMP
IPPROTO_TCP = FN_IPPROTO_TCP
IPPROTO_UDP = FN_IPPROTO_UDP
IPPROTO_ICMPV6 = FN_IPPROTO_ICMPV6


def strerror(int code):
    """The reason string for a C error code (FN_E*)."""
    return fn_strerror(code).decode()


def kind_name(int kind):
    return fn_kind_name(kind).decode()


cpdef object raise_for(int code):
    """The one place where C error codes become exceptions."""
    if code == FN_OK:
        return None
    reason = fn_strerror(code).decode()
    if code == FN_EIPV4_CSUM or code == FN_EL4_CSUM:
        raise ChecksumError(reason, code)
    raise MalformedPacket(reason, code)


# ---------------------------------------------------------------------------------------------
# buffers

cdef class _View:
    """Common base of the views: a held buffer export, and the validated region [_p, _p + _n).

    The export is taken writable when the object allows it (bytearray, writable memoryview or
    numpy array) and read-only otherwise; it is released when the view dies."""

    cdef Py_buffer _view
    cdef bint _held
    cdef bint _writable
    cdef object _obj
    cdef uint8_t *_p      # start of this header
    cdef Py_ssize_t _n    # bytes validated from _p

    cdef int _bind(self, object obj) except -1:
        # One plain request: the export's readonly flag says whether writes are allowed
        # (asking for PyBUF_WRITABLE first would raise and catch for every read-only buffer).
        PyObject_GetBuffer(obj, &self._view, PyBUF_SIMPLE)
        self._held = True
        self._writable = not self._view.readonly
        self._obj = obj
        self._p = <uint8_t *>self._view.buf
        self._n = self._view.len
        return 0

    def __dealloc__(self):
        if self._held:
            PyBuffer_Release(&self._view)
            self._held = False

    cdef inline int _w(self) except -1:
        if not self._writable:
            raise TypeError(f"{type(self).__name__} is over a read-only buffer")
        return 0

    cdef object _slice(self, Py_ssize_t start, Py_ssize_t stop):
        """memoryview of [start, stop) of this view's region, sharing the buffer."""
        cdef Py_ssize_t base = self._p - <uint8_t *>self._view.buf
        return memoryview(self._obj).cast("B")[base + start:base + stop]

    @property
    def buffer_len(self):
        """Bytes this view covers."""
        return self._n


cdef bytes _mac_bytes(object v):
    if isinstance(v, str):
        b = bytes.fromhex(v.replace(":", "").replace("-", ""))
    else:
        b = bytes(v)
    if len(b) != 6:
        raise ValueError(f"a MAC address has 6 bytes, got {len(b)}")
    return b


cdef bytes _ip4_bytes(object v):
    if isinstance(v, _IPv4Address):
        return v.packed  # already parsed: IPv4Address(v) would go through str() again
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        if len(b) != 4:
            raise ValueError(f"an IPv4 address has 4 bytes, got {len(b)}")
        return b
    return _IPv4Address(v).packed


cdef bytes _ip6_bytes(object v):
    if isinstance(v, _IPv6Address):
        return v.packed
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        if len(b) != 16:
            raise ValueError(f"an IPv6 address has 16 bytes, got {len(b)}")
        return b
    return _IPv6Address(v).packed


cdef bytes _ip_bytes(object v):
    """4 or 16 bytes from any address form (for pseudo-headers)."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        if len(b) != 4 and len(b) != 16:
            raise ValueError("an IP address has 4 or 16 bytes")
        return b
    if isinstance(v, (_IPv4Address, _IPv6Address)):
        return v.packed
    return ipaddress.ip_address(v).packed


def mac_to_bytes(v):
    """``'f6:16:36:bc:f9:c6'`` (or bytes) → 6 bytes."""
    return _mac_bytes(v)


def format_mac(b):
    return ":".join(f"{x:02x}" for x in bytes(b))


# ---------------------------------------------------------------------------------------------
# checksum

def checksum(buffer, uint32_t initial=0):
    """RFC 1071 checksum of ``buffer`` as the 16-bit value written into a header (complemented).

    ``initial`` is a folded partial sum to start from (a pseudo-header sum, say). Verifying a
    buffer that contains a correct checksum field gives 0.
    """
    cdef Py_buffer v
    PyObject_GetBuffer(buffer, &v, PyBUF_SIMPLE)
    try:
        return fn_checksum(<const uint8_t *>v.buf, <size_t>v.len, initial)
    finally:
        PyBuffer_Release(&v)


def checksum_partial(buffer, uint32_t initial=0):
    """Folded, uncomplemented ones'-complement sum (in [0, 0xffff]), for combining pieces."""
    cdef Py_buffer v
    PyObject_GetBuffer(buffer, &v, PyBUF_SIMPLE)
    try:
        return fn_csum_partial(<const uint8_t *>v.buf, <size_t>v.len, initial)
    finally:
        PyBuffer_Release(&v)


def checksum_combine(uint32_t a, uint32_t b, size_t len_a):
    """Sum of piece A (``len_a`` bytes) followed by piece B, from their partial sums."""
    return fn_csum_combine(a, b, len_a)


def checksum_finish(uint32_t s):
    return fn_csum_finish(s)


def pseudo_header_sum(src, dst, int protocol, uint32_t length):
    """Partial sum of the IPv4 or IPv6 pseudo-header (by address size)."""
    cdef bytes s = _ip_bytes(src), d = _ip_bytes(dst)
    if len(s) != len(d):
        raise ValueError("src and dst must be the same IP version")
    if len(s) == 4:
        return fn_csum_pseudo4(<const uint8_t *>PyBytes_AS_STRING(s), <const uint8_t *>PyBytes_AS_STRING(d),
                               <uint8_t>protocol, length)
    return fn_csum_pseudo6(<const uint8_t *>PyBytes_AS_STRING(s), <const uint8_t *>PyBytes_AS_STRING(d),
                           <uint8_t>protocol, length)


def checksum_update16(uint16_t check, uint16_t old, uint16_t new):
    """RFC 1624 incremental update of a checksum field for one rewritten 16-bit word."""
    return fn_csum_update16(check, old, new)


def checksum_update32(uint16_t check, uint32_t old, uint32_t new):
    """RFC 1624 incremental update for a rewritten 32-bit word (an IPv4 address)."""
    return fn_csum_update32(check, old, new)


def checksum_update(uint16_t check, old, new):
    """RFC 1624 incremental update for rewritten bytes (even length, same length)."""
    cdef bytes o = bytes(old), n = bytes(new)
    if len(o) != len(n) or len(o) % 2:
        raise ValueError("old and new must have the same even length")
    return fn_csum_update_bytes(check, <const uint8_t *>PyBytes_AS_STRING(o),
                                <const uint8_t *>PyBytes_AS_STRING(n), len(o))


# ---------------------------------------------------------------------------------------------
# Ethernet

cdef class EthernetFrame(_View):
    """Ethernet II header (RFC 894) with an optional 802.1Q tag; payload is the rest."""

    cdef Py_ssize_t _hl

    def __cinit__(self, buffer):
        self._bind(buffer)
        if self._n < FN_ETH_HLEN:
            raise_for(FN_ETRUNC_ETH)
        self._hl = FN_ETH_HLEN
        if fn_ld_be16(self._p + 12) == FN_ETHERTYPE_VLAN:
            if self._n < FN_ETH_HLEN + FN_VLAN_HLEN:
                raise_for(FN_ETRUNC_VLAN)
            self._hl = FN_ETH_HLEN + FN_VLAN_HLEN

    @property
    def dst(self):
        return PyBytes_FromStringAndSize(<char *>self._p, 6)

    @dst.setter
    def dst(self, v):
        self._w()
        memcpy(self._p, PyBytes_AS_STRING(_mac_bytes(v)), 6)

    @property
    def src(self):
        return PyBytes_FromStringAndSize(<char *>self._p + 6, 6)

    @src.setter
    def src(self, v):
        self._w()
        memcpy(self._p + 6, PyBytes_AS_STRING(_mac_bytes(v)), 6)

    @property
    def ethertype(self):
        """The EtherType of the payload (after the VLAN tag, if any)."""
        return fn_ld_be16(self._p + self._hl - 2)

    @ethertype.setter
    def ethertype(self, uint16_t v):
        self._w()
        fn_st_be16(self._p + self._hl - 2, v)

    @property
    def vlan_tci(self):
        """802.1Q tag control information, or None when untagged."""
        if self._hl == FN_ETH_HLEN:
            return None
        return fn_ld_be16(self._p + FN_ETH_HLEN)

    @property
    def header_len(self):
        return self._hl

    @property
    def payload(self):
        return self._slice(self._hl, self._n)

    def fields(self):
        return EthernetFields(self.dst, self.src, self.ethertype, self.vlan_tci)

    def __repr__(self):
        return f"EthernetFrame(dst={format_mac(self.dst)}, src={format_mac(self.src)}, type=0x{self.ethertype:04x})"


# ---------------------------------------------------------------------------------------------
# ARP

cdef class ArpPacket(_View):
    """ARP for Ethernet/IPv4 (RFC 826): 28 bytes."""

    def __cinit__(self, buffer):
        self._bind(buffer)
        if self._n < FN_ARP_LEN:
            raise_for(FN_ETRUNC_ARP)
        if (fn_ld_be16(self._p) != 1 or fn_ld_be16(self._p + 2) != FN_ETHERTYPE_IPV4
                or self._p[4] != 6 or self._p[5] != 4):
            raise_for(FN_EARP_FORMAT)

    @property
    def oper(self):
        return fn_ld_be16(self._p + FN_ARP_OFF_OPER)

    @oper.setter
    def oper(self, uint16_t v):
        self._w()
        fn_st_be16(self._p + FN_ARP_OFF_OPER, v)

    @property
    def sha(self):
        return PyBytes_FromStringAndSize(<char *>self._p + FN_ARP_OFF_SHA, 6)

    @property
    def spa(self):
        return _IPv4Address(PyBytes_FromStringAndSize(<char *>self._p + FN_ARP_OFF_SPA, 4))

    @property
    def tha(self):
        return PyBytes_FromStringAndSize(<char *>self._p + FN_ARP_OFF_THA, 6)

    @property
    def tpa(self):
        return _IPv4Address(PyBytes_FromStringAndSize(<char *>self._p + FN_ARP_OFF_TPA, 4))

    def fields(self):
        return ArpFields(self.oper, self.sha, self.spa, self.tha, self.tpa)


# ---------------------------------------------------------------------------------------------
# IPv4

cdef class Ipv4Packet(_View):
    """IPv4 header (RFC 791) and payload. Validates version, IHL and total length; the view
    covers exactly ``total_len`` bytes (trailing padding is excluded)."""

    # The header length validated at construction: the IHL byte is not read again, because
    # the buffer's owner can rewrite it under the view (a longer IHL would read past the end).
    cdef Py_ssize_t _hl

    def __cinit__(self, buffer):
        self._bind(buffer)
        if self._n < FN_IPV4_HLEN:
            raise_for(FN_ETRUNC_IPV4)
        if (self._p[0] >> 4) != 4:
            raise_for(FN_EIP_VERSION)
        cdef Py_ssize_t hl = (self._p[0] & 0x0f) * 4
        if hl < FN_IPV4_HLEN or hl > self._n:
            raise_for(FN_EIPV4_IHL)
        cdef Py_ssize_t tot = fn_ld_be16(self._p + FN_IPV4_OFF_LEN)
        if tot < hl or tot > self._n:
            raise_for(FN_EIPV4_TOTLEN)
        self._hl = hl
        self._n = tot

    @property
    def version(self):
        return self._p[0] >> 4

    @property
    def header_len(self):
        return self._hl

    @property
    def tos(self):
        return self._p[FN_IPV4_OFF_TOS]

    @tos.setter
    def tos(self, uint8_t v):
        self._w()
        self._p[FN_IPV4_OFF_TOS] = v

    @property
    def total_len(self):
        return fn_ld_be16(self._p + FN_IPV4_OFF_LEN)

    @property
    def ident(self):
        return fn_ld_be16(self._p + FN_IPV4_OFF_ID)

    @ident.setter
    def ident(self, uint16_t v):
        self._w()
        fn_st_be16(self._p + FN_IPV4_OFF_ID, v)

    @property
    def dont_fragment(self):
        return bool(fn_ld_be16(self._p + FN_IPV4_OFF_FRAG) & FN_IPV4_FLAG_DF)

    @dont_fragment.setter
    def dont_fragment(self, bint v):
        self._w()
        cdef uint16_t fr = fn_ld_be16(self._p + FN_IPV4_OFF_FRAG)
        fn_st_be16(self._p + FN_IPV4_OFF_FRAG, (fr | FN_IPV4_FLAG_DF) if v else (fr & ~FN_IPV4_FLAG_DF))

    @property
    def more_fragments(self):
        return bool(fn_ld_be16(self._p + FN_IPV4_OFF_FRAG) & FN_IPV4_FLAG_MF)

    @more_fragments.setter
    def more_fragments(self, bint v):
        self._w()
        cdef uint16_t fr = fn_ld_be16(self._p + FN_IPV4_OFF_FRAG)
        fn_st_be16(self._p + FN_IPV4_OFF_FRAG, (fr | FN_IPV4_FLAG_MF) if v else (fr & ~FN_IPV4_FLAG_MF))

    @property
    def frag_offset(self):
        """Fragment offset in 8-byte units."""
        return fn_ld_be16(self._p + FN_IPV4_OFF_FRAG) & FN_IPV4_FRAG_MASK

    @frag_offset.setter
    def frag_offset(self, uint16_t v):
        self._w()
        if v > FN_IPV4_FRAG_MASK:
            raise ValueError("fragment offset is 13 bits")
        cdef uint16_t fr = fn_ld_be16(self._p + FN_IPV4_OFF_FRAG)
        fn_st_be16(self._p + FN_IPV4_OFF_FRAG, (fr & ~FN_IPV4_FRAG_MASK) | v)

    @property
    def ttl(self):
        return self._p[FN_IPV4_OFF_TTL]

    @ttl.setter
    def ttl(self, uint8_t v):
        self._w()
        self._p[FN_IPV4_OFF_TTL] = v

    @property
    def protocol(self):
        return self._p[FN_IPV4_OFF_PROTO]

    @protocol.setter
    def protocol(self, uint8_t v):
        self._w()
        self._p[FN_IPV4_OFF_PROTO] = v

    @property
    def checksum(self):
        return fn_ld_be16(self._p + FN_IPV4_OFF_CSUM)

    @checksum.setter
    def checksum(self, uint16_t v):
        self._w()
        fn_st_be16(self._p + FN_IPV4_OFF_CSUM, v)

    @property
    def src(self):
        return _IPv4Address(PyBytes_FromStringAndSize(<char *>self._p + FN_IPV4_OFF_SRC, 4))

    @src.setter
    def src(self, v):
        self._w()
        memcpy(self._p + FN_IPV4_OFF_SRC, PyBytes_AS_STRING(_ip4_bytes(v)), 4)

    @property
    def dst(self):
        return _IPv4Address(PyBytes_FromStringAndSize(<char *>self._p + FN_IPV4_OFF_DST, 4))

    @dst.setter
    def dst(self, v):
        self._w()
        memcpy(self._p + FN_IPV4_OFF_DST, PyBytes_AS_STRING(_ip4_bytes(v)), 4)

    @property
    def options(self):
        return PyBytes_FromStringAndSize(<char *>self._p + FN_IPV4_HLEN, self._hl - FN_IPV4_HLEN)

    @property
    def payload(self):
        return self._slice(self._hl, self._n)

    def verify_checksum(self):
        """True when the header checksum is right."""
        return fn_csum_partial(self._p, self._hl, 0) == 0xffff

    def fill_checksum(self):
        self._w()
        fn_st_be16(self._p + FN_IPV4_OFF_CSUM, 0)
        fn_st_be16(self._p + FN_IPV4_OFF_CSUM, fn_checksum(self._p, self._hl, 0))

    def fields(self):
        return Ipv4Fields(self.src, self.dst, self.protocol, self.ttl, self.ident, self.tos,
                          self.dont_fragment, self.more_fragments, self.frag_offset, self.options)

    def __repr__(self):
        return f"Ipv4Packet({self.src} > {self.dst}, proto={self.protocol}, len={self.total_len})"


# ---------------------------------------------------------------------------------------------
# IPv6

cdef class Ipv6Packet(_View):
    """IPv6 fixed header (RFC 8200) and payload; extension headers are walked to find the
    upper-layer protocol (``protocol``) and where its header starts (``header_len``)."""

    cdef fn_frame _f

    def __cinit__(self, buffer):
        self._bind(buffer)
        if self._n < FN_IPV6_HLEN:
            raise_for(FN_ETRUNC_IPV6)
        if (self._p[0] >> 4) != 6:
            raise_for(FN_EIP_VERSION)
        cdef int rc = fn_parse_ip(self._p, self._n, &self._f)
        if rc == FN_EIPV6_PLEN or rc == FN_EIPV6_EXT:
            raise_for(rc)
        if rc != FN_OK:
            # A malformed upper layer belongs to the L4 view; the IPv6 part (l3_hlen and
            # l4_proto, set before the L4 parse) is valid.
            self._f.kind = FN_KIND_IPV6
        self._n = FN_IPV6_HLEN + fn_ld_be16(self._p + FN_IPV6_OFF_PLEN)

    @property
    def version(self):
        return 6

    @property
    def traffic_class(self):
        return (fn_ld_be32(self._p) >> 20) & 0xff

    @property
    def flow_label(self):
        return fn_ld_be32(self._p) & 0xfffff

    @property
    def payload_len(self):
        return fn_ld_be16(self._p + FN_IPV6_OFF_PLEN)

    @property
    def next_header(self):
        return self._p[FN_IPV6_OFF_NXT]

    @property
    def hop_limit(self):
        return self._p[FN_IPV6_OFF_HLIM]

    @hop_limit.setter
    def hop_limit(self, uint8_t v):
        self._w()
        self._p[FN_IPV6_OFF_HLIM] = v

    @property
    def src(self):
        return _IPv6Address(PyBytes_FromStringAndSize(<char *>self._p + FN_IPV6_OFF_SRC, 16))

    @src.setter
    def src(self, v):
        self._w()
        memcpy(self._p + FN_IPV6_OFF_SRC, PyBytes_AS_STRING(_ip6_bytes(v)), 16)

    @property
    def dst(self):
        return _IPv6Address(PyBytes_FromStringAndSize(<char *>self._p + FN_IPV6_OFF_DST, 16))

    @dst.setter
    def dst(self, v):
        self._w()
        memcpy(self._p + FN_IPV6_OFF_DST, PyBytes_AS_STRING(_ip6_bytes(v)), 16)

    @property
    def protocol(self):
        """Upper-layer protocol after the extension headers."""
        return self._f.l4_proto

    @property
    def header_len(self):
        """40 plus the extension headers."""
        return self._f.l3_hlen

    @property
    def is_fragment(self):
        return self._f.kind == FN_KIND_IPV6_FRAG

    @property
    def payload(self):
        """The upper-layer part (after every extension header)."""
        return self._slice(self._f.l3_hlen, self._n)

    def fields(self):
        return Ipv6Fields(self.src, self.dst, self.next_header, self.hop_limit,
                          self.traffic_class, self.flow_label)

    def __repr__(self):
        return f"Ipv6Packet({self.src} > {self.dst}, proto={self.protocol}, plen={self.payload_len})"


# ---------------------------------------------------------------------------------------------
# L4 helpers

cdef uint32_t _pseudo(object src, object dst, uint8_t proto, uint32_t length) except? 0xffffffff:
    cdef bytes s = _ip_bytes(src), d = _ip_bytes(dst)
    if len(s) != len(d):
        raise ValueError("src and dst must be the same IP version")
    if len(s) == 4:
        return fn_csum_pseudo4(<const uint8_t *>PyBytes_AS_STRING(s), <const uint8_t *>PyBytes_AS_STRING(d),
                               proto, length)
    return fn_csum_pseudo6(<const uint8_t *>PyBytes_AS_STRING(s), <const uint8_t *>PyBytes_AS_STRING(d),
                           proto, length)


# ---------------------------------------------------------------------------------------------
# TCP

cdef class TcpPacket(_View):
    """TCP header (RFC 9293 §3.1) with options, and payload. Validates the data offset and every
    option's length; the parsed options are kept, so reading them costs nothing."""

    cdef fn_tcp_opts _o
    cdef uint16_t _oflags
    cdef Py_ssize_t _hl

    def __cinit__(self, buffer):
        self._bind(buffer)
        if self._n < FN_TCP_HLEN:
            raise_for(FN_ETRUNC_TCP)
        self._hl = (self._p[FN_TCP_OFF_DOFF] >> 4) * 4
        if self._hl < FN_TCP_HLEN or self._hl > self._n:
            raise_for(FN_ETCP_DOFF)
        memset(&self._o, 0, sizeof(self._o))
        self._oflags = 0
        if self._hl > FN_TCP_HLEN:
            raise_for(fn_parse_tcp_options(self._p + FN_TCP_HLEN, self._hl - FN_TCP_HLEN, &self._o, &self._oflags))

    @property
    def src_port(self):
        return fn_ld_be16(self._p + FN_TCP_OFF_SPORT)

    @src_port.setter
    def src_port(self, uint16_t v):
        self._w()
        fn_st_be16(self._p + FN_TCP_OFF_SPORT, v)

    @property
    def dst_port(self):
        return fn_ld_be16(self._p + FN_TCP_OFF_DPORT)

    @dst_port.setter
    def dst_port(self, uint16_t v):
        self._w()
        fn_st_be16(self._p + FN_TCP_OFF_DPORT, v)

    @property
    def seq(self):
        return fn_ld_be32(self._p + FN_TCP_OFF_SEQ)

    @seq.setter
    def seq(self, uint32_t v):
        self._w()
        fn_st_be32(self._p + FN_TCP_OFF_SEQ, v)

    @property
    def ack(self):
        return fn_ld_be32(self._p + FN_TCP_OFF_ACK)

    @ack.setter
    def ack(self, uint32_t v):
        self._w()
        fn_st_be32(self._p + FN_TCP_OFF_ACK, v)

    @property
    def data_offset(self):
        """Header length in 32-bit words."""
        return self._p[FN_TCP_OFF_DOFF] >> 4

    @property
    def header_len(self):
        return self._hl

    @property
    def flags(self):
        return TcpFlags(self._p[FN_TCP_OFF_FLAGS])

    @flags.setter
    def flags(self, uint8_t v):
        self._w()
        self._p[FN_TCP_OFF_FLAGS] = v

    @property
    def window(self):
        """The raw 16-bit window field (unscaled)."""
        return fn_ld_be16(self._p + FN_TCP_OFF_WIN)

    @window.setter
    def window(self, uint16_t v):
        self._w()
        fn_st_be16(self._p + FN_TCP_OFF_WIN, v)

    @property
    def checksum(self):
        return fn_ld_be16(self._p + FN_TCP_OFF_CSUM)

    @checksum.setter
    def checksum(self, uint16_t v):
        self._w()
        fn_st_be16(self._p + FN_TCP_OFF_CSUM, v)

    @property
    def urgent(self):
        return fn_ld_be16(self._p + FN_TCP_OFF_URG)

    @property
    def options(self):
        """The raw option bytes."""
        return PyBytes_FromStringAndSize(<char *>self._p + FN_TCP_HLEN, self._hl - FN_TCP_HLEN)

    @property
    def mss(self):
        return self._o.mss if self._oflags & FN_FRAME_TCP_MSS else None

    @property
    def window_scale(self):
        return self._o.wscale if self._oflags & FN_FRAME_TCP_WSCALE else None

    @property
    def sack_permitted(self):
        return bool(self._oflags & FN_FRAME_TCP_SACK_PERM)

    @property
    def timestamps(self):
        """(TSval, TSecr) or None."""
        if self._oflags & FN_FRAME_TCP_TS:
            return (self._o.ts_val, self._o.ts_ecr)
        return None

    @property
    def sack_blocks(self):
        """Tuple of (left, right) sequence edges."""
        if not self._oflags & FN_FRAME_TCP_SACK:
            return ()
        return tuple((self._o.sack[i][0], self._o.sack[i][1]) for i in range(self._o.nsack))

    @property
    def payload(self):
        return self._slice(self._hl, self._n)

    def verify_checksum(self, src, dst):
        """Checksum over pseudo-header (from the IP addresses) and the whole segment."""
        cdef uint32_t s = _pseudo(src, dst, FN_IPPROTO_TCP, <uint32_t>self._n)
        return fn_csum_partial(self._p, self._n, s) == 0xffff

    def fill_checksum(self, src, dst):
        self._w()
        cdef uint32_t s = _pseudo(src, dst, FN_IPPROTO_TCP, <uint32_t>self._n)
        fn_st_be16(self._p + FN_TCP_OFF_CSUM, 0)
        fn_st_be16(self._p + FN_TCP_OFF_CSUM, fn_checksum(self._p, self._n, s))

    def fields(self):
        return TcpFields(self.src_port, self.dst_port, self.seq, self.ack, int(self.flags),
                         self.window, self.urgent, self.mss, self.window_scale,
                         self.sack_permitted, self.timestamps, self.sack_blocks)

    def __repr__(self):
        return (f"TcpPacket({self.src_port} > {self.dst_port}, {self.flags!r}, seq={self.seq}, "
                f"ack={self.ack}, win={self.window}, len={self._n - self._hl})")


# ---------------------------------------------------------------------------------------------
# UDP

cdef class UdpPacket(_View):
    """UDP header (RFC 768) and payload. Validates the length field against the buffer; the
    view covers exactly ``length`` bytes."""

    def __cinit__(self, buffer):
        self._bind(buffer)
        if self._n < FN_UDP_HLEN:
            raise_for(FN_ETRUNC_UDP)
        cdef Py_ssize_t ulen = fn_ld_be16(self._p + FN_UDP_OFF_LEN)
        if ulen < FN_UDP_HLEN or ulen > self._n:
            raise_for(FN_EUDP_LEN)
        self._n = ulen

    @property
    def src_port(self):
        return fn_ld_be16(self._p)

    @src_port.setter
    def src_port(self, uint16_t v):
        self._w()
        fn_st_be16(self._p, v)

    @property
    def dst_port(self):
        return fn_ld_be16(self._p + 2)

    @dst_port.setter
    def dst_port(self, uint16_t v):
        self._w()
        fn_st_be16(self._p + 2, v)

    @property
    def length(self):
        return fn_ld_be16(self._p + FN_UDP_OFF_LEN)

    @property
    def checksum(self):
        return fn_ld_be16(self._p + FN_UDP_OFF_CSUM)

    @checksum.setter
    def checksum(self, uint16_t v):
        self._w()
        fn_st_be16(self._p + FN_UDP_OFF_CSUM, v)

    @property
    def payload(self):
        return self._slice(FN_UDP_HLEN, self._n)

    def verify_checksum(self, src, dst):
        """True when the checksum verifies, or is 0 over IPv4 (RFC 768: none computed)."""
        cdef bytes s = _ip_bytes(src)
        if len(s) == 4 and fn_ld_be16(self._p + FN_UDP_OFF_CSUM) == 0:
            return True
        cdef uint32_t ps = _pseudo(s, dst, FN_IPPROTO_UDP, <uint32_t>self._n)
        return fn_csum_partial(self._p, self._n, ps) == 0xffff

    def fill_checksum(self, src, dst):
        self._w()
        cdef uint32_t ps = _pseudo(src, dst, FN_IPPROTO_UDP, <uint32_t>self._n)
        fn_st_be16(self._p + FN_UDP_OFF_CSUM, 0)
        cdef uint16_t v = fn_checksum(self._p, self._n, ps)
        fn_st_be16(self._p + FN_UDP_OFF_CSUM, v if v else 0xffff)

    def fields(self):
        return UdpFields(self.src_port, self.dst_port)


# ---------------------------------------------------------------------------------------------
# ICMP

cdef class Icmpv4Packet(_View):
    """ICMPv4 (RFC 792): type, code, checksum, 4 bytes of "rest of header", data."""

    def __cinit__(self, buffer):
        self._bind(buffer)
        if self._n < FN_ICMP_HLEN:
            raise_for(FN_ETRUNC_ICMP)

    @property
    def type(self):
        return self._p[0]

    @type.setter
    def type(self, uint8_t v):
        self._w()
        self._p[0] = v

    @property
    def code(self):
        return self._p[1]

    @code.setter
    def code(self, uint8_t v):
        self._w()
        self._p[1] = v

    @property
    def checksum(self):
        return fn_ld_be16(self._p + FN_ICMP_OFF_CSUM)

    @property
    def rest(self):
        return fn_ld_be32(self._p + 4)

    @property
    def ident(self):
        """Echo identifier (the first half of the rest of header)."""
        return fn_ld_be16(self._p + 4)

    @ident.setter
    def ident(self, uint16_t v):
        self._w()
        fn_st_be16(self._p + 4, v)

    @property
    def seq(self):
        return fn_ld_be16(self._p + 6)

    @seq.setter
    def seq(self, uint16_t v):
        self._w()
        fn_st_be16(self._p + 6, v)

    @property
    def payload(self):
        return self._slice(FN_ICMP_HLEN, self._n)

    def verify_checksum(self):
        return fn_csum_partial(self._p, self._n, 0) == 0xffff

    def fill_checksum(self):
        self._w()
        fn_st_be16(self._p + FN_ICMP_OFF_CSUM, 0)
        fn_st_be16(self._p + FN_ICMP_OFF_CSUM, fn_checksum(self._p, self._n, 0))

    def fields(self):
        return IcmpFields(self.type, self.code, self.rest)


cdef class Icmpv6Packet(_View):
    """ICMPv6 (RFC 4443): type, code, checksum (with the IPv6 pseudo-header), message body."""

    def __cinit__(self, buffer):
        self._bind(buffer)
        if self._n < FN_ICMPV6_MIN_LEN:
            raise_for(FN_ETRUNC_ICMP)

    @property
    def type(self):
        return self._p[0]

    @property
    def code(self):
        return self._p[1]

    @property
    def checksum(self):
        return fn_ld_be16(self._p + FN_ICMP_OFF_CSUM)

    @property
    def rest(self):
        return fn_ld_be32(self._p + 4) if self._n >= FN_ICMP_HLEN else 0

    @property
    def payload(self):
        return self._slice(FN_ICMP_HLEN if self._n >= FN_ICMP_HLEN else FN_ICMPV6_MIN_LEN, self._n)

    def verify_checksum(self, src, dst):
        cdef uint32_t s = _pseudo(src, dst, FN_IPPROTO_ICMPV6, <uint32_t>self._n)
        return fn_csum_partial(self._p, self._n, s) == 0xffff

    def fill_checksum(self, src, dst):
        self._w()
        cdef uint32_t s = _pseudo(src, dst, FN_IPPROTO_ICMPV6, <uint32_t>self._n)
        fn_st_be16(self._p + FN_ICMP_OFF_CSUM, 0)
        fn_st_be16(self._p + FN_ICMP_OFF_CSUM, fn_checksum(self._p, self._n, s))

    def fields(self):
        return IcmpFields(self.type, self.code, self.rest)


# ---------------------------------------------------------------------------------------------
# whole-frame parse

@cython.freelist(64)
cdef class Frame:
    """The one-pass classification of a whole Ethernet frame (fn_parse_frame): kind, offsets,
    flags, TCP options, and views of each layer on demand. Construction raises
    MalformedPacket with the reason when any layer is malformed."""

    cdef fn_frame f
    cdef object _buf

    def __cinit__(self, buffer):
        cdef Py_buffer v
        PyObject_GetBuffer(buffer, &v, PyBUF_SIMPLE)
        cdef int rc
        try:
            rc = fn_parse_frame(<const uint8_t *>v.buf, <size_t>v.len, &self.f)
        finally:
            PyBuffer_Release(&v)
        raise_for(rc)
        self._buf = buffer

    @property
    def kind(self):
        return _KINDS[self.f.kind]  # Kind(n) costs ~5 parses; the values are 0..12

    @property
    def len(self):
        return self.f.len

    @property
    def flags(self):
        return self.f.flags

    @property
    def ethertype(self):
        return self.f.ethertype

    @property
    def vlan_tci(self):
        return self.f.vlan_tci if self.f.flags & FN_FRAME_VLAN else None

    @property
    def l4_proto(self):
        return self.f.l4_proto

    @property
    def l3_off(self):
        return self.f.l3_off

    @property
    def l3_len(self):
        return self.f.l3_len

    @property
    def l4_off(self):
        return self.f.l4_off

    @property
    def l4_len(self):
        return self.f.l4_len

    @property
    def payload_off(self):
        return self.f.payload_off

    @property
    def payload_len(self):
        return self.f.payload_len

    @property
    def frag_offset(self):
        return self.f.frag_off

    @property
    def more_fragments(self):
        return bool(self.f.flags & FN_FRAME_MF)

    @property
    def is_fragment(self):
        return self.f.kind == FN_KIND_IPV4_FRAG or self.f.kind == FN_KIND_IPV6_FRAG

    cdef object _mv(self, uint32_t off, uint32_t n):
        return memoryview(self._buf).cast("B")[off:off + n]

    @property
    def eth(self):
        return EthernetFrame(self._mv(0, self.f.len))

    @property
    def arp(self):
        return ArpPacket(self._mv(self.f.l3_off, self.f.l3_len)) if self.f.kind == FN_KIND_ARP else None

    @property
    def ip(self):
        """Ipv4Packet or Ipv6Packet, or None for ARP and other EtherTypes."""
        if self.f.ethertype == FN_ETHERTYPE_IPV4 and self.f.kind != FN_KIND_ARP and self.f.kind != FN_KIND_ETHERNET:
            return Ipv4Packet(self._mv(self.f.l3_off, self.f.l3_len))
        if self.f.ethertype == FN_ETHERTYPE_IPV6 and self.f.kind != FN_KIND_ETHERNET:
            return Ipv6Packet(self._mv(self.f.l3_off, self.f.l3_len))
        return None

    @property
    def l4(self):
        """TcpPacket, UdpPacket, Icmpv4Packet or Icmpv6Packet, or None."""
        k = self.f.kind
        mv = self._mv(self.f.l4_off, self.f.l4_len)
        if k == FN_KIND_TCP4 or k == FN_KIND_TCP6:
            return TcpPacket(mv)
        if k == FN_KIND_UDP4 or k == FN_KIND_UDP6:
            return UdpPacket(mv)
        if k == FN_KIND_ICMP4:
            return Icmpv4Packet(mv)
        if k == FN_KIND_ICMP6:
            return Icmpv6Packet(mv)
        return None

    @property
    def payload(self):
        return self._mv(self.f.payload_off, self.f.payload_len)

    def verify_checksums(self):
        """True when the IPv4 header checksum (if any) and the L4 checksum (if any) verify."""
        cdef Py_buffer v
        PyObject_GetBuffer(self._buf, &v, PyBUF_SIMPLE)
        cdef const uint8_t *p = <const uint8_t *>v.buf
        try:
            # A Frame does not hold its buffer: a bytearray may have shrunk since the parse.
            if <size_t>v.len < self.f.len:
                raise BufferError("the buffer is shorter than when it was parsed")
            if self.f.ethertype == FN_ETHERTYPE_IPV4 and self.f.kind != FN_KIND_ARP and self.f.kind != FN_KIND_ETHERNET:
                # The parsed header length, not the IHL byte, which may have been rewritten.
                if fn_csum_partial(p + self.f.l3_off, self.f.l3_hlen, 0) != 0xffff:
                    return False
            return fn_l4_verify(p, &self.f) == FN_OK
        finally:
            PyBuffer_Release(&v)

    def fill_checksums(self):
        """Fill the IPv4 header checksum and the L4 checksum in place."""
        cdef Py_buffer v
        PyObject_GetBuffer(self._buf, &v, PyBUF_WRITABLE)
        cdef uint8_t *p = <uint8_t *>v.buf
        cdef uint8_t *ip
        cdef int hl
        try:
            if <size_t>v.len < self.f.len:
                raise BufferError("the buffer is shorter than when it was parsed")
            if self.f.ethertype == FN_ETHERTYPE_IPV4 and self.f.kind != FN_KIND_ARP and self.f.kind != FN_KIND_ETHERNET:
                ip = p + self.f.l3_off
                hl = self.f.l3_hlen
                fn_st_be16(ip + FN_IPV4_OFF_CSUM, 0)
                fn_st_be16(ip + FN_IPV4_OFF_CSUM, fn_checksum(ip, hl, 0))
            fn_l4_fill(p, &self.f)
        finally:
            PyBuffer_Release(&v)

    def __repr__(self):
        return f"Frame({kind_name(self.f.kind)}, len={self.f.len})"


def parse_frame(buffer):
    """Classify one Ethernet frame; raises MalformedPacket naming what is wrong."""
    return Frame(buffer)


def parse_status(buffer):
    """(code, kind) of fn_parse_frame without raising: code 0 or a negative FN_E* code."""
    cdef Py_buffer v
    cdef fn_frame f
    cdef int rc
    PyObject_GetBuffer(buffer, &v, PyBUF_SIMPLE)
    try:
        rc = fn_parse_frame(<const uint8_t *>v.buf, <size_t>v.len, &f)
    finally:
        PyBuffer_Release(&v)
    return rc, f.kind


# ---------------------------------------------------------------------------------------------
# building

cdef size_t _tcp_spec(object t, fn_tcp_spec *s) except 0:
    memset(s, 0, sizeof(fn_tcp_spec))
    s.sport = t.src_port
    s.dport = t.dst_port
    s.seq = t.seq
    s.ack = t.ack
    s.flags = t.flags
    s.window = t.window
    s.urgent = t.urgent
    if t.mss is not None:
        s.opts |= FN_TCPB_MSS
        s.o.mss = t.mss
    if t.window_scale is not None:
        s.opts |= FN_TCPB_WSCALE
        s.o.wscale = t.window_scale
    if t.sack_permitted:
        s.opts |= FN_TCPB_SACK_PERM
    if t.timestamps is not None:
        s.opts |= FN_TCPB_TS
        s.o.ts_val = t.timestamps[0]
        s.o.ts_ecr = t.timestamps[1]
    if t.sack_blocks:
        if len(t.sack_blocks) > FN_TCP_MAX_SACK:
            raise ValueError("at most 4 SACK blocks")
        s.opts |= FN_TCPB_SACK
        s.o.nsack = len(t.sack_blocks)
        for i, (l, r) in enumerate(t.sack_blocks):
            s.o.sack[i][0] = l
            s.o.sack[i][1] = r
    # Option bytes before the SACK option, laid out as fn_build_tcp does.
    cdef int used = (4 if s.opts & FN_TCPB_MSS else 0) + (4 if s.opts & FN_TCPB_WSCALE else 0)
    if s.opts & FN_TCPB_TS:
        used += 12
    elif s.opts & FN_TCPB_SACK_PERM:
        used += 4
    if s.o.nsack and s.o.nsack > (FN_TCP_MAX_HLEN - FN_TCP_HLEN - used - 4) // 8:
        raise ValueError("SACK blocks do not fit in the 40 option bytes")
    return fn_tcp_hlen(s)


def build_frame(eth, ip=None, l4=None, payload=b"", arp=None):
    """Build a whole frame from field values (the inverse of ``Frame.*.fields()``).

    ``eth``: EthernetFields (its ethertype is used as given); ``arp``: ArpFields; ``ip``:
    Ipv4Fields or Ipv6Fields; ``l4``: TcpFields, UdpFields or IcmpFields (its protocol must
    match the IP protocol). Checksums are filled. Returns a bytearray.
    """
    cdef Py_buffer pv
    cdef bytes pl = bytes(payload)
    cdef Py_ssize_t plen = len(pl)
    cdef fn_tcp_spec ts
    cdef fn_ipv4_spec v4
    cdef size_t eth_len = FN_ETH_HLEN + (FN_VLAN_HLEN if eth.vlan_tci is not None else 0)
    cdef size_t l4_hl = 0
    cdef size_t l3_hl = 0
    cdef bytes opts = b""
    if arp is not None:
        out = bytearray(eth_len + FN_ARP_LEN)
    else:
        if l4 is not None:
            if isinstance(l4, TcpFields):
                l4_hl = _tcp_spec(l4, &ts)
            elif isinstance(l4, UdpFields):
                l4_hl = FN_UDP_HLEN
            elif isinstance(l4, IcmpFields):
                l4_hl = FN_ICMP_HLEN
            else:
                raise TypeError("l4 must be TcpFields, UdpFields or IcmpFields")
        if isinstance(ip, Ipv4Fields):
            opts = bytes(ip.options)
            if len(opts) % 4 or len(opts) > 40:
                raise ValueError("IPv4 options must be a multiple of 4 bytes, at most 40")
            l3_hl = FN_IPV4_HLEN + len(opts)
        elif isinstance(ip, Ipv6Fields):
            l3_hl = FN_IPV6_HLEN
        elif ip is not None:
            raise TypeError("ip must be Ipv4Fields or Ipv6Fields")
        if ip is not None and l4 is not None:
            # fn_ipv4_fill_l4 / fn_ipv6_fill_l4 find the checksum field from the IP protocol:
            # a TCP protocol over an 8-byte UDP/ICMP header would write past the buffer.
            proto = ip.next_header if isinstance(ip, Ipv6Fields) else ip.protocol
            if isinstance(l4, TcpFields):
                want = FN_IPPROTO_TCP
            elif isinstance(l4, UdpFields):
                want = FN_IPPROTO_UDP
            else:
                want = FN_IPPROTO_ICMPV6 if isinstance(ip, Ipv6Fields) else FN_IPPROTO_ICMP
            if proto != want:
                raise ValueError(f"IP protocol {proto} does not match {type(l4).__name__} (expected {want})")
        # IPv4 total length or IPv6 payload length must fit in 16 bits. (Tell the versions
        # apart by type: an IPv4 header with 20 option bytes is 40 bytes long too.)
        if ip is not None and l3_hl + l4_hl + plen > 0xffff + (FN_IPV6_HLEN if isinstance(ip, Ipv6Fields) else 0):
            raise ValueError("datagram too large")
        out = bytearray(eth_len + l3_hl + l4_hl + plen)
    PyObject_GetBuffer(out, &pv, PyBUF_WRITABLE)
    cdef uint8_t *p = <uint8_t *>pv.buf
    cdef uint8_t *l3
    cdef uint8_t *l4p
    cdef bytes dst_mac, src_mac, a, b
    try:
        dst_mac = _mac_bytes(eth.dst)
        src_mac = _mac_bytes(eth.src)
        if eth.vlan_tci is not None:
            fn_build_eth_vlan(p, <const uint8_t *>PyBytes_AS_STRING(dst_mac), <const uint8_t *>PyBytes_AS_STRING(src_mac),
                              eth.vlan_tci, eth.ethertype)
        else:
            fn_build_eth(p, <const uint8_t *>PyBytes_AS_STRING(dst_mac), <const uint8_t *>PyBytes_AS_STRING(src_mac),
                         eth.ethertype)
        l3 = p + eth_len
        if arp is not None:
            sha = _mac_bytes(arp.sha)
            tha = _mac_bytes(arp.tha)
            a = _ip4_bytes(arp.spa)
            b = _ip4_bytes(arp.tpa)
            fn_build_arp(l3, arp.oper, <const uint8_t *>PyBytes_AS_STRING(sha), <const uint8_t *>PyBytes_AS_STRING(a),
                         <const uint8_t *>PyBytes_AS_STRING(tha), <const uint8_t *>PyBytes_AS_STRING(b))
            return out
        if ip is None:
            memcpy(l3, PyBytes_AS_STRING(pl), plen)
            return out
        l4p = l3 + l3_hl
        if l4 is None:
            memcpy(l4p, PyBytes_AS_STRING(pl), plen)
        else:
            memcpy(l4p + l4_hl, PyBytes_AS_STRING(pl), plen)
            if isinstance(l4, TcpFields):
                fn_build_tcp(l4p, &ts)
            elif isinstance(l4, UdpFields):
                fn_build_udp(l4p, l4.src_port, l4.dst_port, plen)
            else:
                fn_build_icmp(l4p, l4.type, l4.code, l4.rest)
        if isinstance(ip, Ipv4Fields):
            memset(&v4, 0, sizeof(v4))
            a = _ip4_bytes(ip.src)
            b = _ip4_bytes(ip.dst)
            memcpy(v4.src, PyBytes_AS_STRING(a), 4)
            memcpy(v4.dst, PyBytes_AS_STRING(b), 4)
            v4.proto = ip.protocol
            v4.ttl = ip.ttl
            v4.tos = ip.tos
            v4.id = ip.ident
            if ip.frag_offset < 0 or ip.frag_offset > FN_IPV4_FRAG_MASK:
                raise ValueError("fragment offset is 13 bits")
            v4.frag = ip.frag_offset | (FN_IPV4_FLAG_DF if ip.dont_fragment else 0) | (FN_IPV4_FLAG_MF if ip.more_fragments else 0)
            v4.opt_len = len(opts)
            v4.options = <const uint8_t *>PyBytes_AS_STRING(opts)
            fn_build_ipv4(l3, &v4, l4_hl + plen)
            if l4 is not None and not ip.more_fragments and ip.frag_offset == 0:
                fn_ipv4_fill_l4(l3)
        else:
            a = _ip6_bytes(ip.src)
            b = _ip6_bytes(ip.dst)
            fn_build_ipv6(l3, <const uint8_t *>PyBytes_AS_STRING(a), <const uint8_t *>PyBytes_AS_STRING(b),
                          ip.next_header, ip.hop_limit, ip.flow_label, ip.traffic_class, l4_hl + plen)
            if l4 is not None:
                fn_ipv6_fill_l4(l3)
        return out
    finally:
        PyBuffer_Release(&pv)


# ---------------------------------------------------------------------------------------------
# batches

SUMMARY_DTYPE = np.dtype([
    ("off", "u4"), ("len", "u4"), ("status", "i1"), ("kind", "u1"),
    ("l4_proto", "u1"), ("tcp_flags", "u1"), ("l3_off", "u4"), ("l4_off", "u4"),
    ("payload_off", "u4"), ("payload_len", "u4"),
])
if SUMMARY_DTYPE.itemsize != sizeof(fn_summary):
    raise ImportError("SUMMARY_DTYPE does not match struct fn_summary")


def classify_stream(buffer, int prefix=2, str byteorder="little", Py_ssize_t max_frames=4096,
                    size_t max_frame=0):
    """Classify length-prefixed frames lying back to back in ``buffer`` in one C call.

    ``prefix`` is 2 or 4 bytes, ``byteorder`` 'little' (HyperKit/vmnet) or 'big' (QEMU).
    Returns ``(summaries, consumed)``: a numpy array of SUMMARY_DTYPE (offsets are from the start
    of each frame, ``off`` from the start of the buffer; ``status`` 0 or a negative FN_E* code)
    and the number of bytes used by complete frames; a partial last frame is left unconsumed.
    A zero or oversized prefix ends the batch with one FN_EFRAME_LEN summary.
    """
    if prefix != 2 and prefix != 4:
        raise ValueError("prefix must be 2 or 4")
    if byteorder not in ("little", "big"):
        raise ValueError("byteorder must be 'little' or 'big'")
    cdef Py_buffer v
    cdef size_t consumed = 0, k
    cdef int big = byteorder == "big"
    out = np.empty(max_frames, dtype=SUMMARY_DTYPE)
    cdef unsigned char[::1] raw = out.view(np.uint8)
    PyObject_GetBuffer(buffer, &v, PyBUF_SIMPLE)
    try:
        with nogil:
            k = fn_classify_stream(<const uint8_t *>v.buf, <size_t>v.len, prefix, big,
                                   max_frame, <fn_summary *>&raw[0] if max_frames else NULL,
                                   max_frames, &consumed)
    finally:
        PyBuffer_Release(&v)
    return out[:k], consumed


def classify_spans(buffer, offsets, lengths):
    """Classify frames at (offset, length) spans of one buffer (datagram links, TAP reads)."""
    cdef Py_buffer v
    cdef const uint32_t[::1] o = np.ascontiguousarray(offsets, dtype=np.uint32)
    cdef const uint32_t[::1] l = np.ascontiguousarray(lengths, dtype=np.uint32)
    if o.shape[0] != l.shape[0]:
        raise ValueError("offsets and lengths differ in length")
    cdef size_t n = o.shape[0]
    out = np.empty(n, dtype=SUMMARY_DTYPE)
    if n == 0:
        return out
    cdef unsigned char[::1] raw = out.view(np.uint8)
    PyObject_GetBuffer(buffer, &v, PyBUF_SIMPLE)
    try:
        with nogil:
            fn_classify_spans(<const uint8_t *>v.buf, <size_t>v.len, &o[0], &l[0], n, <fn_summary *>&raw[0])
    finally:
        PyBuffer_Release(&v)
    return out
