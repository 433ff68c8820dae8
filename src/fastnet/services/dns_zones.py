"""Names the gateway answers itself: the host and gateway aliases, extra names from the config
and the control API, and one name per guest.

Records are grouped in zones shaped like gvproxy's (reference/gvisor-tap-vsock.md §3): a zone
name, records named relative to it (by exact name or by regular expression) and an optional
default address, so `GET /services/dns/all` and `POST /services/dns/add` map onto `zones()` and
`add_zone()` key for key. Zones given as zones (config, API, the built-in docker.internal and
containers.internal) are authoritative: a name in them that matches nothing is NXDOMAIN and never
asked upstream. Names added one by one claim only themselves, so adding `db.corp.example.com`
does not hide the rest of corp.example.com. Guests are named by their DHCP hostname or vmnet UUID,
bare and under the configured domain; those names follow the address pool, not the zone table.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.reversename

from fastnet.services.config import DnsConfig, NetworkConfig

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names under which fastnet's own aliases live; each is authoritative (see module docstring).
BUILTIN_ZONES = ("docker.internal.", "containers.internal.")


def to_name(text: str) -> dns.name.Name:
    """A fully qualified name from text with or without the trailing dot."""
    return dns.name.from_text(text.strip(), origin=dns.name.root)


@dataclass
class Record:
    name: str                       # relative to the zone; "" is the zone's own name
    ip: IPAddress
    regexp: re.Pattern | None = None

    def as_dict(self) -> dict:
        d = {"name": self.name, "ip": str(self.ip)}
        if self.regexp is not None:
            d["regexp"] = self.regexp.pattern
        return d


@dataclass
class Zone:
    name: dns.name.Name
    records: list[Record] = field(default_factory=list)
    default_ip: IPAddress | None = None
    authoritative: bool = True

    def owner(self, record: Record) -> dns.name.Name:
        if not record.name:
            return self.name
        return dns.name.from_text(record.name, origin=self.name)

    def as_dict(self) -> dict:
        return {"name": self.name.to_text().lower(), "records": [r.as_dict() for r in self.records],
                "default_ip": str(self.default_ip) if self.default_ip is not None else None,
                "authoritative": self.authoritative}


@dataclass
class LocalAnswer:
    """A local name: the addresses it has (possibly none of the family asked for)."""

    addrs: list[IPAddress]


def _field(spec: dict, key: str, gvproxy_key: str, default=None):
    """Our lower-case key or gvproxy's Go field name."""
    if key in spec:
        return spec[key]
    return spec.get(gvproxy_key, default)


def _parse_ip(value) -> IPAddress:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        raise ValueError(f"not an IP address: {value!r}") from None


def _parse_record(spec: dict) -> Record:
    if not isinstance(spec, dict):
        raise ValueError(f"a record is a table with name and ip, not {spec!r}")
    name = str(_field(spec, "name", "Name", "") or "").strip().rstrip(".").lower()
    pattern = _field(spec, "regexp", "Regexp")
    regexp = None
    if pattern:
        try:
            regexp = re.compile(str(pattern), re.IGNORECASE)
        except re.error as e:
            raise ValueError(f"bad regexp {pattern!r}: {e}") from None
    if name in ("@",):
        name = ""
    return Record(name=name, ip=_parse_ip(_field(spec, "ip", "IP")), regexp=regexp)


def parse_zone(spec) -> Zone:
    """A zone from its table ({"name", "records", "default_ip"}, or gvproxy's Go field names);
    ValueError naming what is wrong."""
    if not isinstance(spec, dict):
        raise ValueError("a zone is a table with name, records and default_ip")
    raw_name = _field(spec, "name", "Name")
    if not raw_name:
        raise ValueError("a zone needs a name")
    records = [_parse_record(r) for r in (_field(spec, "records", "Records") or [])]
    default = _field(spec, "default_ip", "DefaultIP")
    zone = Zone(to_name(str(raw_name)), records, _parse_ip(default) if default else None, authoritative=True)
    for r in zone.records:
        zone.owner(r)   # a name that cannot be a DNS name fails here, not at lookup
    return zone


