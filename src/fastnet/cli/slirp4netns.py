"""``fastnet slirp4netns [OPTION]... PID|PATH|FD [TAPNAME]``: a drop-in for slirp4netns
(reference/slirp-passt.md §1), so rootlesskit, podman and scripts that run slirp4netns can run
fastnet instead (``--slirp4netns-binary`` pointing at a script that execs this).

The command line, defaults and API socket are slirp4netns's: network 10.0.2.0/24 (``--cidr``),
gateway and host loopback 10.0.2.2, DNS 10.0.2.3, recommended guest 10.0.2.100 (what
``--configure`` assigns and ``add_hostfwd`` forwards to by default), MTU 1500 (``--mtu``),
``--ready-fd`` written with "1" once the API socket is bound, ``--exit-fd`` watched for any
event. The TAP is opened inside the target namespace (``--netns-type`` pid, path or tapfd;
``--userns-path``) by a forked child and only its descriptor comes back, as slirp4netns does.

Not provided, and refused rather than silently ignored: ``--enable-sandbox`` and
``--enable-seccomp`` (fastnet does not confine itself; they are absent from --help, so callers
that probe the help text, as rootlesskit and podman do, do not ask for them) and
``--target-type=bess``. IPv6 (``--enable-ipv6``, ``--outbound-addr6``) is accepted with a
warning: fastnet's network is IPv4 only.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import ipaddress
import logging
import os
import signal
import socket
import struct
import sys

from fastnet import __version__, _io
from fastnet.cli.common import setup_logging
from fastnet.errors import ConfigError

log = logging.getLogger("fastnet.slirp4netns")

# The slirp4netns release whose command line and API this follows.
COMPAT_VERSION = "1.3.1"
SIOCGIFADDR = 0x8915


def add_parser(sub) -> None:
    p = sub.add_parser(
        "slirp4netns", allow_abbrev=False,
        help="run as slirp4netns: serve a network namespace's TAP with slirp4netns's command line and API",
        description="User-mode networking for unprivileged network namespaces, with slirp4netns's command line "
                    "and API socket (fastnet's stack underneath). Defaults: network 10.0.2.0/24, gateway 10.0.2.2 "
                    "(also the host's loopback unless --disable-host-loopback), DNS 10.0.2.3, recommended guest "
                    "10.0.2.100.")
    p.add_argument("-c", "--configure", action="store_true",
                   help="bring up the TAP, assign the recommended IP (network+100), netmask and default route, "
                        "and bring up lo")
    p.add_argument("-e", "--exit-fd", type=int, metavar="FD", help="exit when FD sees any event (HUP, data)")
    p.add_argument("-r", "--ready-fd", type=int, metavar="FD",
                   help='write "1" to FD and close it once the network and the API socket are ready')
    p.add_argument("-m", "--mtu", type=int, default=1500, metavar="MTU", help="MTU (default 1500, up to 65520)")
    p.add_argument("--cidr", metavar="CIDR", default="10.0.2.0/24",
                   help="IPv4 network, prefix 1..25 (default 10.0.2.0/24)")
    p.add_argument("--disable-host-loopback", "--no-host-loopback", dest="disable_host_loopback",
                   action="store_true", help="prohibit the guest from reaching the host's 127.0.0.1 through the gateway")
    p.add_argument("-a", "--api-socket", metavar="PATH",
                   help="API socket (add_hostfwd, list_hostfwd, remove_hostfwd; slirp4netns's JSON)")
    p.add_argument("--netns-type", choices=("pid", "path", "tapfd"), default="pid",
                   help="what the first argument is: a PID (default), a network namespace path, or an open TAP fd")
    p.add_argument("--userns-path", metavar="PATH", help="user namespace to join to open the TAP")
    p.add_argument("--disable-dns", action="store_true", help="no DNS service at network+3")
    p.add_argument("--macaddress", metavar="MAC", help="MAC of the TAP (with --configure only)")
    p.add_argument("--outbound-addr", metavar="IPv4|IFNAME", help="bind outbound host sockets to this address")
    # Accepted for command lines written for slirp4netns; see the module docstring.
    p.add_argument("-6", "--enable-ipv6", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--outbound-addr6", help=argparse.SUPPRESS)
    p.add_argument("--enable-sandbox", "--create-sandbox", dest="enable_sandbox", action="store_true",
                   help=argparse.SUPPRESS)
    p.add_argument("--enable-seccomp", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--target-type", choices=("netns", "bess"), default="netns", help=argparse.SUPPRESS)
    p.add_argument("-v", "--version", action="version",
                   version=f"slirp4netns version {COMPAT_VERSION} (fastnet {__version__})\ncommit: fastnet\n"
                           f"libslirp: none (fastnet {__version__})\nSLIRP_CONFIG_VERSION_MAX: 4\nlibseccomp: none")
    p.add_argument("--log-level", choices=("warning", "info", "debug"), default="warning", help=argparse.SUPPRESS)
    p.add_argument("target", metavar="PID|PATH|FD")
    p.add_argument("tapname", metavar="TAPNAME", nargs="?", default="tap0", help="default tap0")
    p.set_defaults(run=run)


def slirp_config(args):
    """The NetworkConfig slirp4netns's flags describe."""
    from fastnet.services.config import DnsConfig, NetworkConfig

    try:
        net = ipaddress.IPv4Network(args.cidr, strict=False)
    except ValueError:
        raise ConfigError(f"--cidr: not an IPv4 network: {args.cidr!r}") from None
    if not 1 <= net.prefixlen <= 25:
        raise ConfigError(f"--cidr: the prefix length must be 1..25 (the guest is network+100), not {net.prefixlen}")
    if not 576 <= args.mtu <= 65520:
        raise ConfigError(f"--mtu: fastnet takes 576..65520, not {args.mtu}")
    base = net.network_address
    gateway = base + 2
    outbound = None
    if args.outbound_addr:
        outbound = outbound_address(args.outbound_addr)
    return NetworkConfig(
        subnet=net, gateway=gateway, host_alias=gateway, host_loopback=not args.disable_host_loopback,
        dns=base + 3, first_guest=base + 15, last_guest=base + 30,
        # libslirp answers ARP with 52:55 followed by the address asked for.
        gateway_mac=bytes([0x52, 0x55]) + gateway.packed, mtu=args.mtu, outbound_address=outbound,
        dns_service=DnsConfig(enabled=not args.disable_dns))


