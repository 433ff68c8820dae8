"""Addresses and MACs for guests: one IP and one MAC per guest, the same again for the same
vmnet UUID or MAC (vpnkit's behaviour, reference/vpnkit.md §1.3), static leases honoured."""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass

from fastnet.services.config import NetworkConfig

IPv4Address = ipaddress.IPv4Address


class AddressError(Exception):
    """An allocation that cannot be made; the message is what vmnet's Disconnect says."""


@dataclass
class Lease:
    ip: IPv4Address
    mac: bytes
    uuid: str | None = None
    hostname: str | None = None
    expires: float = 0.0      # DHCP lease expiry (monotonic seconds), 0 = none yet


class AddressPool:
    def __init__(self, config: NetworkConfig):
        self.config = config
        self._by_ip: dict[IPv4Address, Lease] = {}
        self._by_uuid: dict[str, Lease] = {}
        self._by_mac: dict[bytes, Lease] = {}
        self._mac_counter = 0
        self._lock = threading.Lock()
        reserved = {config.gateway, config.dns_server}
        if config.host_alias is not None:
            reserved.add(config.host_alias)
        self._reserved = reserved
        self._static = list(config.leases)
        self._held: set[IPv4Address] = set()  # given to nobody for now (a DHCP DECLINE's address)

    def _next_mac(self) -> bytes:
        # vpnkit's scheme: 02:50:00:00:00:01, 02:50:00:00:00:02, ... (locally administered).
        self._mac_counter += 1
        return bytes([0x02, 0x50]) + self._mac_counter.to_bytes(4, "big")

    def _free_ip(self) -> IPv4Address:
        static_ips = {s.ip for s in self._static}
        ip = self.config.first_guest
        while ip <= self.config.last_guest:
            if ip not in self._by_ip and ip not in self._reserved and ip not in static_ips and ip not in self._held:
                return ip
            ip += 1
        raise AddressError("No IP addresses available.")

    def _static_for(self, uuid: str | None, mac: bytes | None):
        for s in self._static:
            if (uuid and s.uuid == uuid) or (mac and s.mac == mac):
                return s
        return None

    def hold(self, ip: IPv4Address) -> None:
        """Give ip to nobody until unhold() (a leased one stays with its guest: release it first)."""
        with self._lock:
            self._held.add(ip)

    def unhold(self, ip: IPv4Address) -> None:
        with self._lock:
            self._held.discard(ip)

    def lookup_ip(self, ip: IPv4Address) -> Lease | None:
        return self._by_ip.get(ip)

    def lookup_mac(self, mac: bytes) -> Lease | None:
        return self._by_mac.get(mac)

    def leases(self) -> list[Lease]:
        return list(self._by_ip.values())

    def allocate(self, *, uuid: str | None = None, mac: bytes | None = None,
                 preferred: IPv4Address | None = None, hostname: str | None = None) -> Lease:
        """The lease for a guest known by vmnet UUID and/or MAC; new guests get the lowest free
        address (or `preferred`, when free and in range) and, without a MAC, a fresh one."""
        with self._lock:
            existing = (self._by_uuid.get(uuid) if uuid else None) or (self._by_mac.get(mac) if mac else None)
            if existing is not None:
                if preferred is not None and preferred != existing.ip:
                    raise AddressError("UUID already assigned to a different IP than the IP requested by the client")
                if hostname:
                    existing.hostname = hostname
                return existing
            static = self._static_for(uuid, mac)
            if preferred is not None:
                if preferred not in self.config.subnet or not (self.config.first_guest <= preferred <= self.config.last_guest):
                    raise AddressError("Preferred IP address out of range.")
                others_static = any(s.ip == preferred and s is not static for s in self._static)
                if preferred in self._by_ip or preferred in self._reserved or preferred in self._held or others_static:
                    raise AddressError(f"Preferred IP address {preferred} already used.")
                ip = preferred
            elif static is not None and static.ip not in self._by_ip and static.ip not in self._held:
                ip = static.ip
            else:
                ip = self._free_ip()  # (a static address held after its owner declined it too)
            lease = Lease(ip=ip, mac=mac or (static.mac if static and static.mac else self._next_mac()),
                          uuid=uuid, hostname=hostname or (static.hostname if static else None))
            self._by_ip[ip] = lease
            self._by_mac[lease.mac] = lease
            if uuid:
                self._by_uuid[uuid] = lease
            return lease

    def release(self, lease: Lease) -> None:
        """Forget a lease (DHCP RELEASE). UUID-bound leases stay: the same VM gets them back."""
        with self._lock:
            if lease.uuid:
                return
            self._by_ip.pop(lease.ip, None)
            self._by_mac.pop(lease.mac, None)
