"""Published ports: host listeners whose clients are carried into a guest (``-p 8080:80``).

A published TCP port is a listening host socket. Each accepted client becomes an active open
towards the guest in the port's TCP engine (``Forwarder.open_tcp``): the engine sends the SYN
and relays the stream with no Python per segment, and a guest that resets or never answers
gives the client a reset (the engine closes the host socket with SO_LINGER 0).

A published UDP port is a bound host socket. Each client address gets its own flow: a socket
bound to the published address and port and ``connect()``ed to the client, so the kernel hands
that client's later datagrams to it (a connected UDP socket wins the lookup over the wildcard
one) and the C datagram NAT relays both ways; the first datagram, read from the listening
socket, is sent to the guest from here. The flow ends at the datagram NAT's idle timeout.

A unix socket path can be published to a guest TCP port the same way as a TCP port.

The guest sees the client's own address and port as the source of a forwarded connection
when the client is a remote IPv4 host (what the anchors mostly lose). Clients on the host's
loopback, over IPv6 or on a unix socket appear as the host alias, so the guest's replies go
back through the gateway like every other flow.

Errors are the ones users know from Docker: ``port is already allocated`` (EADDRINUSE),
``cannot assign requested address`` (EADDRNOTAVAIL), ``permission denied`` (a privileged
port). Forwards can be kept in a state file that a restarted fastnet reads back.

Everything here runs on the network's event loop thread.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Callable

from fastnet import wire
from fastnet.aio.forwarder import now_us
from fastnet.aio.unixsock import SocketPathInUse, bind_unix, bound_inode, unlink_if_ours
from fastnet.errors import ConnectionStateError, FastnetError

log = logging.getLogger("fastnet.ports")

IPv4Address = ipaddress.IPv4Address
PROTOCOLS = ("tcp", "udp", "unix")

# Linux values (in.h / in6.h); Python's socket module lacks IP_PKTINFO.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)

# Work per wake-up is bounded so one busy port cannot starve the rest of the loop.
ACCEPT_BATCH = 64
DATAGRAM_BATCH = 64
# Datagrams kept for a client while the guest's MAC is being resolved.
PENDING_DATAGRAMS = 16
# Ports shown as the source of clients that have none of their own (unix sockets) or whose
# own collides with a flow already in the table.
SYNTHETIC_PORTS = (49152, 65535)


class PortError(FastnetError):
    """A forward that cannot be made or found. ``kind`` says which: "in_use", "address",
    "permission", "invalid", "exists", "not_found"."""

    def __init__(self, message: str, kind: str = "invalid"):
        super().__init__(message)
        self.kind = kind


# errno -> (kind, what users are told): Docker's wording.
BIND_ERRORS = {
    errno.EADDRINUSE: ("in_use", "port is already allocated"),
    errno.EADDRNOTAVAIL: ("address", "cannot assign requested address"),
    errno.EACCES: ("permission", "permission denied"),
    errno.EPERM: ("permission", "permission denied"),
}


def _bind_error(e: OSError, proto: str, where: str) -> PortError:
    kind, text = BIND_ERRORS.get(e.errno or 0, ("invalid", e.strerror or str(e)))
    return PortError(f"cannot publish {proto} {where}: {text}", kind)


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def normalize_host_addr(text) -> str:
    """A host address as given ("[::1]", "localhost", "fe80::1%eth0") in canonical form."""
    if not isinstance(text, str):
        raise PortError(f"not an IP address: {text!r}")
    host = text.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    addr, _, scope = host.partition("%")
    try:
        return str(ipaddress.ip_address(addr)) + ("%" + scope if scope else "")
    except ValueError:
        raise PortError(f"not an IP address: {text!r}") from None


@dataclass
class PortSpec:
    """What to publish. host_addr None: 127.0.0.1, and [::1] too where it can be bound;
    "" all addresses (0.0.0.0 and [::]). guest_addr None: the default guest at connect time."""

    proto: str = "tcp"
    host_addr: str | None = None
    host_port: int = 0
    guest_addr: IPv4Address | None = None
    guest_port: int = 0
    path: str | None = None          # unix: the socket path

    def __post_init__(self) -> None:
        if self.proto not in PROTOCOLS:
            raise PortError(f"unknown protocol {self.proto!r} (tcp, udp or unix)")
        if self.guest_addr is not None and not isinstance(self.guest_addr, IPv4Address):
            try:
                self.guest_addr = IPv4Address(str(self.guest_addr))
            except ValueError:
                raise PortError(f"not an IPv4 guest address: {self.guest_addr!r}") from None
        if not isinstance(self.guest_port, int) or not 0 < self.guest_port < 65536:
            raise PortError(f"guest port {self.guest_port!r} is not in 1..65535")
        if self.proto == "unix":
            if not self.path:
                raise PortError("a unix forward needs a socket path")
            self.host_addr, self.host_port = None, 0
            return
        if self.path:
            raise PortError(f"a {self.proto} forward has no socket path")
        if not isinstance(self.host_port, int) or not 0 <= self.host_port < 65536:
            raise PortError(f"host port {self.host_port!r} is not in 0..65535")
        if self.host_addr not in (None, ""):
            self.host_addr = normalize_host_addr(self.host_addr)

    def binds(self) -> list[str]:
        """Addresses to listen on: the first is required, the others are bound where possible."""
        if self.host_addr is None:
            return ["127.0.0.1", "::1"]
        if self.host_addr == "":
            return ["0.0.0.0", "::"]
        return [self.host_addr]

    def to_json(self) -> dict:
        return {"proto": self.proto, "host_addr": self.host_addr, "host_port": self.host_port,
                "guest_addr": str(self.guest_addr) if self.guest_addr is not None else None,
                "guest_port": self.guest_port, "path": self.path}

    @classmethod
    def from_json(cls, d: dict) -> "PortSpec":
        if not isinstance(d, dict):
            raise PortError("a port is an object with proto, host_addr, host_port, guest_addr, guest_port")
        unknown = set(d) - {"proto", "host_addr", "host_port", "guest_addr", "guest_port", "path"}
        if unknown:
            raise PortError(f"unknown field(s) {', '.join(sorted(unknown))}")
        for key in ("host_port", "guest_port"):
            if key in d and (isinstance(d[key], bool) or not isinstance(d[key], int)):
                raise PortError(f"{key} must be an integer, not {d[key]!r}")
        for key in ("proto", "host_addr", "guest_addr", "path"):
            if d.get(key) is not None and not isinstance(d[key], str):
                raise PortError(f"{key} must be a string, not {d[key]!r}")
        return cls(proto=d.get("proto") or "tcp", host_addr=d.get("host_addr"), host_port=d.get("host_port", 0),
                   guest_addr=d.get("guest_addr") or None, guest_port=d.get("guest_port", 0),
                   path=d.get("path") or None)


def _split_colons(text: str) -> list[str]:
    """Split on colons, keeping [IPv6] literals whole."""
    parts, cur, depth = [], "", 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == ":" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _port(text: str, what: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise PortError(f"{what} {text!r} is not a number") from None
    if not 0 <= n < 65536:
        raise PortError(f"{what} {n} is not in 0..65535")
    return n


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
        return True
    except ValueError:
        return text == "localhost"


def parse_publish(text: str, proto: str = "tcp") -> PortSpec:
    """``[HOSTADDR:]HOSTPORT:GUESTADDR:GUESTPORT`` (also ``HOSTADDR:HOSTPORT:GUESTPORT``,
    ``HOSTPORT:GUESTPORT`` for the default guest, and ``/PATH:GUESTADDR:GUESTPORT`` for a unix
    socket), as ``fastnet expose`` and ``-p`` take it. HOSTADDR may be an [IPv6] literal."""
    text = text.strip()
    if text.startswith(("/", "./", "../", "~")):
        path, sep, gport = text.rpartition(":")
        if not sep:
            raise PortError(f"cannot read {text!r}: expected /PATH:GUESTADDR:GUESTPORT")
        head, sep2, addr = path.rpartition(":")
        if sep2 and _is_ip(addr):
            return PortSpec(proto="unix", path=os.path.expanduser(head), guest_addr=addr,
                            guest_port=_port(gport, "guest port"))
        return PortSpec(proto="unix", path=os.path.expanduser(path), guest_port=_port(gport, "guest port"))
    parts = _split_colons(text)
    host_addr = guest_addr = None
    if len(parts) == 4:
        host_addr, hport, guest_addr, gport = parts
    elif len(parts) == 3:
        if _is_ip(parts[1]):
            hport, guest_addr, gport = parts
        elif _is_ip(parts[0]):
            host_addr, hport, gport = parts
        else:
            raise PortError(f"cannot read {text!r}: expected [HOSTADDR:]HOSTPORT:GUESTADDR:GUESTPORT")
    elif len(parts) == 2:
        hport, gport = parts
    else:
        raise PortError(f"cannot read {text!r}: expected [HOSTADDR:]HOSTPORT:GUESTADDR:GUESTPORT")
    if host_addr is not None:
        host_addr = host_addr.strip("[]")
    return PortSpec(proto=proto, host_addr=host_addr, host_port=_port(hport, "host port"),
                    guest_addr=guest_addr or None, guest_port=_port(gport, "guest port"))


def parse_host_side(text: str, proto: str = "tcp") -> tuple[str, str | None, int, str | None]:
    """The host side of a forward, to find it again: ``[HOSTADDR:]HOSTPORT``, a whole publish
    spec, or a unix socket path (with or without its guest part). Returns (proto, host_addr or
    None for any, host_port, path)."""
    text = text.strip()
    if text.startswith(("/", "./", "../", "~")):
        try:
            return "unix", None, 0, parse_publish(text).path
        except PortError:
            return "unix", None, 0, os.path.expanduser(text)
    parts = _split_colons(text)
    if len(parts) == 1:
        return proto, None, _port(parts[0], "host port"), None
    if len(parts) == 2 and _is_ip(parts[0]):
        return proto, normalize_host_addr(parts[0]), _port(parts[1], "host port"), None
    spec = parse_publish(text, proto)
    return proto, spec.host_addr, spec.host_port, None


@dataclass
class _UdpClient:
    port: object                     # the network Port
    flow: int
    src: tuple                       # (presented ip, presented port)
    guest_ip: IPv4Address


@dataclass
class Published:
    """A live forward."""

    id: int
    spec: PortSpec
    host_port: int                   # the port bound (the spec's, or the one picked for 0)
    origin: str = "api"
    requested_port: int = 0          # what was asked (0: any), kept in the state file
    local: str = ""                  # gvproxy's "local" and "remote" for this forward
    remote: str = ""
    created: float = field(default_factory=time.time)
    listeners: list = field(default_factory=list)       # sockets
    addresses: list = field(default_factory=list)       # "ip:port" bound, or the path
    accepted: int = 0
    refused: int = 0
    datagrams: int = 0
    tcp_flows: dict = field(default_factory=dict)       # flow id -> Port
    udp_clients: dict = field(default_factory=dict)     # client address -> _UdpClient
    pending: dict = field(default_factory=dict)         # client address -> datagrams awaiting ARP
    inode: int | None = None                            # unix: the socket file we bound
    closed: bool = False

    @property
    def proto(self) -> str:
        return self.spec.proto

    def live_tcp(self) -> dict:
        """Flows still open (ids are generation-tagged, so a closed one never comes back)."""
        for fid, port in list(self.tcp_flows.items()):
            if port.engine.flow(fid) is None:
                del self.tcp_flows[fid]
        return self.tcp_flows

    def as_dict(self) -> dict:
        s = self.spec
        return {
            "id": self.id, "proto": s.proto,
            "host_addr": None if s.proto == "unix" else s.host_addr if s.host_addr is not None else "127.0.0.1",
            "host_port": self.host_port, "requested_port": self.requested_port,
            "guest_addr": str(s.guest_addr) if s.guest_addr is not None else None,
            "guest_port": s.guest_port, "path": s.path, "listening": list(self.addresses),
            "local": self.local, "remote": self.remote, "origin": self.origin,
            "created": round(self.created, 3),
            "connections": {"accepted": self.accepted, "refused": self.refused,
                            "active": len(self.live_tcp()) if s.proto != "udp" else len(self.udp_clients)},
            **({"datagrams": self.datagrams} if s.proto == "udp" else {}),
        }


class PublishedPorts:
    """The published ports of one VirtualNetwork.

    ``default_guest``: the guest address used when a forward names none (a callable returning
    it, an address, or None: the only guest's DHCP/vmnet lease). ``state_file``: where the
    forwards are kept so that ``restore()`` brings them back after a restart.
    """

    def __init__(self, network, *, state_file: str | None = None,
                 default_guest: IPv4Address | str | Callable[[], IPv4Address | None] | None = None,
                 arp_timeout: float = 1.0, sweep_interval: float = 15.0):
        self.network = network
        self.loop = network.loop
        self.config = network.config
        self.state_file = state_file
        self._default_guest = default_guest
        self.arp_timeout = arp_timeout
        self.sweep_interval = sweep_interval
        self.forwards: dict[int, Published] = {}
        self._next_id = 1
        self._resolving: dict[int, dict] = {}           # id(Port) -> ARP resolution in progress
        self._presented: dict[str, bytes] = {}          # client address -> source shown to the guest
        self._synthetic = random.Random().randrange(*SYNTHETIC_PORTS)
        self._sweeper = None
        self.closed = False

    # -- adding and removing ------------------------------------------------------------------

    def add(self, spec: PortSpec, *, origin: str = "api", local: str | None = None, remote: str | None = None,
            requested_port: int | None = None, save: bool = True) -> Published:
        """Publish spec; raises PortError. An identical forward that already exists is returned
        as it is (so scripts can expose idempotently); one that differs only in its target is
        refused as "port is already allocated"."""
        if self.closed:
            raise PortError("the network is shutting down")
        same = self.find_spec(spec)
        if same is not None:
            if (same.spec.guest_addr, same.spec.guest_port) == (spec.guest_addr, spec.guest_port):
                return same
            raise PortError(f"cannot publish {spec.proto} {self._where(spec)}: port is already allocated "
                            f"(forward {same.id} to {same.remote})", "in_use")
        fwd = Published(id=self._next_id, spec=spec, host_port=spec.host_port, origin=origin,
                        requested_port=spec.host_port if requested_port is None else requested_port)
        if spec.proto == "unix":
            self._listen_unix(fwd)
        else:
            self._listen_ip(fwd)
        self._next_id += 1
        fwd.local = local if local is not None else self._local_label(fwd)
        fwd.remote = remote if remote is not None else self._remote_label(spec)
        for sock in fwd.listeners:
            handler = self._on_accept if spec.proto != "udp" else self._on_datagram
            self.loop.add_reader(sock.fileno(), handler, fwd, sock)
        self.forwards[fwd.id] = fwd
        self._ensure_sweeper()
        log.info("published %s %s -> %s (forward %d)", spec.proto, ", ".join(fwd.addresses), fwd.remote, fwd.id)
        if save:
            self.save()
        return fwd

    def remove(self, fid: int, *, close_connections: bool = False) -> Published:
        """Stop publishing forward fid: its listeners close at once; its live connections and
        UDP flows are closed too when asked (a TCP connection gets RST both ways), else they
        run to their end."""
        fwd = self.forwards.pop(fid, None)
        if fwd is None:
            raise PortError(f"no forward with id {fid}", "not_found")
        self._close_listeners(fwd)
        if close_connections:
            self._close_connections(fwd)
        log.info("unpublished %s %s (forward %d)", fwd.proto, ", ".join(fwd.addresses), fwd.id)
        self.save()
        return fwd

    def find(self, proto: str, host_addr: str | None, host_port: int, path: str | None = None) -> Published | None:
        """The forward listening on (proto, host_addr, host_port), or on path for unix."""
        for fwd in self.forwards.values():
            s = fwd.spec
            if s.proto != proto:
                continue
            if proto == "unix":
                if path is not None and os.path.abspath(s.path) == os.path.abspath(path):
                    return fwd
                continue
            if fwd.host_port != host_port:
                continue
            if host_addr is None or s.host_addr == host_addr or host_addr in s.binds():
                return fwd
        return None

    def find_spec(self, spec: PortSpec) -> Published | None:
        if spec.proto == "unix":
            return self.find("unix", None, 0, spec.path)
        if spec.host_port == 0:
            return None
        for fwd in self.forwards.values():
            if fwd.spec.proto == spec.proto and fwd.host_port == spec.host_port and \
                    set(fwd.spec.binds()) & set(spec.binds()):
                return fwd
        return None

    def list(self) -> list[Published]:
        return [self.forwards[k] for k in sorted(self.forwards)]

    def close(self, *, close_connections: bool = True) -> None:
        """Close every listener (and, by default, every connection they carried)."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for fwd in list(self.forwards.values()):
            self._close_listeners(fwd)
            if close_connections:
                self._close_connections(fwd)
        self.forwards.clear()
        for entry in self._resolving.values():
            if entry.get("timer") is not None:
                entry["timer"].cancel()
        self._resolving.clear()

    # -- the state file ------------------------------------------------------------------------

    def save(self) -> None:
        """Write the forwards to the state file (atomically: a crash leaves the old one)."""
        if not self.state_file:
            return
        entries = []
        for fwd in self.list():
            d = fwd.spec.to_json()
            # A port picked by the kernel is kept, so clients find it at the same number again.
            d["host_port"] = fwd.host_port
            d["requested_port"] = fwd.requested_port
            d["local"], d["remote"], d["origin"] = fwd.local, fwd.remote, fwd.origin
            entries.append(d)
        tmp = f"{self.state_file}.tmp{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.state_file)), exist_ok=True)
            with open(tmp, "w") as f:
                json.dump({"version": 1, "ports": entries}, f, indent=1)
                f.write("\n")
            os.replace(tmp, self.state_file)
        except OSError as e:
            log.warning("cannot write the ports state file %s: %s", self.state_file, e.strerror or e)
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def restore(self) -> list[str]:
        """Publish again what the state file lists; returns the problems (one line each). A
        port the kernel had picked is asked for again, and if it is taken meanwhile another is
        picked."""
        if not self.state_file or not os.path.exists(self.state_file):
            return []
        problems = []
        try:
            with open(self.state_file) as f:
                data = json.load(f)
            entries = data["ports"] if isinstance(data, dict) else None
            if not isinstance(entries, list):
                raise ValueError("no \"ports\" list")
        except (OSError, ValueError, KeyError) as e:
            return [f"cannot read the ports state file {self.state_file}: {e}"]
        for d in entries:
            try:
                if not isinstance(d, dict):
                    raise PortError("not an object")
                d = dict(d)
                extra = {k: d.pop(k, None) for k in ("requested_port", "local", "remote", "origin")}
                spec = PortSpec.from_json(d)
                requested = extra["requested_port"] if isinstance(extra["requested_port"], int) else spec.host_port
                labels = {"origin": extra["origin"] or "api", "local": extra["local"], "remote": extra["remote"],
                          "requested_port": requested, "save": False}
                try:
                    self.add(spec, **labels)
                except PortError as e:
                    if e.kind != "in_use" or requested != 0 or spec.host_port == 0:
                        raise
                    spec.host_port = 0
                    labels["local"] = None
                    fwd = self.add(spec, **labels)
                    problems.append(f"port {d.get('host_port')} was taken: {spec.proto} forward {fwd.id} "
                                    f"now listens on {', '.join(fwd.addresses)}")
            except PortError as e:
                problems.append(f"cannot restore {d}: {e}")
        self.save()
        return problems

    # -- listeners -----------------------------------------------------------------------------

    def _where(self, spec: PortSpec) -> str:
        if spec.proto == "unix":
            return spec.path
        return format_hostport(spec.binds()[0], spec.host_port)

    def _local_label(self, fwd: Published) -> str:
        s = fwd.spec
        if s.proto == "unix":
            return s.path
        if s.host_addr == "":
            return f":{fwd.host_port}"
        return format_hostport(s.host_addr or "127.0.0.1", fwd.host_port)

    def _remote_label(self, spec: PortSpec) -> str:
        guest = str(spec.guest_addr) if spec.guest_addr is not None else ""
        return f"tcp://{guest}:{spec.guest_port}" if spec.proto == "unix" else f"{guest}:{spec.guest_port}"

    def _listen_unix(self, fwd: Published) -> None:
        path = fwd.spec.path
        try:
            sock = bind_unix(path, socket.SOCK_STREAM, listen=socket.SOMAXCONN)
        except SocketPathInUse:
            raise PortError(f"cannot publish unix {path}: the socket path is in use", "in_use") from None
        except FileExistsError:
            raise PortError(f"cannot publish unix {path}: it exists and is not a socket", "exists") from None
        except OSError as e:
            raise _bind_error(e, "unix", path) from None
        fwd.listeners.append(sock)
        fwd.addresses.append(path)
        fwd.inode = bound_inode(path)

    def _listen_ip(self, fwd: Published) -> None:
        spec = fwd.spec
        binds = spec.binds()
        # With port 0 the first address picks the port; the others must get the same one, so
        # a few tries are made when another program holds it on the second address.
        for attempt in range(8 if spec.host_port == 0 and len(binds) > 1 else 1):
            socks = []
            try:
                first = self._bind_one(spec.proto, binds[0], spec.host_port)
            except OSError as e:
                raise _bind_error(e, spec.proto, format_hostport(binds[0], spec.host_port)) from None
            socks.append(first)
            port = first.getsockname()[1]
            retry = False
            for addr in binds[1:]:
                try:
                    socks.append(self._bind_one(spec.proto, addr, port))
                except OSError as e:
                    if e.errno == errno.EADDRINUSE and spec.host_port == 0:
                        retry = True
                        break
                    # [::1] (or [::]) is a convenience beside the address asked for: a host
                    # without IPv6, or another program on it, does not stop the forward.
                    log.info("%s %s not published: %s", spec.proto, format_hostport(addr, port), e.strerror)
            if retry and attempt < 7:
                for s in socks:
                    s.close()
                continue
            fwd.listeners.extend(socks)
            fwd.host_port = port
            fwd.addresses.extend(format_hostport(s.getsockname()[0], port) for s in socks)
            return

    def _bind_one(self, proto: str, addr: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(family, kind)
        try:
            if family == socket.AF_INET6:
                # [::] beside 0.0.0.0: each family has its own socket.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if proto == "tcp":
                # A restarted fastnet must get its port back while old connections linger in
                # TIME_WAIT; two TCP listeners on one port are still refused.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((addr, port) if family == socket.AF_INET else (addr, port, 0, 0))
            sock.setblocking(False)
            if proto == "tcp":
                sock.listen(socket.SOMAXCONN)
            else:
                # Only now: bound without SO_REUSEADDR, the bind failed if anyone held the port.
                # Set afterwards, it lets each client's connected socket share the address.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET and addr in ("0.0.0.0", ""):
                    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                elif family == socket.AF_INET6 and addr == "::":
                    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        except BaseException:
            sock.close()
            raise
        return sock

    def _close_listeners(self, fwd: Published) -> None:
        fwd.closed = True
        for sock in fwd.listeners:
            try:
                self.loop.remove_reader(sock.fileno())
            except (ValueError, OSError):
                pass
            sock.close()
        fwd.listeners.clear()
        if fwd.spec.proto == "unix":
            unlink_if_ours(fwd.spec.path, fwd.inode)

    def _close_connections(self, fwd: Published) -> None:
        now = now_us()
        for fid, port in list(fwd.live_tcp().items()):
            try:
                port.engine.close_flow(fid, True, now)
            except ConnectionStateError:
                pass
            port.forwarder.wake()
        fwd.tcp_flows.clear()
        for client in list(fwd.udp_clients.values()):
            client.port.stack.dgram_close(client.flow)
            client.port.forwarder.wake()
        fwd.udp_clients.clear()

    # -- which guest, and what it sees ----------------------------------------------------------

    def default_guest(self) -> IPv4Address | None:
        d = self._default_guest
        if callable(d):
            return d()
        if d is not None:
            return IPv4Address(str(d))
        ports = self.network.ports
        if len(ports) == 1 and ports[0].lease is not None:
            return ports[0].lease.ip
        leases = [p.lease for p in ports if p.lease is not None]
        return leases[0].ip if len(leases) == 1 else None

    def _target(self, fwd: Published):
        """(Port, guest ip) for a new client, or (None, reason)."""
        guest = fwd.spec.guest_addr or self.default_guest()
        if guest is None:
            return None, "no guest address (give one, or attach exactly one guest with a lease)"
        port = self.network.port_for_ip(guest)
        if port is None or port.forwarder.closed:
            return None, f"no guest {guest} is attached"
        return port, guest

    def _present(self, family: int, addr) -> tuple[bytes, int | None]:
        """The source the guest sees for a client (packed IPv4, port): its own address when it
        is a remote IPv4 host, else the host alias (the gateway when there is none), with the
        client's port. Once per accepted client: the answer per address string is cached."""
        if family not in (socket.AF_INET, socket.AF_INET6) or not addr:
            return self._alias().packed, None
        host = addr[0]
        packed = self._presented.get(host)
        if packed is None:
            cfg = self.config
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                ip = None
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if isinstance(ip, IPv4Address) and not (ip.is_loopback or ip.is_unspecified or ip.is_multicast
                                                     or ip in cfg.subnet):
                packed = ip.packed
            else:
                packed = self._alias().packed
            if len(self._presented) >= 4096:
                self._presented.clear()
            self._presented[host] = packed
        return packed, addr[1]

    def _alias(self) -> IPv4Address:
        cfg = self.config
        return cfg.host_alias if cfg.host_alias is not None else cfg.gateway

    def _next_synthetic(self) -> int:
        lo, hi = SYNTHETIC_PORTS
        self._synthetic = lo + (self._synthetic + 1 - lo) % (hi - lo)
        return self._synthetic

    # -- guest MAC: known from the lease or the guest's frames, else asked for by ARP -----------

    def _with_mac(self, port, guest_ip: IPv4Address, callback: Callable) -> None:
        mac = port.guest_mac
        if mac is not None:
            callback(mac)
            return
        key = id(port)
        entry = self._resolving.get(key)
        if entry is None:
            entry = {"port": port, "ip": guest_ip, "waiters": [], "deadline": time.monotonic() + self.arp_timeout,
                     "next_request": 0.0, "timer": None}
            self._resolving[key] = entry
            self.loop.call_soon(self._arp_tick, key)
        entry["waiters"].append(callback)

    def _arp_tick(self, key: int) -> None:
        entry = self._resolving.get(key)
        if entry is None:
            return
        port = entry["port"]
        mac = port.guest_mac
        now = time.monotonic()
        if mac is not None or now >= entry["deadline"] or port.forwarder.closed or self.closed:
            del self._resolving[key]
            if mac is None:
                log.info("guest %s did not answer ARP within %.1f s", entry["ip"], self.arp_timeout)
            for cb in entry["waiters"]:
                cb(mac)
            return
        if now >= entry["next_request"]:
            entry["next_request"] = now + 0.25
            cfg = self.config
            frame = wire.build_frame(
                wire.EthernetFields(dst=b"\xff" * 6, src=cfg.gateway_mac, ethertype=wire.ETHERTYPE_ARP),
                arp=wire.ArpFields(oper=1, sha=cfg.gateway_mac, spa=cfg.gateway, tha=b"\x00" * 6,
                                   tpa=entry["ip"]))
            port.link.send_frame(frame)
            port.forwarder.wake()
        entry["timer"] = self.loop.call_later(0.01, self._arp_tick, key)

    # -- TCP (and unix) clients ------------------------------------------------------------------

    def _on_accept(self, fwd: Published, lsock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # EMFILE and the like: pause this listener instead of spinning on it.
                log.warning("%s forward %d: accept failed: %s", fwd.proto, fwd.id, e.strerror or e)
                self.loop.remove_reader(lsock.fileno())
                self.loop.call_later(0.2, self._resume, fwd, lsock)
                return
            self._client(fwd, sock, lsock.family, addr)

    def _resume(self, fwd: Published, lsock: socket.socket) -> None:
        if not fwd.closed and lsock in fwd.listeners:
            self.loop.add_reader(lsock.fileno(), self._on_accept, fwd, lsock)

    def _client(self, fwd: Published, sock: socket.socket, family: int, addr) -> None:
        sock.setblocking(False)
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        port, guest = self._target(fwd)
        if port is None:
            log.info("%s forward %d: client refused: %s", fwd.proto, fwd.id, guest)
            self._reset(fwd, sock)
            return
        src_ip, src_port = self._present(family, addr)
        mac = port.guest_mac
        if mac is not None:
            self._open_tcp(fwd, port, guest, mac, sock, src_ip, src_port)
            return

        def go(mac):
            if mac is None or fwd.closed or port.forwarder.closed:
                self._reset(fwd, sock)
                return
            self._open_tcp(fwd, port, guest, mac, sock, src_ip, src_port)

        self._with_mac(port, guest, go)

    def _open_tcp(self, fwd, port, guest, mac, sock, src_ip, src_port) -> None:
        # The engine closes the descriptor it is given when the open fails (the 4-tuple is in
        # use: a stale flow from the same client port, or a synthetic port taken), so it gets a
        # duplicate and the client's socket stays ours until a try succeeds.
        for attempt in range(8):
            sport = src_port if (src_port and attempt == 0) else self._next_synthetic()
            try:
                flow = port.forwarder.open_tcp(mac, guest.packed, fwd.spec.guest_port, src_ip, sport,
                                               os.dup(sock.fileno()))
            except ConnectionStateError:
                continue
            except OSError as e:  # no descriptor for the duplicate (EMFILE)
                log.warning("%s forward %d: %s", fwd.proto, fwd.id, e.strerror)
                self._reset(fwd, sock)
                return
            sock.close()
            fwd.accepted += 1
            fwd.tcp_flows[flow] = port
            return
        log.warning("%s forward %d: no free 4-tuple towards %s:%d", fwd.proto, fwd.id, guest, fwd.spec.guest_port)
        self._reset(fwd, sock)

    def _reset(self, fwd: Published, sock: socket.socket) -> None:
        """Close a client with RST (an unix client just sees the connection end)."""
        fwd.refused += 1
        try:
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()

    # -- UDP clients ----------------------------------------------------------------------------

    def _on_datagram(self, fwd: Published, lsock: socket.socket) -> None:
        bound = lsock.getsockname()[0]  # once per wake-up; a wildcard bind learns each datagram's own
        pktinfo = bound in ("0.0.0.0", "::")
        for _ in range(DATAGRAM_BATCH):
            try:
                data, anc, _flags, addr = lsock.recvmsg(65535, socket.CMSG_SPACE(40) if pktinfo else 0)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # an ICMP error queued on the socket: nothing to do with it
                log.debug("udp forward %d: %s", fwd.id, e)
                continue
            local = bound
            for level, kind, value in anc:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
                    local = socket.inet_ntop(socket.AF_INET, value[8:12])   # ipi_addr
                elif level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(value) >= 16:
                    local = socket.inet_ntop(socket.AF_INET6, value[:16])
            fwd.datagrams += 1
            self._udp_datagram(fwd, lsock, local, addr, data)

    def _udp_datagram(self, fwd: Published, lsock: socket.socket, local: str, addr, data: bytes) -> None:
        key = tuple(addr[:2])
        client = fwd.udp_clients.get(key)
        if client is not None and not client.port.forwarder.closed:
            # Either the datagram was queued here before the client's own socket existed, or
            # the flow ended at its idle timeout: a new flow tells the two apart (it cannot be
            # opened while the old one lives).
            self._open_udp(fwd, lsock, local, addr, data, client.port, client.guest_ip, client.src, reuse=client)
            return
        port, guest = self._target(fwd)
        if port is None:
            log.info("udp forward %d: datagram dropped: %s", fwd.id, guest)
            return
        pending = fwd.pending
        if key in pending:
            if len(pending[key]) < PENDING_DATAGRAMS:
                pending[key].append(data)
            return
        pending[key] = [data]
        src = self._present(lsock.family, addr)

        def go(mac):
            datagrams = pending.pop(key, [])
            if mac is None or fwd.closed or port.forwarder.closed or not datagrams:
                return
            self._open_udp(fwd, lsock, local, addr, datagrams[0], port, guest, src)
            c = fwd.udp_clients.get(key)
            for d in datagrams[1:]:
                if c is not None:
                    port.forwarder.send_udp(mac, c.src[0], c.src[1], guest, fwd.spec.guest_port, d)

        self._with_mac(port, guest, go)

    def _open_udp(self, fwd, lsock, local, addr, data, port, guest, src, reuse: _UdpClient | None = None) -> None:
        mac = port.guest_mac
        if mac is None:
            return
        key = tuple(addr[:2])
        gport = fwd.spec.guest_port
        try:
            sock = socket.socket(lsock.family, socket.SOCK_DGRAM)
        except OSError as e:
            log.warning("udp forward %d: no socket for a client: %s", fwd.id, e.strerror)
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if lsock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # Bound to the address the client wrote to, so replies come from it even when the
            # forward listens on every address.
            sock.bind((local, fwd.host_port) if lsock.family == socket.AF_INET else (local, fwd.host_port, 0, 0))
            sock.connect(addr)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            log.warning("udp forward %d: cannot make a socket for %s: %s", fwd.id, addr, e.strerror)
            return
        src_ip, src_port = src
        for attempt in range(8):
            sport = src_port if (src_port and attempt == 0) else self._next_synthetic()
            try:
                flow = port.forwarder.open_udp(mac, guest, gport, src_ip, sport, os.dup(sock.fileno()))
            except OSError as e:  # no descriptor for the duplicate (EMFILE)
                log.warning("udp forward %d: %s", fwd.id, e.strerror)
                sock.close()
                return
            except ValueError:
                if reuse is not None:
                    # The client's flow is alive: this datagram was queued here before its
                    # socket existed.
                    sock.close()
                    port.forwarder.send_udp(mac, reuse.src[0], reuse.src[1], guest, gport, data)
                    return
                continue
            sock.close()
            fwd.udp_clients[key] = _UdpClient(port=port, flow=flow, src=(src_ip, sport), guest_ip=guest)
            if reuse is None:
                fwd.accepted += 1
            port.forwarder.send_udp(mac, src_ip, sport, guest, gport, data)
            return
        sock.close()
        log.warning("udp forward %d: no free 4-tuple towards %s:%d", fwd.id, guest, gport)

    # -- housekeeping ----------------------------------------------------------------------------

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None and not self.closed:
            self._sweeper = self.loop.call_later(self.sweep_interval, self._sweep)

    def _sweep(self) -> None:
        """Forget closed TCP flows and UDP clients whose flow ended (idle timeout)."""
        self._sweeper = None
        live: dict[int, set] = {}
        for fwd in self.forwards.values():
            fwd.live_tcp()
            for key, c in list(fwd.udp_clients.items()):
                ids = live.get(id(c.port))
                if ids is None:
                    ids = live[id(c.port)] = {f["flow"] for f in c.port.stack.dgram_flows()} \
                        if not c.port.forwarder.closed else set()
                if c.flow not in ids:
                    del fwd.udp_clients[key]
        if self.forwards:
            self._ensure_sweeper()

    def flow_owners(self) -> dict[tuple, int]:
        """(port name, proto, flow id) -> forward id, for the flow table."""
        out = {}
        for fwd in self.forwards.values():
            for fid, port in fwd.live_tcp().items():
                out[(port.name, "tcp", fid)] = fwd.id
            for c in fwd.udp_clients.values():
                out[(c.port.name, "udp", c.flow)] = fwd.id
        return out

