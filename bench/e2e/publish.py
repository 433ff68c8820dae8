"""fastnet serving one TAP with published TCP ports, driven through the Python API.

This is what ``fastnet serve --api PATH`` plus ``fastnet expose HOSTADDR:HOSTPORT:GUESTADDR:GUESTPORT``
do for a published port: listen on the host, and carry every accepted connection into the guest
with an active open of the TCP engine (``TcpEngine.open``), the guest seeing the host alias as the
peer for loopback clients. compare.py runs it for the published-port tests when the installed
``fastnet`` has no ``expose`` command yet. Per accepted connection it costs one Python call into
the engine (what the real implementation costs too); the data path is the same C path as
``fastnet serve``.

    publish.py --tap NAME --netns PATH --mtu N [--tap-offload]
               --publish 127.0.0.1:5301:192.168.65.3:5201 [--publish ...] [--max-seconds S]

Exits on SIGTERM/SIGINT (every flow reset, as ``fastnet serve`` does) or after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import socket
import sys

from fastnet import _io
from fastnet.aio.forwarder import now_us
from fastnet.services.config import NetworkConfig
from fastnet.services.network import VirtualNetwork

log = logging.getLogger("bench.publish")


def parse_publish(spec: str) -> tuple[str, int, str, int]:
    host, hport, gip, gport = spec.rsplit(":", 3)
    return host, int(hport), gip, int(gport)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tap", required=True)
    p.add_argument("--netns")
    p.add_argument("--mtu", type=int, default=1500)
    p.add_argument("--tap-offload", action="store_true")
    p.add_argument("--publish", action="append", default=[], metavar="HOSTADDR:HOSTPORT:GUESTADDR:GUESTPORT")
    p.add_argument("--max-seconds", type=float, default=3600)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    cfg = NetworkConfig(mtu=a.mtu)
    network = VirtualNetwork(cfg, loop=loop)
    off = a.tap_offload
    fd, ifname = _io.tap_open(a.tap, a.netns, vnet_hdr=off, offload=off)
    port = network.attach(fd, "tap", link_kind=_io.LINK_TAP, framing=10 if off else 0, offload=off, name=ifname)
    counts = {"accepted": 0, "opened": 0, "failed": 0}

    def on_accept(ls: socket.socket, gip: str, gport: int) -> None:
        now = now_us()
        for _ in range(64):  # bounded per wake-up: other readers get their turn
            try:
                c, addr = ls.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                log.warning("accept: %s", e)
                break
            counts["accepted"] += 1
            mac = port.guest_mac
            if mac is None:  # the guest never sent a frame: nowhere to send a SYN
                counts["failed"] += 1
                c.close()
                continue
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = ipaddress.ip_address(addr[0])
            remote = cfg.host_alias if peer.is_loopback else peer
            try:
                port.engine.open(mac, gip, gport, remote, addr[1], c, now)  # takes the socket over
                counts["opened"] += 1
            except Exception as e:  # noqa: BLE001  (4-tuple in use, table full)
                counts["failed"] += 1
                log.warning("open %s -> %s:%d: %s", addr, gip, gport, e)
        port.stack.output(now)
        after = getattr(port.forwarder, "_after", None)  # flow events, timers (the SYN retransmit)
        if after is not None:
            after(now)

    listeners = []
    for spec in a.publish:
        host, hport, gip, gport = parse_publish(spec)
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, hport))
        ls.listen(4096)
        ls.setblocking(False)
        loop.add_reader(ls.fileno(), on_accept, ls, gip, gport)
        listeners.append(ls)
        log.info("published %s:%d -> %s:%d", host, hport, gip, gport)

    stop = loop.stop
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    loop.call_later(a.max_seconds, stop)
    try:
        loop.run_forever()
    finally:
        for ls in listeners:
            loop.remove_reader(ls.fileno())
            ls.close()
        network.shutdown()
        loop.close()
        log.info("exit: %s", counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
