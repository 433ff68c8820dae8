"""The TCP engine on a TAP device inside a guest namespace, driven by the asyncio forwarder
in a background thread: enough of a network (ARP for the gateway and the host alias, TCP
to host sockets) to put real kernel programs on the other end of the engine."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import sys
import threading
import time

from fastnet import _io, _tcp
from fastnet.aio.forwarder import Connect, Forwarder, Refuse
from fastnet.services.network import RX_RING
from fastnet._tcp import Refusal

GATEWAY = "192.168.65.1"
HOST_ALIAS = "192.168.65.2"
GUEST = "192.168.65.3"


class LoopbackOnly:
    """Tests may reach only the host's loopback (through the host alias) and addresses they
    list; anything else is refused as unreachable."""

    def __init__(self, allowed=()):
        self.allowed = {ipaddress.ip_address(a) for a in allowed}

    def tcp_target(self, gip, gport, dip, dport):
        if str(dip) == HOST_ALIAS:
            return Connect("127.0.0.1", dport)
        if dip in self.allowed:
            return Connect(str(dip), dport)
        return Refuse(Refusal.NET_UNREACHABLE)

    udp_target = tcp_target

    def icmp_target(self, gip, dip):
        return self.tcp_target(gip, 0, dip, 0)


class TapForwarder:
    def __init__(self, ns, *, mtu: int = 1500, offload: bool = False, faults: dict | None = None,
                 policy=None, seed: int = 1, **engine_kw):
        self.ns = ns
        fd, self.ifname = _io.tap_open("tap0", ns.path, vnet_hdr=offload, offload=offload)
        ns.ip("link", "set", "tap0", "mtu", str(mtu), "up")
        ns.ip("addr", "add", f"{GUEST}/24", "dev", "tap0")
        ns.ip("route", "add", "default", "via", GATEWAY)
        big = offload or mtu > 1500
        engine_kw.setdefault("live_clock", True)  # as services/network.py: the forwarder's clock
        engine_kw.setdefault("rx_buf", RX_RING)   # and its receive ring
        self.engine = _tcp.TcpEngine(mss=mtu - 40, gso=offload, tx_seg_max=max(65000, mtu - 40) if offload else mtu - 40,
                                     seed=seed, **engine_kw)
        self.link = _io.Link(_io.LINK_TAP, fd, 10 if offload else 0, max_frame=(65550 if big else mtu + 18) + 16)
        for direction, spec in (faults or {}).items():
            self.link.set_faults(direction, seed=seed + (direction == "out"), **spec)
        self.stack = _io.Stack(self.link, self.engine, arp_ips=[GATEWAY, HOST_ALIAS], gateway=GATEWAY, mtu=mtu)
        self.loop = asyncio.new_event_loop()
        self.forwarder = Forwarder(self.stack, policy or LoopbackOnly(), loop=self.loop)
        self._thread = threading.Thread(target=self._run, name="fastnet-test-forwarder", daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.forwarder.start()
        self.loop.run_forever()

    def __enter__(self):
        self._thread.start()
        return self

    def call(self, fn, *args):
        """Run fn in the forwarder's thread and return its result."""
        fut = asyncio.run_coroutine_threadsafe(self._call(fn, *args), self.loop)
        return fut.result(10)

    async def _call(self, fn, *args):
        return fn(*args)

    def stats(self) -> dict:
        return self.call(lambda: {"stack": self.stack.stats(), "engine": self.engine.stats(),
                                  "link": self.link.stats(), "faults": self.link.fault_stats(),
                                  "flows": self.engine.flows(), "events": dict(self.forwarder.flow_events),
                                  "dgram": self.stack.dgram_stats(), "dgram_flows": self.stack.dgram_flows()})

    def __exit__(self, *exc):
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.forwarder.close)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


# -- a whole VirtualNetwork with its VM link listeners, for the link tests ---------------------

class Confined:
    """The network's own NAT policy, except that nothing leaves for the outside world: tests
    reach the host's loopback (host alias), the gateway's services and each other only."""

    def __init__(self, inner, config):
        self.inner = inner
        self.config = config

    def _outside(self, dst) -> bool:
        return dst not in self.config.subnet

    def tcp_target(self, gip, gport, dip, dport):
        return Refuse(Refusal.NET_UNREACHABLE) if self._outside(dip) else self.inner.tcp_target(gip, gport, dip, dport)

    def udp_target(self, gip, gport, dip, dport):
        return Refuse(Refusal.NET_UNREACHABLE) if self._outside(dip) else self.inner.udp_target(gip, gport, dip, dport)

    def icmp_target(self, gip, dip):
        return Refuse(Refusal.DROP) if self._outside(dip) else self.inner.icmp_target(gip, dip)


def confined_dns(config=None):
    """config with the DNS service kept off this machine's resolver, unless the test named its
    own upstream: no nameservers (an empty resolv.conf), no hosts file, no getaddrinfo fallback.
    Guests then get SERVFAIL for outside names instead of a query leaving through the host."""
    import dataclasses

    from fastnet.services.config import DnsConfig, NetworkConfig

    config = config or NetworkConfig()
    d = config.dns_service
    if d.upstream is None and d.resolv_conf == DnsConfig().resolv_conf:
        d = dataclasses.replace(d, resolv_conf=os.devnull, system_fallback=False,
                                hosts_file=None if d.hosts_file == DnsConfig().hosts_file else d.hosts_file)
        config = config.replace(dns_service=d)
    return config