class LocalZones:
    def __init__(self, config: NetworkConfig, settings: DnsConfig | None = None, pool=None):
        self.config = config
        self.settings = settings or config.dns_service
        self.pool = pool
        self._zones: dict[dns.name.Name, Zone] = {}
        self._exact: dict[dns.name.Name, list[IPAddress]] = {}
        for zone in BUILTIN_ZONES:
            self._zones[to_name(zone)] = Zone(to_name(zone))
        if config.host_alias is not None:
            for name in self.settings.host_names:
                self.add_record(name, config.host_alias)
        for name in self.settings.gateway_names:
            self.add_record(name, config.gateway)
        for name, addrs in self.settings.hosts.items():
            for a in addrs:
                self.add_record(name, a)
        for spec in self.settings.zones:
            self.add_zone(spec)
        self._reindex()

    # -- editing (the control API calls these) --------------------------------------------

    def _reindex(self) -> None:
        exact: dict[dns.name.Name, list[IPAddress]] = {}
        for zone in self._zones.values():
            for r in zone.records:
                if r.regexp is None:
                    addrs = exact.setdefault(zone.owner(r), [])
                    if r.ip not in addrs:
                        addrs.append(r.ip)
        self._exact = exact

    def _zone_for(self, name: dns.name.Name) -> Zone | None:
        """The deepest zone name lies in."""
        best = None
        for zone in self._zones.values():
            if name.is_subdomain(zone.name) and (best is None or len(zone.name) > len(best.name)):
                best = zone
        return best

    def add_record(self, name: str, ip, zone: str | None = None) -> dict:
        """Add name -> ip. The record goes into the named zone, else the deepest zone that holds
        the name; failing both, into a non-authoritative zone named after the parent domain, so
        the record claims only its own name. Returns the zone as listed by zones()."""
        addr = _parse_ip(ip)
        owner = to_name(name)
        if zone is not None:
            zname = to_name(zone)
            if not owner.is_subdomain(zname):
                owner = dns.name.from_text(name.strip().rstrip("."), origin=zname)
            z = self._zones.setdefault(zname, Zone(zname))
        else:
            z = self._zone_for(owner)
            if z is None:
                zname = owner.parent() if len(owner) > 2 else owner
                z = self._zones.setdefault(zname, Zone(zname, authoritative=False))
        rel = owner.relativize(z.name).to_text().lower() if owner != z.name else ""
        if not any(r.name == rel and r.ip == addr and r.regexp is None for r in z.records):
            z.records.append(Record(rel, addr))
        self._reindex()
        return z.as_dict()

    def remove_record(self, name: str, ip=None) -> int:
        """Remove name's records (only the one with address ip, if given); how many went. A
        zone that only existed for removed names goes too."""
        owner = to_name(name)
        addr = _parse_ip(ip) if ip is not None else None
        removed = 0
        for zname, z in list(self._zones.items()):
            keep = [r for r in z.records
                    if not (r.regexp is None and z.owner(r) == owner and (addr is None or r.ip == addr))]
            removed += len(z.records) - len(keep)
            z.records = keep
            if not keep and not z.authoritative:
                del self._zones[zname]
        self._reindex()
        return removed

    def add_zone(self, spec: dict) -> dict:
        """A zone as gvproxy's POST /services/dns/add takes it ({"Name", "Records", "DefaultIP"},
        or the same keys in lower case). As there, the new records go before those of an existing
        zone of that name, which the new one replaces."""
        zone = parse_zone(spec)
        old = self._zones.get(zone.name)
        if old:
            zone.records += old.records
        self._zones[zone.name] = zone
        self._reindex()
        return zone.as_dict()

    def remove_zone(self, name: str) -> bool:
        gone = self._zones.pop(to_name(name), None) is not None
        self._reindex()
        return gone

    def zones(self) -> list[dict]:
        """Every zone as JSON-able data, the guests' names last (those cannot be edited)."""
        out = [z.as_dict() for z in sorted(self._zones.values(), key=lambda z: z.name.to_text())]
        guests = self._guest_names()
        if guests:
            domain = self._domain()
            recs = []
            for name, ip in guests.items():
                if domain is not None and name.is_subdomain(domain) and name != domain:
                    recs.append({"name": name.relativize(domain).to_text().lower(), "ip": str(ip)})
            out.append({"name": domain.to_text().lower() if domain is not None else ".",
                        "records": recs, "default_ip": None, "authoritative": False, "guests": True})
        return out

    # -- guests -----------------------------------------------------------------------------

    def _domain(self) -> dns.name.Name | None:
        d = (self.config.domain or "").strip().strip(".")
        try:
            return to_name(d) if d else None
        except dns.exception.DNSException:
            return None

    def _guest_names(self) -> dict[dns.name.Name, IPAddress]:
        """name -> address for each guest: its DHCP hostname's first label and its vmnet UUID,
        bare and under the network's domain. Only one label of a guest's chosen name is used, so
        a guest calling itself www.example.com cannot take that name from the rest of the world."""
        if not self.settings.guest_names or self.pool is None:
            return {}
        domain = self._domain()
        out: dict[dns.name.Name, IPAddress] = {}
        for lease in self.pool.leases():
            labels = []
            if lease.hostname:
                first = lease.hostname.split(".", 1)[0].lower()
                if first and first != "localhost":
                    labels.append(first)
            if lease.uuid:
                labels.append(str(lease.uuid).lower())
            for label in labels:
                try:
                    bare = dns.name.Name([label.encode(), b""])
                except dns.exception.DNSException:
                    continue
                out.setdefault(bare, lease.ip)
                if domain is not None:
                    out.setdefault(dns.name.Name([label.encode()]).concatenate(domain), lease.ip)
        return out

    # -- lookups ----------------------------------------------------------------------------

    def lookup(self, qname: dns.name.Name) -> LocalAnswer | None:
        """The local name qname, if it is one by exact record or by a guest's name."""
        addrs = self._exact.get(qname)
        if addrs is not None:
            return LocalAnswer(list(addrs))
        # A guest's name is one label, bare or under the domain: anything else (every name
        # forwarded upstream) is not, and does not pay for building the guests' names.
        if len(qname) > 2 and qname.parent() != self._domain():
            return None
        ip = self._guest_names().get(qname)
        if ip is not None:
            return LocalAnswer([ip])
        return None

    def claim(self, qname: dns.name.Name) -> LocalAnswer | Zone | None:
        """For a name not found by lookup(): a regexp or default-address answer of the zone
        holding it (LocalAnswer), that authoritative zone itself (the name does not exist), or
        None (not ours to answer)."""
        zone = self._zone_for(qname)
        while zone is not None and not zone.authoritative:
            parent = self._zone_for(zone.name.parent()) if len(zone.name) > 1 else None
            zone = parent
        if zone is None:
            return None
        text = qname.to_text()
        matched = [r.ip for r in zone.records if r.regexp is not None and r.regexp.search(text)]
        if matched:
            return LocalAnswer(matched)
        if zone.default_ip is not None:
            return LocalAnswer([zone.default_ip])
        return zone

    def reverse(self, qname: dns.name.Name) -> list[dns.name.Name] | None:
        """PTR data for an in-addr.arpa name of the virtual subnet: the names of that address
        (maybe none). None when the address is outside the subnet, which is not ours."""
        try:
            addr = ipaddress.ip_address(dns.reversename.to_address(qname))
        except (dns.exception.DNSException, ValueError, SyntaxError):
            return None
        if addr.version != 4 or addr not in self.config.subnet:
            return None
        names = [n for n, addrs in self._exact.items() if addr in addrs]
        # A guest is named bare and under the domain; the qualified name is the one to give.
        qualified = self._domain() is not None
        names += [n for n, ip in self._guest_names().items() if ip == addr and (len(n) > 2 or not qualified)]
        return names
