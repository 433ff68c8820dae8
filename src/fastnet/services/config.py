"""The virtual network's configuration: defaults follow vpnkit (reference/vpnkit.md §3), every
value can come from a TOML file, and command-line flags override the file.

    [network]
    subnet = "192.168.65.0/24"
    gateway = "192.168.65.1"
    gateway_mac = "f6:16:36:bc:f9:c6"
    host_alias = "192.168.65.2"       # reaches the host's 127.0.0.1
    host_loopback = true              # false: the alias cannot reach the host's loopback
    first_guest = "192.168.65.3"
    last_guest = "192.168.65.254"
    mtu = 1500
    domain = "localdomain"
    search = ["example.com"]
    lease_time = 86400
    outbound_address = "10.1.2.3"     # bind host sockets to this address

    [[lease]]                         # static leases by MAC or vmnet UUID
    mac = "02:50:00:00:00:09"
    ip = "192.168.65.9"

    [dns]                             # the DNS service on the gateway (services/dns.py)
    enabled = true                    # false: no DNS on the gateway (slirp4netns --disable-dns)
    upstream = ["127.0.0.1:5353"]     # instead of the nameservers of resolv_conf
    resolv_conf = "/etc/resolv.conf"  # watched; "nameserver IP#PORT" names a port
    hosts_file = "/etc/hosts"         # watched; "" for none
    timeout = 5.0                     # seconds for an upstream answer, retries included
    retry_interval = 1.0              # resend to silent servers this often
    system_fallback = true            # getaddrinfo for A/AAAA when no nameserver answers
    host_names = ["host.docker.internal", ...]        # replace the default aliases
    gateway_names = ["gateway.docker.internal", ...]
    guest_names = true                # each guest's DHCP hostname / vmnet UUID
    [dns.hosts]                       # extra names
    "db.internal" = "192.168.65.9"
    [[dns.zone]]                      # a zone, as gvproxy's POST /services/dns/add takes it
    name = "dynamic.internal."
    records = [{ name = "test", ip = "192.168.65.9" }]
"""

from __future__ import annotations

import dataclasses
import ipaddress
import sys
from dataclasses import dataclass, field
from typing import Any

from fastnet.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network


def parse_mac(value: str | bytes) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        b = bytes(value)
    else:
        try:
            b = bytes.fromhex(str(value).replace(":", "").replace("-", ""))
        except ValueError:
            raise ConfigError(f"not a MAC address: {value!r}") from None
    if len(b) != 6:
        raise ConfigError(f"not a MAC address: {value!r}")
    return b


def format_mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


@dataclass(frozen=True)
class StaticLease:
    ip: IPv4Address
    mac: bytes | None = None
    uuid: str | None = None
    hostname: str | None = None


# Docker Desktop's, vpnkit's and podman's names for the host and the gateway (reference/vpnkit.md
# §4, gvisor-tap-vsock.md §2): containers written for any of them work unchanged.
DEFAULT_HOST_NAMES = ("host.docker.internal", "docker.for.mac.localhost", "docker.for.mac.host.internal",
                      "host.containers.internal")
DEFAULT_GATEWAY_NAMES = ("gateway.docker.internal", "docker.for.mac.gateway.internal",
                         "docker.for.mac.http.internal", "gateway.containers.internal")


