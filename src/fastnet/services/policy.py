"""Where each guest flow goes (the NAT rules), asked once per new flow by the forwarder.

- The host alias (192.168.65.2) reaches the host's own 127.0.0.1 unless host loopback is
  disabled; the gateway (192.168.65.1) offers only the services registered on it (DNS, the
  explicit proxy); other addresses of the virtual subnet are unreachable; everything else is
  re-originated as an ordinary host connection to the same address and port, which is what makes
  the host's routes and VPNs apply ("VPN passthrough").
"""

from __future__ import annotations

import ipaddress
from typing import Callable

from fastnet._tcp import Refusal
from fastnet.aio.forwarder import Connect, Handoff, Refuse
from fastnet.services.config import NetworkConfig

IPv4Address = ipaddress.IPv4Address
Handler = Callable  # (socket, (guest_ip, guest_port, dst_ip, dst_port)) -> None


class NatPolicy:
    def __init__(self, config: NetworkConfig):
        self.config = config
        self.tcp_services: dict[int, Handler] = {}   # gateway TCP port -> handler
        self.udp_services: dict[int, Handler] = {}   # gateway UDP port -> handler
        # A transparent interceptor (the HTTP proxy) may claim TCP flows before NAT:
        # (guest_ip, dst_ip, dst_port) -> Handoff or None.
        self.tcp_interceptors: list[Callable] = []

    def _loopback(self) -> str:
        return "127.0.0.1"

    def _common(self, dst: IPv4Address, port: int, services: dict[int, Handler]):
        cfg = self.config
        if dst == cfg.gateway or dst == cfg.dns_server:
            handler = services.get(port)
            if handler is not None:
                return Handoff(handler)
            # slirp4netns's layout has one address for both (10.0.2.2): ports without a
            # service of ours reach the host's loopback.
            if cfg.host_alias is None or dst != cfg.host_alias:
                return Refuse(Refusal.RST)
        if cfg.host_alias is not None and dst == cfg.host_alias:
            if not cfg.host_loopback:
                return Refuse(Refusal.RST)
            return Connect(self._loopback(), port)
        if dst in cfg.subnet or dst.is_multicast or dst == IPv4Address("255.255.255.255"):
            return Refuse(Refusal.HOST_UNREACHABLE)
        if dst.is_unspecified or dst.is_loopback:
            return Refuse(Refusal.NET_UNREACHABLE)
        return Connect(str(dst), port, bind=cfg.outbound_address)

    def tcp_target(self, gip, gport, dst, dport):
        for intercept in self.tcp_interceptors:
            decision = intercept(gip, dst, dport)
            if decision is not None:
                return decision
        return self._common(dst, dport, self.tcp_services)

    def udp_target(self, gip, gport, dst, dport):
        # A refusal as RST reaches a UDP guest as port unreachable (forwarder.DGRAM_REFUSAL_CODES).
        return self._common(dst, dport, self.udp_services)

    def icmp_target(self, gip, dst):
        cfg = self.config
        if cfg.host_alias is not None and dst == cfg.host_alias:
            return Connect(self._loopback(), 0) if cfg.host_loopback else Refuse(Refusal.DROP)
        if dst in cfg.subnet or dst.is_unspecified or dst.is_loopback or dst.is_multicast:
            return Refuse(Refusal.DROP)
        return Connect(str(dst), 0, bind=cfg.outbound_address)
