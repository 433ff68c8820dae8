"""The DHCP server of the virtual network (RFC 2131; options RFC 2132), after vpnkit's
(reference/vpnkit.md §3): the gateway is the server, the router and the DNS server, and every
address comes from the AddressPool, so a vmnet guest is offered the address its handshake
already gave it and static leases by MAC or UUID are honoured.

Sans-IO: ``handle(frame, uuid=...)`` takes one Ethernet frame a guest sent to UDP port 67 and
returns the reply frames; time comes from the clock given at construction. No sockets.

Where this server deliberately differs from a general-purpose one:

- It is the only server on its network, so it is authoritative (ISC's ``authoritative;``,
  dnsmasq's ``dhcp-authoritative``): a REQUEST for an address it has no record of is granted
  when that address is free for the client (a guest keeps its address across a restart of
  fastnet) and NAKed otherwise, where RFC 2131 §4.3.2 has a non-authoritative server stay silent.
- A client is the pair (vmnet UUID, chaddr) that the pool and the switch key guests by, not its
  client identifier (RFC 2131 §4.2 would prefer option 61). The identifier is echoed (RFC 6842),
  shown in ``leases()``, and remembers a client's previous address across a MAC change, but it
  never moves a lease away from a MAC: two cloned VMs that share a DUID-based identifier must
  not share an address.
- BOOTP clients (no option 53) get no answer.
- The UDP checksum is not verified: with TAP offloads it may be a partial (pseudo-header only)
  checksum that the guest's kernel left for the device to finish; the IPv4 header was verified
  by the C core and every field here is bounds-checked.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import logging
import math
import re
import struct
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from fastnet import wire
from fastnet.services.addressing import AddressError, AddressPool, Lease
from fastnet.services.config import NetworkConfig, format_mac

log = logging.getLogger("fastnet.dhcp")

IPv4Address = ipaddress.IPv4Address

SERVER_PORT = 67
CLIENT_PORT = 68
BOOTREQUEST = 1
BOOTREPLY = 2
HTYPE_ETHERNET = 1
MAGIC_COOKIE = bytes((99, 130, 83, 99))    # RFC 2131 §3
FLAG_BROADCAST = 0x8000                     # RFC 2131 §2, figure 2
ZERO = IPv4Address(0)
LIMITED_BROADCAST = IPv4Address("255.255.255.255")
BROADCAST_MAC = b"\xff" * 6

# op htype hlen hops xid secs flags ciaddr yiaddr siaddr giaddr chaddr sname file (RFC 2131 §2).
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_OPTIONS_OFF = _HEADER.size + len(MAGIC_COOKIE)   # 240
# RFC 1542 §2.1: the UDP data of a BOOTP message is at least 300 octets; some relays and old
# clients drop shorter ones, so replies are padded to it.
BOOTP_MIN_LEN = 300
# RFC 2131 §2: every client accepts a 576-byte datagram (312 bytes of options); RFC 2132 §9.10
# makes 576 the smallest maximum message size a client may announce.
MIN_MAX_MESSAGE = 576
IP_UDP_HLEN = 20 + 8
INFINITE = 0xFFFFFFFF                       # RFC 2132 §9.2: a lease time of infinity

# How long an OFFER holds an address that was free before it (RFC 2131 §4.3.1: the server
# SHOULD reserve it "so that it does not offer the same address to another client"); only
# reclaimed when the pool runs out.
OFFER_HOLD = 60.0
# How long an address a client DECLINEd (found in use, RFC 2131 §4.3.3) stays out of the pool.
# The RFC names no time; dnsmasq's is 10 minutes.
DECLINE_HOLD = 600.0
PREVIOUS_MAX = 4096                         # remembered previous bindings (oldest dropped)


class MessageType(enum.IntEnum):
    """Option 53 (RFC 2132 §9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class Opt(enum.IntEnum):
    PAD = 0
    SUBNET_MASK = 1          # RFC 2132 §3.3
    ROUTER = 3               # §3.5
    DNS_SERVER = 6           # §3.8
    HOSTNAME = 12            # §3.14
    DOMAIN_NAME = 15         # §3.17
    INTERFACE_MTU = 26       # §5.1
    BROADCAST = 28           # §5.3
    REQUESTED_IP = 50        # §9.1
    LEASE_TIME = 51          # §9.2
    OVERLOAD = 52            # §9.3
    MESSAGE_TYPE = 53        # §9.6
    SERVER_ID = 54           # §9.7
    PARAMETER_REQUEST = 55   # §9.8
    MESSAGE = 56             # §9.9
    MAX_MESSAGE_SIZE = 57    # §9.10
    RENEWAL_TIME = 58        # §9.11 (T1)
    REBINDING_TIME = 59      # §9.12 (T2)
    CLIENT_ID = 61           # §9.14
    DOMAIN_SEARCH = 119      # RFC 3397
    END = 255


# Options whose value has a fixed length (or a minimum one): a message that breaks this is
# malformed, not just missing the option.
_FIXED_LEN = {Opt.REQUESTED_IP: 4, Opt.SERVER_ID: 4, Opt.MESSAGE_TYPE: 1, Opt.MAX_MESSAGE_SIZE: 2,
              Opt.OVERLOAD: 1, Opt.LEASE_TIME: 4}
_MIN_LEN = {Opt.CLIENT_ID: 2, Opt.HOSTNAME: 1}

# The configuration a reply carries, in the order used after the client's own (option 55).
_PARAMETER_ORDER = (Opt.SUBNET_MASK, Opt.BROADCAST, Opt.ROUTER, Opt.DNS_SERVER, Opt.DOMAIN_NAME,
                    Opt.DOMAIN_SEARCH, Opt.INTERFACE_MTU)
# Sent even when they overflow the client's maximum message size: without them the lease is
# useless.
_ESSENTIAL = frozenset((Opt.SUBNET_MASK, Opt.ROUTER, Opt.DNS_SERVER))

STAT_KEYS = ("received", "discover", "request", "decline", "release", "inform",
             "offer", "ack", "nak", "exhausted", "declined", "ignored", "not_for_us", "other_server",
             "malformed", "truncated", "bad_op", "bad_htype", "bad_cookie", "bad_option")


class MalformedDhcp(ValueError):
    """A DHCP message that breaks RFC 2131's format; ``key`` is the stats counter it counts in."""

    def __init__(self, key: str, reason: str):
        super().__init__(reason)
        self.key = key


# -- encoding ----------------------------------------------------------------------------------

def _labels(name: str) -> list[bytes]:
    """The labels of a domain name as DNS wire bytes (RFC 1035 §2.3.4 limits); IDNA for
    non-ASCII names (RFC 3490 ToASCII, the stdlib's codec)."""
    name = name.strip().rstrip(".")
    if not name:
        raise ValueError("empty domain name")
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raw = name.encode("idna")
    labels = raw.split(b".")
    if any(not 1 <= len(label) <= 63 for label in labels):
        raise ValueError(f"domain name {name!r} has an empty or over-long (>63) label")
    if sum(len(label) + 1 for label in labels) + 1 > 255:
        raise ValueError(f"domain name {name!r} is longer than 255 octets")
    return labels


def encode_domain_search(domains: Iterable[str]) -> bytes:
    """Option 119's value (RFC 3397 §2): the names in DNS wire format, each suffix already
    written replaced by a compression pointer (RFC 1035 §4.1.4) whose offset counts from the
    start of the option's (concatenated, RFC 3396) value. Raises ValueError for a bad name."""
    out = bytearray()
    seen: dict[tuple[bytes, ...], int] = {}
    for name in domains:
        labels = _labels(name)
        for i in range(len(labels)):
            suffix = tuple(label.lower() for label in labels[i:])   # DNS names compare caseless
            at = seen.get(suffix)
            if at is not None:
                out += struct.pack("!H", 0xC000 | at)
                break
            if len(out) < 0x4000:       # a pointer has 14 bits of offset
                seen[suffix] = len(out)
            out.append(len(labels[i]))
            out += labels[i]
        else:
            out.append(0)
    return bytes(out)


@functools.lru_cache(maxsize=8)
def _search_option(domains: tuple[str, ...]) -> bytes:
    # Cached on the list, so a bad name in the configuration is logged once, not per reply.
    good = []
    for name in domains:
        try:
            _labels(name)
        except ValueError as e:
            log.warning("DHCP: search domain left out of option 119: %s", e)
            continue
        good.append(name)
    return encode_domain_search(good)


@functools.lru_cache(maxsize=8)
def _domain_option(domain: str) -> bytes:
    # Option 15 is the name as text (RFC 2132 §3.17), in its ASCII (IDNA) form.
    if not domain.strip().rstrip("."):
        return b""
    try:
        return b".".join(_labels(domain))
    except ValueError as e:
        log.warning("DHCP: domain name left out of option 15: %s", e)
        return b""


def encode_option(code: int, value: bytes) -> bytes:
    """One option in code-length-value form; values over 255 bytes are split into several
    instances of the option, which the client concatenates (RFC 3396 §7)."""
    if not value:
        return bytes((code, 0))
    return b"".join(bytes((code, len(value[i:i + 255]))) + value[i:i + 255]
                    for i in range(0, len(value), 255))


def _parse_options(buf: bytes, into: dict[int, bytes]) -> None:
    """Options in code-length-value form up to END (RFC 2131 §4.1), appended to ``into``;
    an option that occurs again is concatenated onto the first (RFC 3396 §7)."""
    i, n = 0, len(buf)
    while i < n:
        code = buf[i]
        if code == Opt.PAD:
            i += 1
            continue
        if code == Opt.END:
            return
        if i + 2 > n or i + 2 + buf[i + 1] > n:
            raise MalformedDhcp("truncated", f"option {code} runs past the end of the message")
        length = buf[i + 1]
        into[code] = into.get(code, b"") + buf[i + 2:i + 2 + length]
        i += 2 + length
    # Running out of bytes without END is accepted: clients exist that pad to the end instead.


_HOSTNAME_LABEL = re.compile(rb"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def clean_hostname(raw: bytes | None) -> str | None:
    """Option 12 as a name DNS can serve (RFC 1123 §2.1 labels), else None. Some clients
    NUL-terminate it; a trailing dot of a fully qualified name is dropped."""
    if not raw:
        return None
    raw = raw.rstrip(b"\x00").rstrip(b".")
    if not raw or len(raw) > 253:
        return None
    if not all(_HOSTNAME_LABEL.match(label) for label in raw.split(b".")):
        return None
    return raw.decode("ascii")


# -- messages ----------------------------------------------------------------------------------

@dataclass
class DhcpMessage:
    """A client's message (RFC 2131 §2), validated: BOOTREQUEST, Ethernet addresses, the magic
    cookie, options well-formed (with overloaded sname/file, RFC 2132 §9.3)."""

    xid: int
    flags: int
    ciaddr: IPv4Address
    giaddr: IPv4Address
    chaddr: bytes
    chaddr_field: bytes          # all 16 bytes, echoed in replies as RFC 2131 Table 3 says
    options: dict[int, bytes]

    @classmethod
    def parse(cls, data: bytes) -> "DhcpMessage":
        if len(data) < _OPTIONS_OFF:
            raise MalformedDhcp("truncated", f"{len(data)} bytes, shorter than the fixed header and cookie")
        (op, htype, hlen, _hops, xid, _secs, flags, ciaddr, _yiaddr, _siaddr, giaddr, chaddr,
         sname, file) = _HEADER.unpack_from(data)
        if op != BOOTREQUEST:
            raise MalformedDhcp("bad_op", f"op {op} is not BOOTREQUEST")
        if htype != HTYPE_ETHERNET or hlen != 6:
            raise MalformedDhcp("bad_htype", f"htype {htype} hlen {hlen} is not Ethernet")
        if data[_HEADER.size:_OPTIONS_OFF] != MAGIC_COOKIE:
            raise MalformedDhcp("bad_cookie", "no DHCP magic cookie")
        options: dict[int, bytes] = {}
        _parse_options(data[_OPTIONS_OFF:], options)
        overload = options.get(Opt.OVERLOAD)
        if overload is not None:
            if len(overload) != 1 or overload[0] not in (1, 2, 3):
                raise MalformedDhcp("bad_option", f"option overload {overload.hex()}")
            # RFC 2131 §4.1: the options field first, then 'file', then 'sname'.
            if overload[0] & 1:
                _parse_options(file, options)
            if overload[0] & 2:
                _parse_options(sname, options)
        for code, length in _FIXED_LEN.items():
            if code in options and len(options[code]) != length:
                raise MalformedDhcp("bad_option", f"option {code} has length {len(options[code])}, not {length}")
        for code, length in _MIN_LEN.items():
            if code in options and len(options[code]) < length:
                raise MalformedDhcp("bad_option", f"option {code} is shorter than {length}")
        return cls(xid=xid, flags=flags, ciaddr=IPv4Address(ciaddr), giaddr=IPv4Address(giaddr),
                   chaddr=chaddr[:6], chaddr_field=chaddr, options=options)

    @property
    def type(self) -> int | None:
        v = self.options.get(Opt.MESSAGE_TYPE)
        return v[0] if v else None

    def _address(self, code: int) -> IPv4Address | None:
        v = self.options.get(code)
        return IPv4Address(v) if v else None

    @property
    def requested_ip(self) -> IPv4Address | None:
        return self._address(Opt.REQUESTED_IP)

    @property
    def server_id(self) -> IPv4Address | None:
        return self._address(Opt.SERVER_ID)

    @property
    def client_id(self) -> bytes | None:
        return self.options.get(Opt.CLIENT_ID)

    @property
    def hostname(self) -> str | None:
        return clean_hostname(self.options.get(Opt.HOSTNAME))

    @property
    def parameter_request(self) -> bytes:
        return self.options.get(Opt.PARAMETER_REQUEST, b"")

    @property
    def max_message_size(self) -> int:
        v = self.options.get(Opt.MAX_MESSAGE_SIZE)
        return max(MIN_MAX_MESSAGE, struct.unpack("!H", v)[0]) if v else MIN_MAX_MESSAGE


@dataclass
class _Reply:
    type: MessageType
    yiaddr: IPv4Address = ZERO
    ciaddr: IPv4Address = ZERO
    lease: bool = False              # carries lease time, T1, T2 (OFFER and ACK of a REQUEST)
    message: str | None = None       # option 56, for a NAK


# -- the server ------------------------------------------------------------------------------

class DhcpServer:
    def __init__(self, config: NetworkConfig, pool: AddressPool, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.pool = pool
        self.clock = clock
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._offered: dict[IPv4Address, float] = {}                 # ip -> hold deadline
        self._declined: dict[IPv4Address, float] = {}  # ip -> held until (AddressPool.hold)
        self._client_ids: dict[IPv4Address, bytes] = {}              # ip -> option 61 of its client
        self._previous: dict[bytes, IPv4Address] = {}                # client key -> last address

    # -- entry point -------------------------------------------------------------------------

    def handle(self, frame: bytes, *, uuid: str | None = None) -> list[bytes]:
        """The reply frames (zero or one) to one frame a guest sent to the DHCP server port."""
        try:
            fr = wire.parse_frame(frame)
        except wire.MalformedPacket:
            self.stats["ignored"] += 1
            return []
        if fr.kind != wire.Kind.UDP4 or fr.l4.dst_port != SERVER_PORT:
            self.stats["ignored"] += 1
            return []
        self.stats["received"] += 1
        ip = fr.ip
        # Broadcasts, and unicasts to us (RENEWING, RELEASE, INFORM, RFC 2131 §4.4.5); a unicast
        # to some other address is for a server elsewhere, whose client must not hear from us.
        if ip.dst not in (LIMITED_BROADCAST, self.config.broadcast, self.config.gateway):
            self.stats["not_for_us"] += 1
            return []
        try:
            msg = DhcpMessage.parse(bytes(fr.payload))
        except MalformedDhcp as e:
            self.stats["malformed"] += 1
            self.stats[e.key] += 1
            log.debug("DHCP: malformed message from %s: %s", format_mac(fr.eth.src), e)
            return []
        now = self.clock()
        self._expire_holds(now)
        handler = {
            MessageType.DISCOVER: self._discover,
            MessageType.REQUEST: self._request,
            MessageType.DECLINE: self._decline,
            MessageType.RELEASE: self._release,
            MessageType.INFORM: self._inform,
        }.get(msg.type)
        if handler is None:
            # BOOTP (no option 53) or a server's message type: nothing for a server to answer.
            self.stats["ignored"] += 1
            return []
        self.stats[MessageType(msg.type).name.lower()] += 1
        reply = handler(msg, uuid, now, ip.src)
        if reply is None:
            return []
        self.stats[reply.type.name.lower()] += 1
        return [self._frame(msg, reply, fr)]

    # -- message types ----------------------------------------------------------------------

    def _discover(self, msg: DhcpMessage, uuid: str | None, now: float, src: IPv4Address) -> _Reply | None:
        lease, fresh = self._choose(msg, uuid, now)
        if lease is None:
            self.stats["exhausted"] += 1
            log.warning("DHCP: no address to offer %s: the pool is exhausted", format_mac(msg.chaddr))
            return None
        if fresh or lease.ip in self._offered:
            self._offered[lease.ip] = now + OFFER_HOLD
        return _Reply(MessageType.OFFER, yiaddr=lease.ip, lease=True)

    def _request(self, msg: DhcpMessage, uuid: str | None, now: float, src: IPv4Address) -> _Reply | None:
        # RFC 2131 §4.3.2 tells the client's state from the options and ciaddr.
        sid, requested = msg.server_id, msg.requested_ip
        if sid is not None:
            # SELECTING: broadcast to every server; naming another one declines our offer.
            if sid != self.config.gateway:
                self.stats["other_server"] += 1
                self._withdraw_offer(msg, uuid)
                return None
            if requested is None:
                return self._nak(msg, "no requested address in SELECTING")
            return self._confirm(msg, uuid, now, requested)
        if msg.ciaddr == ZERO:
            if requested is None:
                self.stats["ignored"] += 1     # neither ciaddr nor option 50: no address to talk about
                return None
            # INIT-REBOOT: the client checks an address it remembers.
            if requested not in self.config.subnet:
                return self._nak(msg, f"{requested} is not on this network")
            return self._confirm(msg, uuid, now, requested)
        # RENEWING (unicast) or REBINDING (broadcast): ciaddr is the client's address.
        if msg.ciaddr not in self.config.subnet:
            return self._nak(msg, f"{msg.ciaddr} is not on this network")
        return self._confirm(msg, uuid, now, msg.ciaddr, ciaddr=msg.ciaddr)

    def _confirm(self, msg: DhcpMessage, uuid: str | None, now: float, address: IPv4Address,
                 ciaddr: IPv4Address = ZERO) -> _Reply:
        """ACK when ``address`` is (or can become) this client's; NAK otherwise."""
        lease = self._current(msg.chaddr, uuid) or self._adopt(msg, uuid, address)
        if lease is None or lease.ip != address:
            return self._nak(msg, f"{address} is not this client's address")
        if msg.hostname:
            lease.hostname = msg.hostname
        secs = self._lease_seconds()
        lease.expires = math.inf if secs == INFINITE else now + secs
        self._offered.pop(lease.ip, None)
        if msg.client_id:
            self._client_ids[lease.ip] = msg.client_id
        else:
            self._client_ids.pop(lease.ip, None)
        self._remember(msg.chaddr, msg.client_id, lease.ip)
        log.info("DHCP: %s bound to %s%s", format_mac(msg.chaddr), lease.ip,
                 f" ({lease.hostname})" if lease.hostname else "")
        return _Reply(MessageType.ACK, yiaddr=lease.ip, ciaddr=ciaddr, lease=True)

    def _nak(self, msg: DhcpMessage, why: str) -> _Reply:
        log.info("DHCP: NAK to %s: %s", format_mac(msg.chaddr), why)
        return _Reply(MessageType.NAK, message=why)

    def _release(self, msg: DhcpMessage, uuid: str | None, now: float, src: IPv4Address) -> None:
        # RFC 2131 §4.3.4: the client gives up the address in ciaddr; a RELEASE naming another
        # server, or an address that is not this client's, changes nothing.
        sid = msg.server_id
        lease = self._current(msg.chaddr, uuid)
        if (sid is not None and sid != self.config.gateway) or lease is None or lease.ip != msg.ciaddr:
            self.stats["ignored"] += 1
            return None
        self._remember(msg.chaddr, msg.client_id, lease.ip)
        self._drop(lease)
        log.info("DHCP: %s released %s", format_mac(msg.chaddr), msg.ciaddr)
        return None

    def _decline(self, msg: DhcpMessage, uuid: str | None, now: float, src: IPv4Address) -> None:
        # RFC 2131 §4.3.3: the client found the address in use (by ARP); the server MUST mark
        # it not available. It goes out of the pool for DECLINE_HOLD.
        sid, requested = msg.server_id, msg.requested_ip
        lease = self._current(msg.chaddr, uuid)
        if sid != self.config.gateway or lease is None or lease.ip != requested:
            self.stats["ignored"] += 1
            return None
        if lease.uuid:
            # A vmnet guest's address is fixed by its UUID: there is no other to give it.
            log.warning("DHCP: %s declined %s, which its vmnet UUID fixes; nothing to change",
                        format_mac(msg.chaddr), requested)
            return None
        self.stats["declined"] += 1
        log.warning("DHCP: %s declined %s (in use by someone else); holding it for %.0f s",
                    format_mac(msg.chaddr), requested, DECLINE_HOLD)
        self._drop(lease)
        # Forget it as the client's previous address, or its next DISCOVER would get it back.
        for key in [k for k, ip in self._previous.items() if ip == requested]:
            del self._previous[key]
        self._hold(requested, now)
        return None

    def _inform(self, msg: DhcpMessage, uuid: str | None, now: float, src: IPv4Address) -> _Reply:
        # RFC 2131 §4.3.5: configuration only, for a client that has its address already; no
        # lease is checked or made, and the ACK has no yiaddr and no lease time.
        return _Reply(MessageType.ACK, ciaddr=msg.ciaddr if msg.ciaddr != ZERO else src)

    # -- choosing addresses (RFC 2131 §4.3.1) ------------------------------------------------

    def _current(self, mac: bytes, uuid: str | None) -> Lease | None:
        """The pool's lease for this guest: by vmnet UUID first, then MAC (AddressPool.allocate's
        order)."""
        if uuid:
            for lease in self.pool.leases():
                if lease.uuid == uuid:
                    return lease
        return self.pool.lookup_mac(mac)

    def _static_for(self, mac: bytes, uuid: str | None):
        for s in self.config.leases:
            if (uuid and s.uuid == uuid) or s.mac == mac:
                return s
        return None

    def _available(self, ip: IPv4Address) -> bool:
        """Free for anyone to take: in the guest range, not reserved, not another's static
        address (AddressPool.allocate with `preferred` does not check that), not held."""
        cfg = self.config
        return (cfg.first_guest <= ip <= cfg.last_guest and self.pool.lookup_ip(ip) is None
                and ip not in (cfg.gateway, cfg.dns_server, cfg.host_alias)
                and all(s.ip != ip for s in cfg.leases) and ip not in self._declined)

    def _choose(self, msg: DhcpMessage, uuid: str | None, now: float) -> tuple[Lease | None, bool]:
        """The address to offer and whether it was free before: the client's current binding,
        its previous one, the one it asks for (option 50), a new one; that order is §4.3.1's."""
        lease = self._current(msg.chaddr, uuid)
        if lease is not None:
            if msg.hostname:
                lease.hostname = msg.hostname
            return lease, False
        if self._static_for(msg.chaddr, uuid) is None:
            wanted = [self._previous.get(key) for key in self._keys(msg.chaddr, msg.client_id)]
            for ip in wanted + [msg.requested_ip]:
                if ip is not None and self._available(ip):
                    try:
                        return self.pool.allocate(mac=msg.chaddr, uuid=uuid, preferred=ip, hostname=msg.hostname), True
                    except AddressError:
                        continue
        for retry in (False, True):  # once more if reclaiming stale offers and leases freed one
            try:
                return self.pool.allocate(mac=msg.chaddr, uuid=uuid, hostname=msg.hostname), True
            except AddressError:
                if retry or not self._reclaim(now):
                    return None, False
        raise AssertionError("unreachable")

    def _adopt(self, msg: DhcpMessage, uuid: str | None, ip: IPv4Address) -> Lease | None:
        """A lease for a client we have no record of that asks for ``ip`` (INIT-REBOOT,
        RENEWING or SELECTING after a restart of fastnet): its static address, or ``ip`` if
        free; None when neither."""
        try:
            if self._static_for(msg.chaddr, uuid) is not None:
                return self.pool.allocate(mac=msg.chaddr, uuid=uuid, hostname=msg.hostname)
            if self._available(ip):
                return self.pool.allocate(mac=msg.chaddr, uuid=uuid, preferred=ip, hostname=msg.hostname)
        except AddressError:
            pass
        return None

    def _withdraw_offer(self, msg: DhcpMessage, uuid: str | None) -> None:
        """The client took another server's offer: an address we took from the free pool for
        it goes back (RFC 2131 §4.3.2, "notification that the client has declined")."""
        lease = self._current(msg.chaddr, uuid)
        if lease is not None and lease.ip in self._offered and not lease.expires:
            self._drop(lease)

    def _reclaim(self, now: float) -> int:
        """Free what the pool may take back when it runs out: offers past their hold that were
        never taken, and leases that expired without a renewal. A vmnet UUID's lease stays."""
        freed = 0
        for lease in self.pool.leases():
            if lease.uuid:
                continue
            held = self._offered.get(lease.ip)
            if (not lease.expires and held is not None and held <= now) or 0 < lease.expires <= now:
                self._remember(lease.mac, self._client_ids.get(lease.ip), lease.ip)
                log.info("DHCP: reclaimed %s from %s", lease.ip, format_mac(lease.mac))
                self._drop(lease)
                freed += 1
        return freed

    def _drop(self, lease: Lease) -> None:
        lease.expires = 0.0
        self._offered.pop(lease.ip, None)
        if not lease.uuid:
            self._client_ids.pop(lease.ip, None)
        self.pool.release(lease)   # a vmnet UUID's lease stays with its VM

    def _hold(self, ip: IPv4Address, now: float) -> None:
        self.pool.hold(ip)
        self._declined[ip] = now + DECLINE_HOLD

    def _expire_holds(self, now: float) -> None:
        for ip, until in list(self._declined.items()):
            if until <= now:
                del self._declined[ip]
                self.pool.unhold(ip)

    @staticmethod
    def _keys(mac: bytes, client_id: bytes | None) -> list[bytes]:
        return ([b"id:" + client_id] if client_id else []) + [b"mac:" + mac]

    def _remember(self, mac: bytes, client_id: bytes | None, ip: IPv4Address) -> None:
        for key in self._keys(mac, client_id):
            self._previous.pop(key, None)     # re-inserted last: the dict's order is recency
            self._previous[key] = ip
        while len(self._previous) > PREVIOUS_MAX:
            del self._previous[next(iter(self._previous))]

    def _lease_seconds(self) -> int:
        return max(1, min(int(self.config.lease_time), INFINITE))

    # -- replies -----------------------------------------------------------------------------

    def _parameters(self) -> dict[int, bytes]:
        """Option values of the network's configuration (RFC 2132 §3, §5; RFC 3397)."""
        cfg = self.config
        values = {
            Opt.SUBNET_MASK: cfg.netmask.packed,
            Opt.BROADCAST: cfg.broadcast.packed,
            Opt.ROUTER: cfg.gateway.packed,
            # No DNS server to announce when the gateway's DNS service is switched off (as
            # slirp4netns --disable-dns): the guest keeps its own resolver configuration.
            Opt.DNS_SERVER: cfg.dns_server.packed if cfg.dns_service.enabled else b"",
            Opt.DOMAIN_NAME: _domain_option(cfg.domain),
            # vpnkit omits option 119 when there is nothing to search.
            Opt.DOMAIN_SEARCH: _search_option(tuple(cfg.search)),
            Opt.INTERFACE_MTU: struct.pack("!H", cfg.mtu),
        }
        return {code: values[code] for code in _PARAMETER_ORDER if values[code]}

    def _options(self, msg: DhcpMessage, reply: _Reply) -> bytes:
        gw = self.config.gateway.packed
        out = [encode_option(Opt.MESSAGE_TYPE, bytes((reply.type,))), encode_option(Opt.SERVER_ID, gw)]
        if reply.lease:
            secs = self._lease_seconds()
            out.append(encode_option(Opt.LEASE_TIME, struct.pack("!I", secs)))
            if secs != INFINITE:   # RFC 2131 §4.4.5 defaults: T1 = 0.5, T2 = 0.875 of the lease
                out.append(encode_option(Opt.RENEWAL_TIME, struct.pack("!I", secs // 2)))
                out.append(encode_option(Opt.REBINDING_TIME, struct.pack("!I", secs * 7 // 8)))
        if msg.client_id:
            out.append(encode_option(Opt.CLIENT_ID, msg.client_id))   # RFC 6842 §3: MUST echo
        if reply.type == MessageType.NAK:
            # RFC 2131 Table 3: a NAK carries nothing but these and an optional message.
            if reply.message:
                out.append(encode_option(Opt.MESSAGE, reply.message.encode("ascii", "replace")[:255]))
            return b"".join(out)
        params = self._parameters()
        # RFC 2132 §9.8: the server "MUST try to insert the requested options in the order
        # requested by the client"; the rest follow in our order.
        order = list(dict.fromkeys([c for c in msg.parameter_request if c in params] + list(params)))
        room = min(msg.max_message_size, self.config.mtu) - IP_UDP_HLEN - _OPTIONS_OFF - 1  # 1: END
        room -= sum(len(o) for o in out)
        essential = [encode_option(c, params[c]) for c in order if c in _ESSENTIAL]
        room -= sum(len(o) for o in essential)
        for code in order:
            encoded = encode_option(code, params[code])
            if code in _ESSENTIAL:
                out.append(encoded)
            elif len(encoded) <= room:
                out.append(encoded)
                room -= len(encoded)
            else:
                log.debug("DHCP: option %d left out: over the client's maximum message size", code)
        return b"".join(out)

    def _frame(self, msg: DhcpMessage, reply: _Reply, request: wire.Frame) -> bytes:
        cfg = self.config
        flags = msg.flags
        # RFC 2131 §4.1, in its order: via a relay, to the relay's server port; a NAK is
        # broadcast; to an address the client has (ciaddr); broadcast when the client cannot
        # receive unicast before it is configured (the B flag); otherwise unicast to chaddr
        # and yiaddr, which the client receives on its raw socket.
        if msg.giaddr != ZERO:
            dst_mac, dst_ip, port = bytes(request.eth.src), msg.giaddr, SERVER_PORT
            if reply.type == MessageType.NAK:
                flags |= FLAG_BROADCAST   # so the relay broadcasts it to the client
        elif reply.type == MessageType.NAK:
            dst_mac, dst_ip, port = BROADCAST_MAC, LIMITED_BROADCAST, CLIENT_PORT
        elif reply.ciaddr != ZERO:
            dst_mac, dst_ip, port = msg.chaddr, reply.ciaddr, CLIENT_PORT
        elif msg.flags & FLAG_BROADCAST or reply.yiaddr == ZERO:
            dst_mac, dst_ip, port = BROADCAST_MAC, LIMITED_BROADCAST, CLIENT_PORT
        else:
            dst_mac, dst_ip, port = msg.chaddr, reply.yiaddr, CLIENT_PORT
        # RFC 2131 Table 3: siaddr 0 (no boot server); sname and file empty.
        payload = (_HEADER.pack(BOOTREPLY, HTYPE_ETHERNET, 6, 0, msg.xid, 0, flags, reply.ciaddr.packed,
                                reply.yiaddr.packed, ZERO.packed, msg.giaddr.packed, msg.chaddr_field,
                                b"", b"")
                   + MAGIC_COOKIE + self._options(msg, reply) + bytes((Opt.END,)))
        if len(payload) < BOOTP_MIN_LEN:
            payload += bytes(BOOTP_MIN_LEN - len(payload))
        eth = request.eth
        return bytes(wire.build_frame(
            wire.EthernetFields(dst=dst_mac, src=cfg.gateway_mac, ethertype=wire.ETHERTYPE_IPV4,
                                vlan_tci=eth.vlan_tci),
            wire.Ipv4Fields(src=cfg.gateway, dst=dst_ip, protocol=wire.IPPROTO_UDP, ttl=64),
            wire.UdpFields(SERVER_PORT, port), payload))

    # -- the control API ------------------------------------------------------------------------

    def leases(self) -> list[dict]:
        """Every address the pool has given out (declined addresses held back are not leases):
        state is "bound" (an ACKed DHCP lease), "expired", "offered" (not yet requested) or
        "assigned" (vmnet or static, no DHCP yet); expires_in is None without a finite lease."""
        now = self.clock()
        out = []
        for lease in sorted(self.pool.leases(), key=lambda x: x.ip):
            if lease.expires:
                state = "bound" if lease.expires > now else "expired"
            else:
                state = "offered" if lease.ip in self._offered else "assigned"
            finite = 0 < lease.expires < math.inf
            cid = self._client_ids.get(lease.ip)
            out.append({"ip": str(lease.ip), "mac": format_mac(lease.mac), "hostname": lease.hostname,
                        "uuid": lease.uuid, "client_id": cid.hex(":") if cid else None, "state": state,
                        "expires_in": max(0, int(lease.expires - now)) if finite else None})
        return out