@dataclass
class DnsConfig:
    """The [dns] table: what the gateway's DNS service answers itself and where it forwards."""

    enabled: bool = True
    upstream: list[str] | None = None          # "IP", "IP:PORT", "[IPv6]:PORT"; None: resolv_conf
    resolv_conf: str = "/etc/resolv.conf"
    hosts_file: str | None = "/etc/hosts"
    timeout: float = 5.0
    retry_interval: float = 1.0
    system_fallback: bool = True
    host_names: list[str] = field(default_factory=lambda: list(DEFAULT_HOST_NAMES))
    gateway_names: list[str] = field(default_factory=lambda: list(DEFAULT_GATEWAY_NAMES))
    guest_names: bool = True
    hosts: dict[str, list[str]] = field(default_factory=dict)   # name -> addresses
    zones: list[dict] = field(default_factory=list)             # gvproxy-shaped zones
    local_ttl: int = 0             # TTL of local answers: 0, so runtime edits show at once
    cache_size: int = 4096         # answers kept
    max_ttl: int = 86400           # cap on a cached answer's life
    max_udp_size: int = 4096       # largest UDP answer, whatever a client's EDNS0 size (RFC 6891 §6.2.5)
    watch_interval: float = 1.0    # how often hosts_file and resolv_conf are checked for changes

    def validate(self) -> None:
        if not 0 < self.timeout <= 60:
            raise ConfigError(f"dns.timeout {self.timeout} is outside (0, 60] seconds")
        if not 0 < self.retry_interval <= self.timeout:
            raise ConfigError(f"dns.retry_interval {self.retry_interval} is outside (0, timeout]")
        if not 512 <= self.max_udp_size <= 65535:
            raise ConfigError(f"dns.max_udp_size {self.max_udp_size} is outside 512..65535")
        for name in ("cache_size", "max_ttl", "local_ttl"):
            if getattr(self, name) < 0:
                raise ConfigError(f"dns.{name} must not be negative")


@dataclass
class NetworkConfig:
    subnet: IPv4Network = IPv4Network("192.168.65.0/24")
    gateway: IPv4Address = IPv4Address("192.168.65.1")
    gateway_mac: bytes = bytes.fromhex("f61636bcf9c6")
    host_alias: IPv4Address | None = IPv4Address("192.168.65.2")
    host_loopback: bool = True
    first_guest: IPv4Address = IPv4Address("192.168.65.3")
    last_guest: IPv4Address = IPv4Address("192.168.65.254")
    dns: IPv4Address | None = None           # default: the gateway
    mtu: int = 1500
    domain: str = "localdomain"
    search: list[str] = field(default_factory=list)
    lease_time: int = 86400
    outbound_address: str | None = None
    leases: list[StaticLease] = field(default_factory=list)
    udp_idle: float = 60.0
    connect_timeout: float = 30.0
    dns_service: DnsConfig = field(default_factory=DnsConfig)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def dns_server(self) -> IPv4Address:
        return self.dns or self.gateway

    @property
    def netmask(self) -> IPv4Address:
        return self.subnet.netmask

    @property
    def broadcast(self) -> IPv4Address:
        return self.subnet.broadcast_address

    def validate(self) -> None:
        for name in ("gateway", "first_guest", "last_guest"):
            if getattr(self, name) not in self.subnet:
                raise ConfigError(f"{name} {getattr(self, name)} is outside the subnet {self.subnet}")
        if self.host_alias is not None and self.host_alias not in self.subnet:
            raise ConfigError(f"host_alias {self.host_alias} is outside the subnet {self.subnet}")
        if self.first_guest > self.last_guest:
            raise ConfigError(f"first_guest {self.first_guest} is above last_guest {self.last_guest}")
        if not 576 <= self.mtu <= 65520:
            raise ConfigError(f"mtu {self.mtu} is outside 576..65520")
        for lease in self.leases:
            if lease.ip not in self.subnet:
                raise ConfigError(f"static lease {lease.ip} is outside the subnet {self.subnet}")
        self.dns_service.validate()

    def replace(self, **changes: Any) -> "NetworkConfig":
        return dataclasses.replace(self, **changes)


_ADDR_FIELDS = {"gateway", "host_alias", "first_guest", "last_guest", "dns"}