def outbound_address(value: str) -> str:
    """An IPv4 address, or the first IPv4 address of the interface of that name."""
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        pass
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", value.encode()[:15]))
    except OSError as e:
        raise ConfigError(f"--outbound-addr: {value!r} is neither an IPv4 address nor an interface with one "
                          f"({e.strerror})") from None
    finally:
        s.close()
    return socket.inet_ntoa(res[20:24])


def open_tap(args, cfg) -> tuple[int, str]:
    from fastnet.aio.nstap import open_tap_in

    recommended = cfg.subnet.network_address + 100
    configure = None
    if args.configure:
        configure = {"mtu": cfg.mtu, "ip": str(recommended), "prefix": cfg.subnet.prefixlen,
                     "gateway": str(cfg.gateway), "mac": args.macaddress}
    if args.netns_type == "tapfd":
        try:
            fd = int(args.target)
            name = args.tapname
            os.set_blocking(fd, False)
        except (ValueError, OSError) as e:
            raise ConfigError(f"--netns-type=tapfd: {args.target!r} is not an open descriptor ({e})") from None
        if configure is not None:
            raise ConfigError("--configure cannot be used with --netns-type=tapfd (the TAP is already open)")
        return fd, name
    if args.netns_type == "pid":
        try:
            pid = int(args.target)
        except ValueError:
            raise ConfigError(f"--netns-type=pid: {args.target!r} is not a PID") from None
        netns, userns = f"/proc/{pid}/ns/net", args.userns_path or f"/proc/{pid}/ns/user"
    else:
        netns, userns = args.target, args.userns_path
    if not os.path.exists(netns):
        raise ConfigError(f"no network namespace at {netns}")
    return open_tap_in(netns, args.tapname, userns=userns, configure=configure)


