"""``fastnet vpnkit``: vpnkit's command line (reference/vpnkit.md §1.2), so that a program that
spawns vpnkit can spawn fastnet instead — rootlesskit ``--net=vpnkit --vpnkit-binary=SCRIPT``,
where SCRIPT is ``exec fastnet vpnkit "$@"``, or a Docker Desktop-style launcher.

What rootlesskit's vpnkit driver passes (pkg/network/vpnkit): ``--ethernet
STATE_DIR/vpnkit-ethernet.sock --mtu N``, plus ``--host-ip 0.0.0.0`` with
``--disable-host-loopback``. It then connects twice with one UUID (once to learn the address
by DHCP, once to carry the TAP's frames); both get the same address and MAC.

The flags, as vpnkit spells them (unambiguous prefixes are accepted, as cmdliner does):

honoured
    ``--ethernet PATH|fd:N`` (VMs attach with the vmnet protocol on a unix socket fastnet
    listens on, or on an already bound listening socket it inherits), ``--mtu``,
    ``--gateway-ip``, ``--host-ip`` (0.0.0.0: no host-loopback alias at all), ``--lowest-ip``,
    ``--highest-ip`` (the subnet is the smallest prefix holding them and the gateway, as in
    vpnkit; addresses not given follow the gateway's /24), ``--server-macaddr``, ``--domain``,
    ``--dhcp-path FILE`` (``{"searchDomains": [...], "domainName": "..."}``, read at start),
    ``--dns FILE`` (upstream mode: its ``nameserver IP[#PORT]``, ``search`` and ``timeout MS``
    lines; no getaddrinfo fallback), ``--hosts FILE``, ``--host-names``, ``--gateway-names``,
    ``--vm-names`` (comma-separated; without them vpnkit's defaults host.internal,
    gateway.internal and vm.internal answer beside fastnet's Docker names), ``--http FILE``
    (the proxy JSON, watched; without it there is no HTTP proxy, as in vpnkit),
    ``--tcpv4-forwards`` / ``--udpv4-forwards`` (``PORT:IP:PORT,...``: gateway ports forwarded
    to host addresses), ``--debug`` (or ``VPNKIT_DEBUG`` in the environment).
accepted, no effect (tuning that changes nothing a guest can observe here)
    ``--max-connections`` (vpnkit applies it only to ``--port`` forwards), ``--listen-backlog``,
    ``--allowed-bind-addresses`` (vpnkit parses but never enforces it), ``--gc-compact-interval``
    (OCaml's heap), ``--pcap-snaplen`` (only with ``--pcap``), ``--port-max-idle-time`` (fastnet
    never reaps an idle TCP connection, which is what users of vpnkit asked for).
rejected, with the reason (fastnet cannot honour them)
    ``--port``, ``--vsock-path``/``--port-forwards``, ``--introspection``, ``--diagnostics``,
    ``--pcap`` (a live stream on a socket; ``fastnet serve --pcap FILE`` records to a file),
    ``--http-api-path``, ``--gateway-forwards``, ``--forwards``, and ``--ethernet`` URIs other
    than a path or ``fd:N`` (Hyper-V, vsock, hyperkit).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import logging
import os
import socket

from fastnet.aio import vmnet
from fastnet.aio.forwarder import Connect
from fastnet.aio.unixsock import SocketPathInUse
from fastnet.cli.common import ipv4_flag, run_until_signalled, setup_logging
from fastnet.errors import ConfigError
from fastnet.services.config import DEFAULT_GATEWAY_NAMES, DEFAULT_HOST_NAMES, NetworkConfig, parse_mac
from fastnet.services.network import VirtualNetwork

log = logging.getLogger("fastnet.vpnkit")

VPNKIT_HOST_NAMES = ("host.internal",)
VPNKIT_GATEWAY_NAMES = ("gateway.internal",)
VPNKIT_VM_NAMES = ("vm.internal",)
DEFAULT_GATEWAY = ipaddress.IPv4Address("192.168.65.1")

# Flags fastnet cannot honour, and why (the message a user sees).
UNSUPPORTED = {
    "--port": "the 9P port-forwarding filesystem is not implemented",
    "--vsock-path": "host-to-VM connections over hyperkit's vsock are not implemented",
    "--port-forwards": "host-to-VM connections over hyperkit's vsock are not implemented",
    "--introspection": "the 9P introspection filesystem is not implemented",
    "--diagnostics": "the diagnostics tar stream is not implemented",
    "--pcap": "live pcap streams are not implemented (fastnet serve --pcap FILE records to a file)",
    "--http-api-path": "the proxy settings HTTP API is not implemented (use --http FILE, which is watched)",
    "--gateway-forwards": "the gateway-forwards JSON file is not implemented (use --tcpv4-forwards/--udpv4-forwards)",
    "--forwards": "redirecting outbound TCP to unix sockets is not implemented",
}

# Accepted and ignored: they tune vpnkit internals that have no counterpart here.
HARMLESS = ("--max-connections", "--listen-backlog", "--allowed-bind-addresses", "--gc-compact-interval",
            "--pcap-snaplen", "--port-max-idle-time")


class _Unsupported(argparse.Action):
    def __init__(self, option_strings, dest, **kw):
        kw.setdefault("nargs", None)
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        flag = self.option_strings[0]
        parser.error(f"{flag} is not supported by fastnet: {UNSUPPORTED[flag]}")


def _ethernet_arg(value: str) -> str:
    if value.startswith("fd:") and not value[3:].isdigit():
        raise argparse.ArgumentTypeError(f"{value}: fd:N needs a descriptor number")
    if "://" in value or value.startswith("\\\\") or not value:
        raise argparse.ArgumentTypeError(f"{value}: only a unix socket path or fd:N is supported "
                                         "(not Hyper-V, vsock, hyperkit or named-pipe addresses)")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser("vpnkit", help="vpnkit's command line: serve VMs over the vmnet protocol (rootlesskit --net=vpnkit)",
                       description="Accepts vpnkit's flags, so that programs that spawn vpnkit can spawn fastnet. "
                                   "See `pydoc fastnet.cli.vpnkit` for what each flag does here.")
    p.add_argument("--ethernet", metavar="PATH|fd:N", required=True, type=_ethernet_arg,
                   help="unix socket path to listen on for VMs (vmnet protocol), or fd:N, an inherited bound socket")
    g = p.add_argument_group("addressing")
    g.add_argument("--mtu", type=int, default=1500, help="link MTU (default 1500)")
    g.add_argument("--gateway-ip", help="gateway, DNS and DHCP server (default 192.168.65.1)")
    g.add_argument("--host-ip", help="alias of the host's 127.0.0.1 (default gateway's /24 .2; 0.0.0.0 disables it)")
    g.add_argument("--lowest-ip", help="first VM address (default .3)")
    g.add_argument("--highest-ip", help="last VM address (default .254)")
    g.add_argument("--server-macaddr", help="the gateway's MAC (default f6:16:36:bc:f9:c6)")
    g.add_argument("--domain", help="DHCP domain name (default: the --dhcp-path file's, else localdomain)")
    g.add_argument("--dhcp-path", metavar="FILE", help='JSON {"searchDomains": [...], "domainName": "..."}')
    d = p.add_argument_group("DNS")
    d.add_argument("--dns", metavar="FILE", help="upstream nameservers (nameserver IP[#PORT], search, timeout MS lines)")
    d.add_argument("--hosts", metavar="FILE", help="hosts file answered first (default /etc/hosts)")
    d.add_argument("--host-names", metavar="NAMES", help="comma-separated names of the host alias")
    d.add_argument("--gateway-names", metavar="NAMES", help="comma-separated names of the gateway")
    d.add_argument("--vm-names", metavar="NAMES", help="comma-separated names of the first VM")
    h = p.add_argument_group("HTTP proxy and forwards")
    h.add_argument("--http", metavar="FILE", help="proxy settings, vpnkit's JSON (watched)")
    h.add_argument("--tcpv4-forwards", metavar="LIST", help="PORT:IP:PORT,... gateway TCP ports forwarded to the host")
    h.add_argument("--udpv4-forwards", metavar="LIST", help="PORT:IP:PORT,... gateway UDP ports forwarded to the host")
    h.add_argument("--debug", action="store_true", help="debug logging (also VPNKIT_DEBUG)")
    t = p.add_argument_group("accepted for compatibility, no effect")
    for flag in HARMLESS:
        t.add_argument(flag, metavar="V", help=argparse.SUPPRESS)
    u = p.add_argument_group("not supported (rejected)")
    for flag in UNSUPPORTED:
        u.add_argument(flag, action=_Unsupported, metavar="V", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    p.set_defaults(run=run)


# -- the network --------------------------------------------------------------------------------

def _names(flag: str, value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--{flag}: no names in {value!r}")
    return names


def smallest_subnet(addrs) -> ipaddress.IPv4Network:
    """The smallest prefix holding every address (vpnkit's netmask rule), never narrower than /30."""
    lo, hi = int(min(addrs)), int(max(addrs))
    for prefix in range(30, -1, -1):
        net = ipaddress.IPv4Network((lo, prefix), strict=False)
        if hi in range(int(net.network_address), int(net.broadcast_address) + 1):
            return net
    raise AssertionError("unreachable")


def parse_forwards(flag: str, value: str | None) -> dict[int, tuple[str, int]]:
    """``PORT:IP:PORT,...`` → {gateway port: (host address, port)}."""
    out: dict[int, tuple[str, int]] = {}
    if not value:
        return out
    for item in value.split(","):
        parts = item.strip().split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            lport, rport = int(parts[0]), int(parts[2])
            ip = ipaddress.IPv4Address(parts[1])
            if not (0 < lport < 65536 and 0 < rport < 65536):
                raise ValueError
        except ValueError:
            raise ConfigError(f"--{flag}: bad item {item!r} (use PORT:IP:PORT)") from None
        out[lport] = (str(ip), rport)
    return out


def read_dhcp_json(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read() or b"{}")
    except FileNotFoundError:
        return {}   # vpnkit watches the file; a missing one means no settings
    except OSError as e:
        raise ConfigError(f"--dhcp-path {path}: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"--dhcp-path {path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--dhcp-path {path}: expected a JSON object")
    search = data.get("searchDomains", [])
    domain = data.get("domainName")
    if not isinstance(search, list) or not all(isinstance(s, str) for s in search) or \
            (domain is not None and not isinstance(domain, str)):
        raise ConfigError(f"--dhcp-path {path}: searchDomains is a list of strings and domainName a string")
    return {"search": search, "domain": domain}


def read_dns_file(path: str) -> dict:
    """vpnkit's upstream DNS file: what fastnet honours of it, or a ConfigError naming the line
    it cannot (zone and order change which server answers; ignoring them would be wrong)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"--dns {path}: {e.strerror}") from None
    out: dict = {"search": [], "timeout": None}
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()   # not split at "#": "nameserver IP#PORT" names a port
        if not fields or fields[0].startswith(("#", ";")):
            continue
        key = fields[0]
        if key == "nameserver":
            continue  # read (and re-read when the file changes) by the DNS service
        if key == "search":
            out["search"] += fields[1:]
        elif key == "timeout" and len(fields) == 2 and fields[1].isdigit():
            out["timeout"] = min(60.0, max(0.001, int(fields[1]) / 1000))
        elif key == "assume-offline-after":
            continue  # tuning of vpnkit's server health; fastnet retries every server anyway
        else:
            raise ConfigError(f"--dns {path}: line {n}: {key!r} is not supported by fastnet "
                              "(nameserver, search and timeout lines are)")
    return out


def build_network_config(args) -> NetworkConfig:
    gateway = ipv4_flag(args.gateway_ip, "gateway-ip") or DEFAULT_GATEWAY
    base24 = ipaddress.IPv4Network((int(gateway), 24), strict=False).network_address
    no_alias = args.host_ip in ("0.0.0.0", "none")
    host = None if no_alias else (ipv4_flag(args.host_ip, "host-ip") or base24 + 2)
    lowest = ipv4_flag(args.lowest_ip, "lowest-ip") or base24 + 3
    highest = ipv4_flag(args.highest_ip, "highest-ip") or base24 + 254
    if lowest > highest:
        raise ConfigError(f"--lowest-ip {lowest} is above --highest-ip {highest}")
    members = [gateway, lowest, highest] + ([host] if host is not None else [])
    subnet = smallest_subnet(members)
    for name, a in (("gateway-ip", gateway), ("lowest-ip", lowest), ("highest-ip", highest), ("host-ip", host)):
        if a is not None and a in (subnet.network_address, subnet.broadcast_address):
            raise ConfigError(f"--{name} {a} is the network or broadcast address of {subnet}")
    changes: dict = {"subnet": subnet, "gateway": gateway, "host_alias": host, "first_guest": lowest,
                     "last_guest": highest, "mtu": args.mtu}
    if no_alias:
        changes["host_loopback"] = False
    if args.server_macaddr:
        changes["gateway_mac"] = parse_mac(args.server_macaddr)
    dhcp = read_dhcp_json(args.dhcp_path) if args.dhcp_path else {}
    dns_file = read_dns_file(args.dns) if args.dns else {}
    domain = args.domain or dhcp.get("domain")
    if domain:
        changes["domain"] = domain
    search = dhcp.get("search") or dns_file.get("search")
    if search:
        changes["search"] = list(search)
    cfg = NetworkConfig()
    d = cfg.dns_service
    dns_changes: dict = {
        "host_names": _names("host-names", args.host_names) if args.host_names
        else list(DEFAULT_HOST_NAMES) + list(VPNKIT_HOST_NAMES),
        "gateway_names": _names("gateway-names", args.gateway_names) if args.gateway_names
        else list(DEFAULT_GATEWAY_NAMES) + list(VPNKIT_GATEWAY_NAMES),
    }
    vm_names = _names("vm-names", args.vm_names) if args.vm_names else list(VPNKIT_VM_NAMES)
    dns_changes["hosts"] = {**d.hosts, **{n: [str(lowest)] for n in vm_names}}
    if args.dns:
        dns_changes.update(resolv_conf=args.dns, system_fallback=False)
        if dns_file.get("timeout"):
            dns_changes["timeout"] = dns_file["timeout"]
            dns_changes["retry_interval"] = min(d.retry_interval, dns_file["timeout"])
    if args.hosts is not None:
        dns_changes["hosts_file"] = args.hosts or None
    changes["dns_service"] = dataclasses.replace(d, **dns_changes)
    return cfg.replace(**changes)


class GatewayForwards:
    """vpnkit's --tcpv4-forwards/--udpv4-forwards: flows to gateway:PORT go to a host address;
    everything else is the network's own policy."""

    def __init__(self, inner, gateway, tcp: dict, udp: dict):
        self.inner = inner
        self.gateway = gateway
        self.tcp = tcp
        self.udp = udp

    def tcp_target(self, gip, gport, dst, dport):
        if dst == self.gateway and dport in self.tcp:
            return Connect(*self.tcp[dport])
        return self.inner.tcp_target(gip, gport, dst, dport)

    def udp_target(self, gip, gport, dst, dport):
        if dst == self.gateway and dport in self.udp:
            return Connect(*self.udp[dport])
        return self.inner.udp_target(gip, gport, dst, dport)

    def icmp_target(self, gip, dst):
        return self.inner.icmp_target(gip, dst)

    def __getattr__(self, name):   # tcp_services, tcp_interceptors, ... of the NAT policy
        return getattr(self.inner, name)


def ethernet_socket(value: str) -> tuple[str, socket.socket | None]:
    """--ethernet: a path (fastnet binds it) or fd:N (an inherited bound stream socket)."""
    if value.startswith("fd:"):
        try:
            sock = socket.socket(fileno=int(value[3:]))
        except OSError as e:
            raise ConfigError(f"--ethernet {value}: not a socket ({e.strerror})") from None
        if sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise ConfigError(f"--ethernet {value}: not a stream socket")
        return value, sock
    return value, None


def run(args) -> int:
    setup_logging(2 if args.debug or os.environ.get("VPNKIT_DEBUG") else args.verbose)
    for flag in HARMLESS:
        if getattr(args, flag[2:].replace("-", "_")) is not None:
            log.info("%s is accepted for compatibility and has no effect", flag)
    cfg = build_network_config(args)
    tcp_fw = parse_forwards("tcpv4-forwards", args.tcpv4_forwards)
    udp_fw = parse_forwards("udpv4-forwards", args.udpv4_forwards)
    path, given = ethernet_socket(args.ethernet)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    network = VirtualNetwork(cfg, loop=loop)
    closers = []
    if args.http:
        from fastnet.services.proxyconf import ProxyConfigSource

        # vpnkit's proxy settings come from this file alone (Docker Desktop writes the host's).
        source = ProxyConfigSource(file=args.http, environ={}, system=False)
        proxy = network.enable_proxy(source)
        source.start(loop)
        closers += [source.close, proxy.close]
    if tcp_fw or udp_fw:
        network.policy = GatewayForwards(network.policy, cfg.gateway, tcp_fw, udp_fw)

    def allocate(uuid, preferred):  # an AddressError's text is the vmnet Disconnect reason
        return network.pool.allocate(uuid=uuid, preferred=preferred)

    lk = vmnet.LINK_ARGS
    server = vmnet.VmnetServer(path, allocate=allocate, on_attach=lambda fd, **kw: network.attach(fd, **lk, **kw),
                         mtu=cfg.mtu, loop=loop, sock=given)
    try:
        server.start()
    except SocketPathInUse as e:
        raise ConfigError(str(e)) from None
    log.info("vpnkit: VMs attach at %s (gateway %s, host alias %s, MTU %d)", path, cfg.gateway,
             cfg.host_alias or "disabled", cfg.mtu)

    def stop():
        server.close()
        for close in closers:
            close()
        network.shutdown()

    run_until_signalled(loop, stop)
    loop.close()
    return 0