def network_from_dict(d: dict, base: NetworkConfig | None = None) -> NetworkConfig:
    """Build a NetworkConfig from the [network] table (and [[lease]] array) of a config file."""
    base = base or NetworkConfig()
    changes: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(NetworkConfig)} - {"leases", "dns_service"}
    for key, value in d.get("network", {}).items():
        if key not in known:
            raise ConfigError(f"unknown setting network.{key}")
        try:
            if key == "subnet":
                value = IPv4Network(value, strict=False)
            elif key in _ADDR_FIELDS:
                value = None if value in (None, "", "none") else IPv4Address(value)
            elif key == "gateway_mac":
                value = parse_mac(value)
            elif key in ("mtu", "lease_time"):
                value = int(value)
            elif key in ("udp_idle", "connect_timeout"):
                value = float(value)
            elif key == "host_loopback":
                if not isinstance(value, bool):
                    raise ValueError("expected true or false")
            elif key == "search":
                if isinstance(value, str):
                    value = [value]
                value = [str(v) for v in value]
        except (ValueError, TypeError) as e:
            raise ConfigError(f"network.{key}: {e}") from None
        changes[key] = value
    leases = list(base.leases)
    for i, item in enumerate(d.get("lease", [])):
        try:
            leases.append(StaticLease(ip=IPv4Address(item["ip"]),
                                      mac=parse_mac(item["mac"]) if item.get("mac") else None,
                                      uuid=item.get("uuid"), hostname=item.get("hostname")))
        except (KeyError, ValueError) as e:
            raise ConfigError(f"lease[{i}]: {e}") from None
    changes["leases"] = leases
    if "dns" in d:
        changes["dns_service"] = dns_from_dict(d["dns"], base.dns_service)
    return dataclasses.replace(base, **changes)


def _strings(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"dns.{key}: expected a string or a list of strings")
    return list(value)


def dns_from_dict(table: dict, base: DnsConfig | None = None) -> DnsConfig:
    """Build a DnsConfig from the [dns] table of a config file. Addresses and zones are checked
    here, so a typo fails at start-up rather than at the first query."""
    base = base or DnsConfig()
    if not isinstance(table, dict):
        raise ConfigError("dns: expected a table")
    known = {f.name for f in dataclasses.fields(DnsConfig)} - {"zones"} | {"zone"}
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"unknown setting dns.{key}")
        try:
            if key in ("enabled", "system_fallback", "guest_names"):
                if not isinstance(value, bool):
                    raise ValueError("expected true or false")
            elif key in ("timeout", "retry_interval", "watch_interval"):
                value = float(value)
            elif key in ("cache_size", "max_ttl", "local_ttl", "max_udp_size"):
                value = int(value)
            elif key in ("resolv_conf",):
                value = str(value)
            elif key == "hosts_file":
                value = str(value) or None
            elif key in ("upstream", "host_names", "gateway_names"):
                value = _strings(key, value)
                if key == "upstream":
                    for server in value:
                        parse_server(server)
            elif key == "hosts":
                if not isinstance(value, dict):
                    raise ValueError("expected a table of name = address(es)")
                value = {str(k): _strings(f"hosts.{k}", v) for k, v in value.items()}
                for addrs in value.values():
                    for a in addrs:
                        ipaddress.ip_address(a)
            elif key == "zone":
                if not isinstance(value, list) or not all(isinstance(z, dict) for z in value):
                    raise ValueError("expected an array of tables ([[dns.zone]])")
                from fastnet.services.dns_zones import parse_zone  # (it imports this module)
                for z in value:
                    parse_zone(z)  # a bad record is a config error now, not at startup
                key = "zones"
                value = list(base.zones) + value
        except (ValueError, TypeError) as e:
            raise ConfigError(f"dns.{key}: {e}") from None
        changes[key] = value
    out = dataclasses.replace(base, **changes)
    out.validate()
    return out


def parse_server(text: str) -> tuple[str, int]:
    """A nameserver as (address, port): "IP", "IP:PORT", "[IPv6]:PORT", or "IP#PORT" (vpnkit's and
    dnsmasq's spelling). IPv6 may carry a %scope. Raises ValueError for anything else."""
    text = text.strip()
    host, port = text, 53
    if "#" in text:
        host, _, p = text.partition("#")
        port = int(p)
    elif text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"not a nameserver address: {text!r}")
        if rest:
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    ipaddress.ip_address(host.split("%", 1)[0])
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range in {text!r}")
    return host, port


def load_toml(path: str) -> dict:
    """Read a TOML config file; errors become one-line ConfigErrors."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path} is not valid TOML: {e}") from None
