"""The DHCP server with real clients: busybox udhcpc and ISC dhclient in a guest namespace whose
TAP is a port of a VirtualNetwork, brought up with no address so the client configures it. The
clients run our own scripts, which record what they were given and apply it with iproute2;
nothing touches the machine's /etc/resolv.conf (each namespace gets a private one)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pathlib
import shutil
import signal
import time

import pytest

from fastnet import _io
from fastnet.services.config import NetworkConfig
from tests.integration.harness import GATEWAY, NetworkRunner
from tests.integration.netns import need, requires_netns

pytestmark = [requires_netns, pytest.mark.netns]

# Every value differs from the defaults, so each one the client reports came from the config.
DNS = "192.168.65.53"
CONFIG = dict(mtu=1400, domain="fastnet.test", search=["example.com", "corp.example.com"], lease_time=3600,
              dns=ipaddress.IPv4Address(DNS))


@contextlib.contextmanager
def tap_network(ns, config: NetworkConfig):
    """A VirtualNetwork with the namespace's tap0 attached as a TAP port; tap0 is up with no
    address."""
    runner = NetworkRunner(config)
    fd, _ = _io.tap_open("tap0", ns.path)
    try:
        ns.ip("link", "set", "tap0", "up")
    except BaseException:
        os.close(fd)
        raise
    with runner:
        runner.call(lambda: runner.net.attach(fd, "tap", link_kind=_io.LINK_TAP))
        yield runner


def guest_mac(ns) -> str:
    return ns.run("cat", "/sys/class/net/tap0/address", check=True).stdout.strip()


def leases(runner) -> list[dict]:
    return runner.call(runner.net.dhcp.leases)


def read_env(path: pathlib.Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key] = value
    return env


def write_script(path: pathlib.Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def assert_configured(ns, ip: str, mtu: int) -> None:
    """The script applied the lease: the address, the default route, the MTU; the gateway
    answers a ping (the C core's echo responder, over the route the lease gave)."""
    addr = ns.run("ip", "-4", "-o", "addr", "show", "dev", "tap0", check=True).stdout
    assert f"inet {ip}/24" in addr, addr
    route = ns.run("ip", "route", "show", "default", check=True).stdout
    assert f"via {GATEWAY}" in route, route
    assert f"mtu {mtu} " in ns.run("ip", "link", "show", "tap0", check=True).stdout
    r = ns.run("ping", "-c1", "-W1", GATEWAY, timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr


# -- busybox udhcpc --------------------------------------------------------------------------------

def udhcpc() -> list[str]:
    # Debian's busybox package has no udhcpc link; busybox-static or other distributions may.
    if shutil.which("udhcpc"):
        return ["udhcpc"]
    need("busybox")
    return ["busybox", "udhcpc"]


UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc runs this with the event as $1 and the lease in the environment.
env > "{dir}/udhcpc.$1.env"
case "$1" in
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$subnet" broadcast "$broadcast" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    ip route add default via "$router" dev "$interface"
    ;;
deconfig)
    ip addr flush dev "$interface"
    ;;
esac
exit 0
"""


@pytest.mark.parametrize("flags,ip", [([], "192.168.65.3"), (["-B"], "192.168.65.3"),
                                      (["-r", "192.168.65.50"], "192.168.65.50")],
                         ids=["unicast", "broadcast-flag", "requested-address"])
def test_udhcpc(guest_ns, tmp_path, flags, ip):
    need("ping")
    guest_ns.set_resolv_conf(f"nameserver {DNS}\n")
    script = write_script(tmp_path / "udhcpc.sh", UDHCPC_SCRIPT.format(dir=tmp_path))
    with tap_network(guest_ns, NetworkConfig(**CONFIG)) as net:
        r = guest_ns.run(*udhcpc(), "-i", "tap0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script,
                         "-x", "hostname:bbguest", *flags, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        env = read_env(tmp_path / "udhcpc.bound.env")
        assert env["ip"] == ip
        assert env["subnet"] == "255.255.255.0" and env["mask"] == "24"
        assert env["broadcast"] == "192.168.65.255"
        assert env["router"] == GATEWAY
        assert env["serverid"] == GATEWAY
        assert env["dns"] == DNS
        assert env["domain"] == "fastnet.test"
        assert env["search"] == "example.com corp.example.com"     # option 119, decoded
        assert env["mtu"] == "1400"
        assert env["lease"] == "3600"
        assert env["opt58"] == f"{1800:08x}" and env["opt59"] == f"{3150:08x}"   # T1, T2
        assert_configured(guest_ns, ip, 1400)
        mac = guest_mac(guest_ns)
        (lease,) = leases(net)
        assert lease["ip"] == ip and lease["mac"] == mac and lease["hostname"] == "bbguest"
        assert lease["state"] == "bound" and 3590 <= lease["expires_in"] <= 3600
        # udhcpc sends its MAC as client identifier (type 1, RFC 2132 §9.14); it is echoed.
        assert lease["client_id"] == "01:" + mac and env["opt61"] == "01" + mac.replace(":", "")
        stats = net.call(lambda: dict(net.net.dhcp.stats))
        assert stats["offer"] >= 1 and stats["ack"] == 1 and stats["malformed"] == 0


# -- ISC dhclient ----------------------------------------------------------------------------------

DHCLIENT_SCRIPT = """#!/bin/sh
# dhclient runs this with $reason and the lease in new_* variables (dhclient-script(8)).
env > "{dir}/dhclient.$reason.env"
case "$reason" in
BOUND|RENEW|REBIND|REBOOT)
    ip addr flush dev "$interface"
    ip addr add "$new_ip_address/$new_subnet_mask" broadcast "$new_broadcast_address" dev "$interface"
    [ -n "$new_interface_mtu" ] && ip link set dev "$interface" mtu "$new_interface_mtu"
    ip route add default via "$new_routers" dev "$interface"
    ;;
