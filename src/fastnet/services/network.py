"""The virtual network: guests attach over links (ports); each port gets its own TCP engine,
datagram NAT and dispatch core in C, all joined by one switch, and shares the services: the
address pool, DHCP, the NAT policy, DNS.

Python runs here per attachment, per flow event and per DHCP message; frames stay in C.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field

from fastnet import _io, _tcp, wire
from fastnet.aio.forwarder import Forwarder
from fastnet.services.addressing import AddressPool, Lease
from fastnet.services.config import NetworkConfig, format_mac
from fastnet.services.dhcp import DhcpServer
from fastnet.services.dns import DnsService
from fastnet.services.policy import NatPolicy

log = logging.getLogger("fastnet.network")

# Largest frame a link accepts from a guest: MTU + Ethernet + 802.1Q, or a whole TSO
# super-frame when the TAP has offloads on.
def max_frame_for(mtu: int, offload: bool) -> int:
    return 65550 if offload or mtu > 1500 else mtu + 18


@dataclass
class Port:
    """One guest attachment."""

    name: str
    kind: str                    # "tap", "vmnet", "qemu", "vfkit", "stdio"
    link: _io.Link
    engine: _tcp.TcpEngine
    stack: _io.Stack
    forwarder: Forwarder
    uuid: str | None = None
    lease: Lease | None = None
    info: dict = field(default_factory=dict)

    @property
    def guest_mac(self) -> bytes | None:
        return self.lease.mac if self.lease else self.stack.guest_mac


RX_RING = 4 << 20  # bytes of guest data a flow holds for the host (out of order or refused)


class VirtualNetwork:
    def __init__(self, config: NetworkConfig | None = None, *, loop: asyncio.AbstractEventLoop | None = None,
                 faults: dict | None = None, seed: int | None = None):
        self.config = config or NetworkConfig()
        self.loop = loop or asyncio.get_event_loop()
        self.pool = AddressPool(self.config)
        self.policy = NatPolicy(self.config)
        self.dhcp = DhcpServer(self.config, self.pool)
        # DNS on the gateway unless [dns] enabled = false (slirp4netns' --disable-dns).
        self.dns: DnsService | None = None
        if self.config.dns_service.enabled:
            self.dns = DnsService(self.config, pool=self.pool, loop=self.loop)
            self.dns.register(self.policy)
        self.switch = _io.Switch()
        self.ports: list[Port] = []
        self.faults = faults or {}
        self.seed = seed
        self.on_port_closed = None   # callback(port)
        self.pcap_path: str | None = None
        self._names = 0

    # -- attachments -----------------------------------------------------------------------

    def attach(self, fd: int, kind: str, *, framing: int = 0, link_kind: int | None = None,
               offload: bool = False, write_fd: int | None = None, uuid: str | None = None,
               lease: Lease | None = None, name: str | None = None, info: dict | None = None) -> Port:
        """Attach a guest whose frames come over fd. The network takes ownership of fd."""
        cfg = self.config
        if link_kind is None:
            link_kind = {"tap": _io.LINK_TAP, "vfkit": _io.LINK_DGRAM}.get(kind, _io.LINK_STREAM)
        self._names += 1
        name = name or f"{kind}{self._names}"
        mss = cfg.mtu - 40
        # A 4 MiB receive ring per flow (allocated only while data waits in it): the window it
        # advertises is what lets a guest keep sending past a hole, so its own RACK finds a lost
        # retransmission instead of a 200 ms timeout (2 MiB was not enough at 3 Gbit/s, 1 % loss).
        engine = _tcp.TcpEngine(mss=mss, gso=offload, csum_partial=offload,
                                tx_seg_max=max(65000, mss) if offload else mss, gw_mac=cfg.gateway_mac,
                                connect_timeout=cfg.connect_timeout, seed=self.seed, live_clock=True,
                                rx_buf=RX_RING)
        link = _io.Link(link_kind, fd, framing, max_frame=max_frame_for(cfg.mtu, offload) + 16)
        if write_fd is not None:
            link.set_write_fd(write_fd)
        if self.pcap_path:
            # One file per link: the first attached as given, later ones with the port name added
            # (by attach count, not by ports still attached: a reconnect must not truncate it).
            root, ext = os.path.splitext(self.pcap_path)
            link.pcap(self.pcap_path if self._names == 1 else f"{root}-{name}{ext or '.pcap'}")
        for direction, spec in self.faults.items():
            link.set_faults(direction, seed=(self.seed or 1) + (direction == "out"), **spec)
        arp = [cfg.gateway, cfg.dns_server] + ([cfg.host_alias] if cfg.host_alias is not None else [])
        stack = _io.Stack(link, engine, gw_mac=cfg.gateway_mac, arp_ips=[str(a) for a in arp],
                          gateway=str(cfg.gateway), mtu=cfg.mtu, udp_idle=cfg.udp_idle,
                          seed=self.seed or 0)
        stack.join(self.switch)
        port: Port
        fw = Forwarder(stack, self.policy, loop=self.loop,
                       on_slow_frames=lambda frames: self._slow_frames(port, frames),
                       on_closed=lambda: self._closed(port))
        port = Port(name=name, kind=kind, link=link, engine=engine, stack=stack, forwarder=fw,
                    uuid=uuid, lease=lease, info=info or {})
        self.ports.append(port)
        fw.start()
        log.info("%s attached%s", name, f" (uuid {uuid}, {lease.ip} {format_mac(lease.mac)})" if lease else "")
        return port

    def _closed(self, port: Port) -> None:
        if port in self.ports:
            self.ports.remove(port)
            port.stack.leave()
            log.info("%s detached", port.name)
            if self.on_port_closed:
                self.on_port_closed(port)

    def detach(self, port: Port) -> None:
        port.forwarder.close()

    def port_for_ip(self, ip) -> Port | None:
        """The port whose guest holds ip (DHCP lease or vmnet allocation).

        One vmnet UUID can be attached twice at once: rootlesskit's vpnkit driver keeps its
        first connection (the one it learned the address on) open and unread, and relays the
        guest's frames over a second; a reconnecting VM races its old connection's teardown.
        The port the guest's frames arrive on wins, and among several the latest attached."""
        lease = self.pool.lookup_ip(ip)
        if lease is None:
            return self.ports[0] if len(self.ports) == 1 else None
        matches = [p for p in self.ports if p.lease is lease or p.guest_mac == lease.mac]
        live = [p for p in matches if p.link.stats()["rx_frames"]]
        return (live or matches)[-1] if matches else None

    # -- the slow path: frames the C core leaves to Python ----------------------------------

    def _slow_frames(self, port: Port, frames: list[bytes]) -> None:
        for frame in frames:
            try:
                fr = wire.parse_frame(frame)
            except wire.MalformedPacket:
                continue
            if fr.kind == wire.Kind.UDP4 and fr.l4.dst_port == 67:
                for reply in self.dhcp.handle(frame, uuid=port.uuid):
                    port.link.send_frame(reply)
        port.stack.output(0)

    # -- the HTTP proxy ----------------------------------------------------------------------

    def enable_proxy(self, source):
        """Serve the explicit HTTP proxy on gateway:3128 and intercept guest HTTP/HTTPS as the
        configuration source (a fastnet.services.proxyconf.ProxyConfigSource) says; returns
        the ProxyService. The caller starts and closes the source."""
        from fastnet.services.proxy import ProxyService

        self.proxy = ProxyService(self.config, source, loop=self.loop)
        self.proxy.install(self.policy)
        return self.proxy

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        for port in list(self.ports):
            port.forwarder.close()
        if self.dns is not None:
            self.dns.close()

    def shutdown(self) -> None:
        """Close every flow (RST to the guests, host sockets closed), then every port."""
        for port in list(self.ports):
            port.forwarder.shutdown()
        self.close()

    def stats(self) -> dict:
        out = {"ports": [], "switch": self.switch.stats()}
        if self.dns is not None:
            out["dns"] = self.dns.stats()
        for p in self.ports:
            out["ports"].append({"name": p.name, "kind": p.kind, "uuid": p.uuid,
                                 "stack": p.stack.stats(), "tcp": p.engine.stats(),
                                 "link": p.link.stats(), "udp": p.stack.dgram_stats(),
                                 "flows": dict(p.forwarder.flow_events)})
        return out
