"""Proxy exclude lists (``NO_PROXY``, vpnkit's ``exclude``): which destinations skip the proxy.

The syntax and meaning are the ones users know from curl and Go's ``NO_PROXY``:

- Items are separated by commas and/or whitespace; empty items are ignored; case does not
  matter and a trailing dot on a name is ignored.
- ``example.com`` matches ``example.com`` and every subdomain (``www.example.com``,
  ``a.b.example.com``), but not ``badexample.com``.
- ``.example.com`` means the same: the leading dot is optional (curl ≥ 7.86, Go).
- ``*.example.com`` is accepted too (macOS and vpnkit write it) and also means the same.
- ``*`` alone matches every destination: nothing is proxied.
- ``<local>`` matches simple host names, the ones without a dot (macOS's "exclude simple
  hostnames", Windows' ``<local>``).
- An IP address matches that address only: ``10.1.2.3``, ``::1`` or ``[::1]``.
- A CIDR range matches the addresses in it: ``10.0.0.0/8``, ``fd00::/8``; macOS's abbreviated
  ``169.254/16`` is read as ``169.254.0.0/16``.
- An optional ``:port`` restricts an item to that port: ``example.com:8080``,
  ``10.1.2.3:443``, ``[::1]:80``, ``10.0.0.0/8:80``. An item without a port matches every port.

Addresses are compared as addresses, names as names: ``10.1.2.3`` does not match the name
``host.example`` even when it resolves there (no lookups happen here). A proxy that knows both
the name and the address of a destination asks about each.

Examples::

    >>> rules = NoProxy("localhost, .internal.example  10.0.0.0/8,[::1]:8080")
    >>> rules.matches("internal.example"), rules.matches("db.internal.example")
    (True, True)
    >>> rules.matches("example"), rules.matches("10.2.3.4"), rules.matches("11.0.0.1")
    (False, True, False)
    >>> rules.matches("::1", 8080), rules.matches("::1", 80)
    (True, False)
    >>> NoProxy("*").matches("anything.at.all")
    True
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from fastnet.errors import ConfigError

_SEPARATORS = re.compile(r"[\s,]+")
# A host name as it may appear in an exclude list: letters, digits, '-' and '_' in dot-separated
# labels (underscores appear in real internal names even though RFC 952 forbids them).
_NAME = re.compile(r"^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$")
_SHORT_CIDR = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){0,2})/(\d{1,2})$")


@dataclass(frozen=True)
class _Rule:
    kind: str                      # "name", "net"
    value: object                  # a domain suffix (str) or an ip_network
    port: int | None = None


def _parse_port(text: str, item: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"exclude item {item!r}: bad port {text!r}")
    return int(text)


def _network(text: str):
    """An ip_network for an address or CIDR, or None when the text is neither."""
    m = _SHORT_CIDR.match(text)
    if m:  # macOS writes 169.254/16: pad the missing octets with zeros
        octets = m.group(1).split(".")
        text = ".".join(octets + ["0"] * (4 - len(octets))) + "/" + m.group(2)
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def parse_item(item: str) -> tuple[str, object, int | None]:
    """One exclude item → (kind, value, port); kind is "all", "local", "name" or "net".
    Raises ConfigError naming the item when it cannot be read."""
    raw = item
    item = item.strip().lower()
    if item == "*":
        return "all", None, None
    if item == "<local>":
        return "local", None, None
    port = None
    if item.startswith("["):  # [v6addr], [v6addr]:port, [v6net/len]
        end = item.find("]")
        if end < 0:
            raise ConfigError(f"exclude item {raw!r}: unclosed '['")
        rest = item[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"exclude item {raw!r}: unexpected {rest!r} after ']'")
            port = _parse_port(rest[1:], raw)
        net = _network(item[1:end])
        if net is None:
            raise ConfigError(f"exclude item {raw!r}: not an IPv6 address")
        return "net", net, port
    net = _network(item)  # also takes bare IPv6 ("::1", "fd00::/8"), which cannot carry a port
    if net is not None:
        return "net", net, None
    host, sep, maybe_port = item.rpartition(":")
    if sep:
        port = _parse_port(maybe_port, raw)
        item = host
        net = _network(item)
        if net is not None:
            return "net", net, port
    if item.startswith("*."):
        item = item[2:]
    elif item.startswith("."):
        item = item[1:]
    item = item.rstrip(".")
    if not item or not _NAME.match(item):
        raise ConfigError(f"exclude item {raw!r}: not a domain, address or CIDR range")
    return "name", item, port


def _portable(kind: str, value, port: int | None) -> str:
    if kind == "name":
        text = str(value)
    else:
        net = value
        text = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
        if port is not None and net.version == 6:
            text = f"[{text}]"
    return f"{text}:{port}" if port is not None else text


def split_items(text: str) -> list[str]:
    return [t for t in _SEPARATORS.split(text or "") if t]


class NoProxy:
    """A parsed exclude list. ``NoProxy(text)`` raises ConfigError for an item it cannot read;
    ``NoProxy(text, strict=False)`` skips such items and lists them in ``invalid``."""

    def __init__(self, text: str | list[str] | tuple[str, ...] = "", *, strict: bool = True):
        items = split_items(" ".join(text)) if isinstance(text, (list, tuple)) else split_items(text)
        self.items: list[str] = []
        self.invalid: list[str] = []
        self._portable: list[str] = []
        self.match_all = False
        self.simple_names = False
        self._rules: list[_Rule] = []
        for item in items:
            try:
                kind, value, port = parse_item(item)
            except ConfigError:
                if strict:
                    raise
                self.invalid.append(item)
                continue
            self.items.append(item)
            if kind == "all":
                self.match_all = True
                self._portable.append("*")
            elif kind == "local":
                self.simple_names = True
            else:
                self._rules.append(_Rule(kind, value, port))
                self._portable.append(_portable(kind, value, port))

    @property
    def text(self) -> str:
        """The list as a comma-separated string (the form curl, Go and Docker all accept)."""
        return ",".join(self.items)

    def portable(self) -> list[str]:
        """The items in the form curl, Go and Python all read the same way, for guests:
        ``example.com`` (no leading ``.`` or ``*.``, which Go or Python read differently),
        canonical addresses and ranges (``169.254.0.0/16``). ``<local>`` has no such form
        and is left out."""
        out: list[str] = []
        for item in self._portable:
            if item not in out:
                out.append(item)
        return out

    def __bool__(self) -> bool:
        return bool(self.items)

    def __eq__(self, other) -> bool:
        return isinstance(other, NoProxy) and self.items == other.items

    def __hash__(self) -> int:
        return hash(tuple(self.items))

    def __repr__(self) -> str:
        return f"NoProxy({self.text!r})"

    def matches(self, host, port: int | None = None) -> bool:
        """Whether the destination (a name or address, optionally with its port) is excluded.
        An item with a port matches only when the same port is given."""
        if self.match_all:
            return True
        if host is None:
            return False
        h = str(host).strip().lower()
        if h.startswith("[") and h.endswith("]"):
            h = h[1:-1]
        h = h.rstrip(".")
        if not h:
            return False
        try:
            addr = ipaddress.ip_address(h)
        except ValueError:
            addr = None
        if addr is None and self.simple_names and "." not in h:
            return True
        for rule in self._rules:
            if rule.port is not None and rule.port != port:
                continue
            if rule.kind == "net":
                if addr is not None and addr.version == rule.value.version and addr in rule.value:
                    return True
            elif addr is None and (h == rule.value or h.endswith("." + rule.value)):
                return True
        return False
