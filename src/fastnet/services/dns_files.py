"""The host's files the DNS service follows: the hosts file (names it answers itself) and
resolv.conf (the nameservers it forwards to). Both change under a running fastnet — VPN clients
and NetworkManager rewrite resolv.conf, users edit /etc/hosts — so each is re-read when it
changes, checked at most once per interval when the service asks (no thread, no timer)."""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from typing import Callable, Generic, TypeVar

from fastnet.services.config import parse_server

log = logging.getLogger("fastnet.dns")

T = TypeVar("T")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# A file modified this recently may have changed again within the same filesystem timestamp
# tick (jiffy-grained on Linux), leaving inode, size and mtime as they were: its text is compared.
RECENT = 2.0


class WatchedFile(Generic[T]):
    """A file's parsed content, read again when its inode, size or mtime changes (an editor's
    rename-over and a symlink re-pointed at another file count too: stat follows the link), or,
    while it was modified in the last RECENT seconds, when its text differs.
    A missing or unreadable file parses as empty text."""

    def __init__(self, path: str | None, parse: Callable[[str], T], *, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.path = path
        self.parse = parse
        self.interval = interval
        self.clock = clock
        self.reloads = 0
        self._sig: tuple | None = None
        self._text = ""
        self._checked = -float("inf")
        self._value: T = parse("")
        self._read = False    # read on first use: a network nobody asks a name reads nothing

    def _signature(self) -> tuple | None:
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def check(self, force: bool = False) -> bool:
        """Re-read the file if it changed; True when it did."""
        if self.path is None:
            return False
        force = force or not self._read
        self._read = True
        now = self.clock()
        if not force and now - self._checked < self.interval:
            return False
        self._checked = now
        sig = self._signature()
        recent = sig is not None and time.time() - sig[3] / 1e9 < RECENT
        if sig == self._sig and not force and not recent:
            return False
        text = ""
        if sig is not None:
            try:
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError as e:
                log.warning("cannot read %s: %s", self.path, e.strerror)
        if sig == self._sig and text == self._text and not force:
            return False
        self._sig, self._text = sig, text
        self._value = self.parse(text)
        self.reloads += 1
        return True

    @property
    def value(self) -> T:
        self.check()
        return self._value


def parse_hosts(text: str) -> dict[str, list[IPAddress]]:
    """hosts(5): an address, then its names; '#' starts a comment. Names are case-insensitive,
    kept lower-case without a trailing dot; an address may be listed for a name many times."""
    out: dict[str, list[IPAddress]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            addr = ipaddress.ip_address(fields[0].split("%", 1)[0])
        except ValueError:
            continue
        for name in fields[1:]:
            name = name.lower().rstrip(".")
            if name:
                addrs = out.setdefault(name, [])
                if addr not in addrs:
                    addrs.append(addr)
    return out


def parse_resolv_conf(text: str) -> list[tuple[str, int]]:
    """The nameserver lines of resolv.conf(5), in order, as (address, port). Lines glibc would
    skip (unparseable addresses) are skipped; "IP#PORT" names a port other than 53, as in vpnkit's
    and dnsmasq's files, which is how a test points fastnet at a server on a loopback port."""
    servers: list[tuple[str, int]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            server = parse_server(fields[1])
        except ValueError:
            continue
        if server not in servers:
            servers.append(server)
    return servers