def run(args) -> int:
    setup_logging({"warning": 0, "info": 1, "debug": 2}[args.log_level])
    if args.enable_sandbox or args.enable_seccomp:
        raise ConfigError("--enable-sandbox and --enable-seccomp are not supported by fastnet")
    if args.target_type != "netns":
        raise ConfigError("--target-type=bess is not supported by fastnet")
    if args.macaddress and not args.configure:
        raise ConfigError("--macaddress can only be used with --configure")
    if args.macaddress:
        from fastnet.services.config import parse_mac

        parse_mac(args.macaddress)
    if args.enable_ipv6 or args.outbound_addr6:
        print("WARNING: IPv6 is not provided by fastnet: the namespace gets IPv4 only", file=sys.stderr)
    cfg = slirp_config(args)
    # The TAP first: the child that opens it is forked before any thread exists.
    fd, tapname = open_tap(args, cfg)
    print(f"sent tapfd={fd} for {tapname}\nreceived tapfd={fd}", flush=True)

    from fastnet.api.slirp import SlirpApi, SlirpApiServer
    from fastnet.services.network import VirtualNetwork
    from fastnet.services.ports import PublishedPorts

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    network = VirtualNetwork(cfg, loop=loop)
    network.attach(fd, "tap", link_kind=_io.LINK_TAP, name=tapname)
    recommended = cfg.subnet.network_address + 100
    ports = PublishedPorts(network, default_guest=recommended)
    server = None
    if args.api_socket:
        try:
            server = SlirpApiServer(args.api_socket, SlirpApi(ports, recommended), loop=loop).start_sync()
        except OSError as e:
            raise ConfigError(f"--api-socket {args.api_socket}: {e.strerror or e}") from None
    banner(args, cfg, recommended)
    if args.ready_fd is not None:
        try:
            os.write(args.ready_fd, b"1")
            os.close(args.ready_fd)
        except OSError as e:
            raise ConfigError(f"--ready-fd {args.ready_fd}: {e.strerror}") from None

    stopping = []

    def stop(*_):
        if stopping:
            return
        stopping.append(True)
        if server is not None:
            server.close()
        ports.close()
        network.shutdown()
        # Let the last frames (RSTs to the guest) leave before the loop ends.
        loop.call_later(0.05, loop.stop)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    if args.exit_fd is not None:
        try:
            loop.add_reader(args.exit_fd, stop)
        except (OSError, ValueError) as e:
            raise ConfigError(f"--exit-fd {args.exit_fd}: {getattr(e, 'strerror', None) or e}") from None
    # The TAP goes away with its namespace: nothing is left to serve.
    network.on_port_closed = lambda port: stop()
    loop.run_forever()
    loop.close()
    return 0


def banner(args, cfg, recommended) -> None:
    """What slirp4netns prints at start, so logs read the same."""
    lines = [
        "Starting slirp (fastnet)",
        f"* MTU:             {cfg.mtu}",
        f"* Network:         {cfg.subnet.network_address}",
        f"* Netmask:         {cfg.subnet.netmask}",
        f"* Gateway:         {cfg.gateway}",
        f"* DNS:             {cfg.dns_server}",
        f"* Recommended IP:  {recommended}",
    ]
    if args.api_socket:
        lines.append(f"* API Socket:      {args.api_socket}")
    if cfg.host_loopback:
        lines.append(f"WARNING: 127.0.0.1:* on the host is accessible as {cfg.gateway} "
                     "(set --disable-host-loopback to prohibit connecting to 127.0.0.1:*)")
    print("\n".join(lines), flush=True)