RELEASE|STOP|EXPIRE|FAIL)
    ip addr flush dev "$interface"
    ;;
esac
exit 0
"""

DHCLIENT_CONF = """send host-name "dhguest";
send dhcp-client-identifier "fastnet-test";
request subnet-mask, broadcast-address, routers, domain-name-servers, domain-name, domain-search,
        interface-mtu;
timeout 15;
initial-interval 1;
"""

# A lease dhclient remembers from an earlier run: it starts in INIT-REBOOT and asks for it.
REMEMBERED = """lease {{
  interface "tap0";
  fixed-address {ip};
  option subnet-mask 255.255.255.0;
  option dhcp-server-identifier {server};
  renew 4 2099/01/01 00:00:00;
  rebind 4 2099/01/01 00:00:00;
  expire 4 2099/01/01 00:00:00;
}}
"""


class Dhclient:
    """dhclient with our script, config, lease and pid files (never the system's); the daemon
    it leaves after binding is stopped at exit through its pid file."""

    def __init__(self, ns, d: pathlib.Path):
        need("dhclient")
        self.ns, self.dir = ns, d
        self.daemonized = False
        self.lease_file, self.pid_file = d / "dhclient.leases", d / "dhclient.pid"
        self.args = ["-v", "-cf", str(d / "dhclient.conf"), "-lf", str(self.lease_file), "-pf", str(self.pid_file),
                     "-sf", write_script(d / "dhclient.sh", DHCLIENT_SCRIPT.format(dir=d))]
        (d / "dhclient.conf").write_text(DHCLIENT_CONF)
        # dhclient-script would rewrite resolv.conf: ours does not, and `ip netns exec` puts a
        # private one over /etc/resolv.conf in case anything tries.
        ns.set_resolv_conf(f"nameserver {DNS}\n")

    def run(self, *extra: str):
        r = self.ns.run("dhclient", *self.args, *extra, "tap0", timeout=40)
        # After binding, `dhclient -1` leaves a daemon; `dhclient -r` stops it.
        self.daemonized = "-r" not in extra and r.returncode == 0
        return r

    def env(self, reason: str) -> dict[str, str]:
        return read_env(self.dir / f"dhclient.{reason}.env")

    def daemon_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # The daemon writes its pid file after it forks, which can be after `dhclient -1` has
        # returned: give it a moment to appear.
        pid = wait_for(self.daemon_pid, 3.0) if self.daemonized else self.daemon_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_dhclient_lease_then_release(guest_ns, tmp_path):
    need("ping")
    with tap_network(guest_ns, NetworkConfig(**CONFIG)) as net, Dhclient(guest_ns, tmp_path) as dh:
        r = dh.run("-1")
        assert r.returncode == 0, r.stderr
        assert "DHCPACK of 192.168.65.3 from 192.168.65.1" in r.stderr
        env = dh.env("BOUND")
        assert env["new_ip_address"] == "192.168.65.3"
        assert env["new_subnet_mask"] == "255.255.255.0"
        assert env["new_broadcast_address"] == "192.168.65.255"
        assert env["new_routers"] == GATEWAY
        assert env["new_dhcp_server_identifier"] == GATEWAY
        assert env["new_domain_name_servers"] == DNS
        assert env["new_domain_name"] == "fastnet.test"
        assert env["new_domain_search"] == "example.com. corp.example.com."
        assert env["new_interface_mtu"] == "1400"
        assert env["new_dhcp_lease_time"] == "3600"
        assert env["new_dhcp_renewal_time"] == "1800" and env["new_dhcp_rebinding_time"] == "3150"
        assert env["new_dhcp_client_identifier"] == "fastnet-test"    # echoed, RFC 6842
        lease_text = dh.lease_file.read_text()
        for line in ("fixed-address 192.168.65.3;", "option routers 192.168.65.1;",
                     f"option domain-name-servers {DNS};", 'option domain-name "fastnet.test";',
                     'option domain-search "example.com.", "corp.example.com.";', "option interface-mtu 1400;",
                     "option dhcp-lease-time 3600;", "option subnet-mask 255.255.255.0;",
                     "option broadcast-address 192.168.65.255;", "option dhcp-server-identifier 192.168.65.1;"):
            assert line in lease_text, lease_text
        assert_configured(guest_ns, "192.168.65.3", 1400)
        (lease,) = leases(net)
        assert lease["ip"] == "192.168.65.3" and lease["mac"] == guest_mac(guest_ns)
        assert lease["hostname"] == "dhguest" and lease["state"] == "bound"
        assert lease["client_id"] == b"fastnet-test".hex(":")
        assert dh.daemon_pid() is not None

        r = dh.run("-r")                         # stops the daemon, sends DHCPRELEASE
        assert r.returncode == 0, r.stderr
        assert "DHCPRELEASE of 192.168.65.3" in r.stderr
        assert wait_for(lambda: leases(net) == []), leases(net)
        assert net.call(lambda: net.net.dhcp.stats["release"]) == 1
        assert (tmp_path / "dhclient.RELEASE.env").exists()
        assert wait_for(lambda: dh.daemon_pid() is None)


@pytest.mark.parametrize("remembered,reason,ip,naks", [
    ("192.168.65.77", "REBOOT", "192.168.65.77", 0),   # fastnet restarted: the address is kept
    ("10.9.9.9", "BOUND", "192.168.65.3", 1),          # another network: NAK, then DISCOVER
], ids=["keeps-address", "wrong-network"])
def test_dhclient_init_reboot(guest_ns, tmp_path, remembered, reason, ip, naks):
    with tap_network(guest_ns, NetworkConfig(**CONFIG)) as net, Dhclient(guest_ns, tmp_path) as dh:
        server = GATEWAY if remembered.startswith("192.168.65.") else "10.9.9.1"
        dh.lease_file.write_text(REMEMBERED.format(ip=remembered, server=server))
        r = dh.run("-1")
        assert r.returncode == 0, r.stderr
        assert f"DHCPREQUEST for {remembered} on tap0" in r.stderr
        assert dh.env(reason)["new_ip_address"] == ip
        stats = net.call(lambda: dict(net.net.dhcp.stats))
        assert stats["nak"] == naks and stats["ack"] == 1
        assert [x["ip"] for x in leases(net)] == [ip]
        assert wait_for(dh.daemon_pid)
