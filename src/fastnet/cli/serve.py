"""``fastnet serve``: the forwarder daemon. Guests attach over TAP devices and listening
sockets; every flow leaves through ordinary host sockets."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from fastnet.aio import tap
from fastnet.cli.common import add_network_options, build_config, parse_faults, run_until_signalled, setup_logging
from fastnet.cli.control import add_control_options, start_control
from fastnet.cli.proxyenv import add_proxy_source_options, proxy_source_from_args
from fastnet.errors import ConfigError
from fastnet.services.network import VirtualNetwork

log = logging.getLogger("fastnet.serve")


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the forwarder: attach guests over TAP devices and sockets")
    g = p.add_argument_group("links (at least one)")
    g.add_argument("--tap", metavar="NAME", help="serve the TAP device NAME (created if missing)")
    g.add_argument("--netns", metavar="PATH", help="network namespace of --tap (e.g. /var/run/netns/NAME or /proc/PID/ns/net)")
    g.add_argument("--tap-offload", action=argparse.BooleanOptionalAction, default=True,
                   help="TAP with virtio-net header and TSO/checksum offload: fewer, larger frames and no "
                        "checksums computed on either side (default on; --no-tap-offload for one plain "
                        "frame per read)")
    add_link_options(g)
    add_network_options(p)
    add_proxy_source_options(p.add_argument_group("HTTP/HTTPS proxy"), serve=True)
    add_control_options(p)
    p.set_defaults(run=run)


def add_link_options(g) -> None:
    """Listener flags; their implementations live in fastnet.aio.listeners / fastnet.aio.vmnet."""
    g.add_argument("--listen-vmnet", metavar="PATH", action="append", default=[],
                   help="HyperKit/vpnkit vmnet protocol on a unix socket (many VMs)")
    g.add_argument("--listen-qemu", metavar="URL", action="append", default=[],
                   help="QEMU -netdev stream/socket: unix:PATH or tcp:HOST:PORT")
    g.add_argument("--listen-vfkit", metavar="PATH", help="vfkit/libkrun unixgram socket")
    g.add_argument("--listen-stdio", action="store_true", help="frames on stdin/stdout (2-byte LE prefix)")


def start_network(args, loop) -> VirtualNetwork:
    cfg = build_config(args)
    faults, seed = parse_faults(args.faults)
    network = VirtualNetwork(cfg, loop=loop, faults=faults, seed=seed if faults else None)
    if args.pcap:
        network.pcap_path = args.pcap
    return network


def attach_tap(network: VirtualNetwork, name: str, netns: str | None, offload: bool):
    def on_attach(fd, info, **kw):
        return network.attach(fd, **tap.LINK_ARGS, name=info["ifname"], info=info, **kw)

    return tap.attach_tap(on_attach, name, netns, offload=offload)


def run(args) -> int:
    setup_logging(args.verbose)
    if not (args.tap or args.listen_vmnet or args.listen_qemu or args.listen_vfkit or args.listen_stdio):
        raise ConfigError("nothing to serve: give --tap, --listen-vmnet, --listen-qemu, --listen-vfkit or --listen-stdio")
    if args.netns and not args.tap:
        raise ConfigError("--netns needs --tap")
    if args.netns and not os.path.exists(args.netns):
        raise ConfigError(f"--netns {args.netns}: no such namespace file")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    network = start_network(args, loop)
    closers = []
    proxy_source = None
    if not args.disable_proxy:
        proxy_source = proxy_source_from_args(args)
        proxy = network.enable_proxy(proxy_source)
        proxy_source.start(loop)
        closers += [proxy_source.close, proxy.close]
    if args.tap:
        attach_tap(network, args.tap, args.netns, args.tap_offload)
    from fastnet.cli import links as _links  # listeners (vmnet, qemu, vfkit, stdio)

    closers += _links.start_listeners(args, network, loop)
    closers += start_control(args, network, loop, proxy_source=proxy_source)[1]

    def stop():
        for close in closers:
            close()
        network.shutdown()

    run_until_signalled(loop, stop)
    loop.close()
    return 0