class NetworkRunner:
    """A VirtualNetwork on an event loop in a background thread; listeners are started on that
    thread and attach each VM link to the network."""

    def __init__(self, config=None, **kw):
        from fastnet.services.network import VirtualNetwork

        self.loop = asyncio.new_event_loop()
        self.net = VirtualNetwork(confined_dns(config), loop=self.loop, **kw)
        self.net.policy = Confined(self.net.policy, self.net.config)
        self.listeners: list = []
        self._thread = threading.Thread(target=self._run, name="fastnet-test-network", daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, fn, *args, timeout: float = 10):
        """Run fn on the network's thread and return its result."""
        fut = asyncio.run_coroutine_threadsafe(self._call(fn, *args), self.loop)
        return fut.result(timeout)

    async def _call(self, fn, *args):
        return fn(*args)

    def on_attach(self, link_args: dict):
        """The on_attach callback for a listener whose module says ``LINK_ARGS``."""
        return lambda fd, **kw: self.net.attach(fd, **link_args, **kw)

    def allocate(self, uuid, preferred):
        return self.net.pool.allocate(uuid=uuid, preferred=preferred)

    def vmnet(self, path: str, **kw):
        from fastnet.aio import vmnet

        srv = vmnet.VmnetServer(path, allocate=self.allocate, on_attach=self.on_attach(vmnet.LINK_ARGS),
                                mtu=self.net.config.mtu, loop=self.loop, **kw)
        self.call(srv.start)
        self.listeners.append(srv)
        return srv

    def qemu(self, address, **kw):
        from fastnet.aio import qemu

        lst = qemu.QemuListener(address, on_attach=self.on_attach(qemu.LINK_ARGS), loop=self.loop, **kw)
        self.call(lst.start)
        self.listeners.append(lst)
        return lst

    def vfkit(self, path: str):
        from fastnet.aio import vfkit

        lst = vfkit.VfkitListener(path, on_attach=self.on_attach(vfkit.LINK_ARGS), loop=self.loop)
        self.call(lst.start)
        self.listeners.append(lst)
        return lst

    def tap(self, netns: str, *, offload: bool = False):
        """A TAP device created in the namespace at path netns, attached as a port."""
        from fastnet.aio import tap

        return self.call(lambda: tap.attach_tap(self.on_attach(tap.LINK_ARGS), "tap0", netns, offload=offload))

    def ports(self) -> list:
        return self.call(lambda: list(self.net.ports))

    def wait_ports(self, n: int, timeout: float = 10) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = self.ports()
            if len(ports) >= n:
                return ports
            time.sleep(0.02)
        raise TimeoutError(f"{n} ports expected, {len(self.ports())} attached")

    def stats(self) -> dict:
        return self.call(self.net.stats)

    def attach_tap(self, ns, address: str | None = None):
        """The namespace's new tap0 as a TAP port of the network. With an address, tap0 gets it
        in the subnet and a default route via the gateway: a statically configured guest."""
        cfg = self.net.config
        fd, _ = _io.tap_open("tap0", ns.path)
        try:
            ns.ip("link", "set", "tap0", "mtu", str(cfg.mtu), "up")
            if address is not None:
                ns.ip("addr", "add", f"{address}/{cfg.subnet.prefixlen}", "dev", "tap0")
                ns.ip("route", "add", "default", "via", str(cfg.gateway))
        except BaseException:
            os.close(fd)
            raise
        return self.call(lambda: self.net.attach(fd, "tap", link_kind=_io.LINK_TAP))

    def diagnose(self) -> str:
        """The network's state for a failure message: per port, link, engine and flow counters."""
        def collect():
            out = self.net.stats()
            for p, st in zip(self.net.ports, out["ports"]):
                st["tcp_flows"] = p.engine.flows()
                st["link_blocked_now"] = p.link.blocked
            return out
        try:
            return json.dumps(self.call(collect), default=str)
        except Exception as e:  # the network thread itself may be what is stuck
            return f"(no stats: {type(e).__name__}: {e})"

    def close(self):
        if self._thread.is_alive():
            def shut():
                for lst in self.listeners:
                    lst.close()
                self.net.close()
            try:
                self.call(shut)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(10)


def serve_stdio() -> int:
    """The network with standard input/output as its one link (run by the stdio relay, as
    gvforwarder runs gvproxy): exits when the link closes."""
    import logging

    from fastnet.aio import stdio
    from fastnet.services.network import VirtualNetwork

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    net = VirtualNetwork(confined_dns(), loop=loop)
    net.policy = Confined(net.policy, net.config)
    net.on_port_closed = lambda port: loop.stop()
    stdio.attach_stdio(lambda fd, **kw: net.attach(fd, **stdio.LINK_ARGS, **kw))
    loop.run_forever()
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["stdio"]:
        sys.exit(serve_stdio())
    sys.exit("usage: python -m tests.integration.harness stdio")
