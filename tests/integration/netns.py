"""Network namespaces for tests: the Linux kernel in a namespace is the guest.

Everything a test creates carries the test run's prefix and is removed afterwards. Traffic
stays inside these namespaces and the host's loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

PREFIX = f"fnt{os.getpid() % 100000}"


def netns_unavailable() -> str | None:
    """Why namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, TAP devices)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    probe = f"{PREFIX}probe"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


_REASON = netns_unavailable()
requires_netns = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def need(*tools: str) -> None:
    """Fail (not skip) when a tool the README's setup installs is missing: CI must run these."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools {missing}: `make test` installs them (scripts/install-deps.sh)")


class Netns:
    """A named network namespace with lo up; run commands inside it."""

    def __init__(self, tag: str = "g"):
        self.name = f"{PREFIX}{tag}{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.path = f"/var/run/netns/{self.name}"
        self.ip("link", "set", "lo", "up")

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.name, *args], check=True, capture_output=True)

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, timeout: float = 30, check: bool = False, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.cmd(*args), timeout=timeout, check=check, **kw)

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(*args), **kw)

    def set_resolv_conf(self, text: str) -> None:
        """`ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf."""
        d = f"/etc/netns/{self.name}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/resolv.conf", "w") as f:
            f.write(text)

    def set_hosts(self, text: str) -> None:
        """/etc/netns/NAME/hosts is bind-mounted over /etc/hosts the same way: names for
        programs in the namespace without any DNS."""
        d = f"/etc/netns/{self.name}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/hosts", "w") as f:
            f.write(text)

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        shutil.rmtree(f"/etc/netns/{self.name}", ignore_errors=True)


class VethLink:
    """A veth pair from the host namespace into ``ns`` (``eth0`` there), with an address on
    each side, e.g. host_cidr="10.200.0.1/24", ns_cidr="10.200.0.2/24"; extra addresses for
    the inside can be given. The host side carries the test's prefix; delete() removes both ends."""

    def __init__(self, ns: Netns, host_cidr: str, ns_cidr: str, extra_ns_cidrs: tuple[str, ...] = ()):
        tag = uuid.uuid4().hex[:4]
        self.host_if = f"{PREFIX}h{tag}"
        peer = f"{PREFIX}p{tag}"
        subprocess.run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", peer], check=True,
                       capture_output=True)
        try:
            subprocess.run(["ip", "link", "set", peer, "netns", ns.name], check=True, capture_output=True)
            ns.ip("link", "set", peer, "name", "eth0")
            for cidr in (ns_cidr, *extra_ns_cidrs):
                ns.ip("addr", "add", cidr, "dev", "eth0")
            ns.ip("link", "set", "eth0", "up")
            subprocess.run(["ip", "addr", "add", host_cidr, "dev", self.host_if], check=True, capture_output=True)
            subprocess.run(["ip", "link", "set", self.host_if, "up"], check=True, capture_output=True)
        except BaseException:
            self.delete()
            raise

    def routes_via_link(self, address: str) -> bool:
        """Whether the host namespace sends traffic for address into this link (and nowhere else)."""
        r = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)
        return r.returncode == 0 and f" dev {self.host_if} " in r.stdout + " "

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
