"""Command-line plumbing shared by the daemon commands: network options, config merging,
fault specs, logging, and running the event loop until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import sys

from fastnet.errors import ConfigError
from fastnet.services.config import NetworkConfig, load_toml, network_from_dict, parse_mac


def add_network_options(p) -> None:
    g = p.add_argument_group("virtual network (defaults follow vpnkit; a --config file can set them all)")
    g.add_argument("--config", metavar="FILE", help="TOML file with [network] settings and [[lease]] entries")
    g.add_argument("--mtu", type=int, help="link MTU (default 1500)")
    g.add_argument("--subnet", help="virtual subnet (default 192.168.65.0/24)")
    g.add_argument("--gateway-ip", help="gateway and DNS address (default 192.168.65.1)")
    g.add_argument("--gateway-mac", help="gateway MAC (default f6:16:36:bc:f9:c6)")
    g.add_argument("--host-ip", help="host alias reaching the host's 127.0.0.1 (default 192.168.65.2)")
    g.add_argument("--first-ip", help="first guest address (default 192.168.65.3)")
    g.add_argument("--last-ip", help="last guest address (default 192.168.65.254)")
    g.add_argument("--disable-host-loopback", action="store_true",
                   help="the host alias cannot reach the host's loopback")
    g.add_argument("--outbound-addr", metavar="ADDR", help="bind host sockets to this local address")
    g.add_argument("--domain", help="DNS domain given to guests by DHCP")
    g.add_argument("--search", action="append", metavar="DOMAIN", help="DNS search domain (repeatable)")
    d = p.add_argument_group("debugging")
    d.add_argument("--pcap", metavar="FILE", help="record every frame of each link to a pcap file")
    d.add_argument("--faults", metavar="SPEC",
                   help="inject faults on links, both directions: e.g. drop=0.01,reorder=0.05,duplicate=0.01,"
                        "corrupt=0.001,delay=0.001,seed=1 (tests and debugging only)")
    d.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")


def ipv4_flag(value: str | None, name: str):
    """The IPv4 address given to --name, or None; a ConfigError naming the flag otherwise."""
    if value is None:
        return None
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise ConfigError(f"--{name}: not an IPv4 address: {value!r}") from None


def build_config(args, base: NetworkConfig | None = None) -> NetworkConfig:
    """Defaults, then the config file, then flags (flags win)."""
    cfg = base or NetworkConfig()
    if getattr(args, "config", None):
        cfg = network_from_dict(load_toml(args.config), cfg)
    changes = {}
    if args.subnet:
        try:
            subnet = ipaddress.IPv4Network(args.subnet, strict=False)
        except ValueError:
            raise ConfigError(f"--subnet: not an IPv4 network: {args.subnet!r}") from None
        changes["subnet"] = subnet
        # Addresses follow a new subnet unless given: .1 gateway, .2 host alias, .3 first guest.
        base_ip = subnet.network_address
        changes.setdefault("gateway", base_ip + 1)
        changes.setdefault("host_alias", base_ip + 2)
        changes.setdefault("first_guest", base_ip + 3)
        changes.setdefault("last_guest", subnet.broadcast_address - 1)
    for flag, key in (("gateway_ip", "gateway"), ("host_ip", "host_alias"), ("first_ip", "first_guest"),
                      ("last_ip", "last_guest")):
        v = getattr(args, flag, None)
        if v is not None:
            if key == "host_alias" and v in ("0.0.0.0", "none"):
                changes["host_alias"] = None  # vpnkit: --host-ip 0.0.0.0 disables the alias
                continue
            changes[key] = ipv4_flag(v, flag.replace("_", "-"))
    if args.gateway_mac:
        changes["gateway_mac"] = parse_mac(args.gateway_mac)
    if args.mtu is not None:
        changes["mtu"] = args.mtu
    if args.disable_host_loopback:
        changes["host_loopback"] = False
    if args.outbound_addr:
        changes["outbound_address"] = str(ipv4_flag(args.outbound_addr, "outbound-addr"))
    if args.domain:
        changes["domain"] = args.domain
    if args.search:
        changes["search"] = list(args.search)
    return cfg.replace(**changes) if changes else cfg


def parse_faults(spec: str | None) -> tuple[dict, int]:
    if not spec:
        return {}, 1
    out: dict[str, float] = {}
    seed = 1
    names = {"drop", "duplicate", "reorder", "corrupt", "delay"}
    for item in spec.split(","):
        key, sep, value = item.strip().partition("=")
        try:
            if key == "seed":
                seed = int(value)
            elif key in names and sep:
                out[key] = float(value)
            else:
                raise ValueError
        except ValueError:
            raise ConfigError(f"--faults: bad item {item!r} (use drop=, duplicate=, reorder=, corrupt=, delay=, seed=)") from None
    return {"in": out, "out": out}, seed


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="fastnet: %(levelname)s %(name)s: %(message)s")


def run_until_signalled(loop: asyncio.AbstractEventLoop, on_stop) -> None:
    """Run the loop until SIGTERM or SIGINT; on_stop() closes every flow first."""
    stopping = asyncio.Event()

    def stop():
        if not stopping.is_set():
            stopping.set()
            try:
                on_stop()
            finally:
                # Let the last frames (RSTs to the guests) leave before the loop ends.
                loop.call_later(0.05, loop.stop)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    loop.run_forever()
