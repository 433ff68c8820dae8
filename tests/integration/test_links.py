"""Each VM link end to end: a guest namespace's TAP is bridged to fastnet by a relay playing the
hypervisor (tests/integration/relays.py: HyperKit's vmnet client, QEMU's stream socket, vfkit's
unixgram socket, gvforwarder's stdio), and real programs in the guest use the network: ping the
gateway, curl and UDP to a server on the host's loopback through the host alias, iperf3 both
ways. Plus vmnet with several VMs on one socket, and a VM reconnecting with its UUID."""

from __future__ import annotations

import json
import os
import pathlib
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuidlib

import pytest

from tests.integration.harness import GATEWAY, HOST_ALIAS, GUEST, NetworkRunner
from tests.integration.netns import Netns, need, requires_netns

pytestmark = [requires_netns, pytest.mark.netns]

REPO = pathlib.Path(__file__).resolve().parents[2]
PAYLOAD = pathlib.Path(__file__).with_name("transfer.py")


# -- host services on the loopback ---------------------------------------------------------------

def wait_tcp(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HostServices:
    """An HTTP server, a UDP echo server and an iperf3 server on 127.0.0.1."""

    def __init__(self):
        self.http_port = free_tcp_port()
        self.http = subprocess.Popen([sys.executable, "-m", "http.server", str(self.http_port), "--bind", "127.0.0.1"],
                                     cwd=PAYLOAD.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.iperf_port = free_tcp_port()
        self.iperf = subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(self.iperf_port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp_port = self.udp.getsockname()[1]
        self._udp_thread = threading.Thread(target=self._echo, daemon=True)
        self._udp_thread.start()
        wait_tcp(self.http_port)
        wait_tcp(self.iperf_port)

    def _echo(self):
        while True:
            try:
                data, addr = self.udp.recvfrom(65536)
                self.udp.sendto(b"echo:" + data, addr)
            except OSError:
                return

    def close(self):
        for p in (self.http, self.iperf):
            p.kill()
            p.wait(5)
        self.udp.close()


@pytest.fixture
def host():
    # Per test: a client that hangs leaves iperf3's server "busy" for whoever comes next.
    need("curl", "iperf3", "ping", "ip")
    h = HostServices()
    yield h
    h.close()


@pytest.fixture
def net():
    with NetworkRunner() as runner:
        yield runner


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="fnlink")   # short: sun_path holds 108 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def guests():
    made: list[Netns] = []

    def make(tag: str = "g") -> Netns:
        ns = Netns(tag)
        made.append(ns)
        return ns
    yield make
    for ns in made:
        ns.delete()


# -- relays --------------------------------------------------------------------------------------

class Relay:
    def __init__(self, mode: str, ns: Netns, *args: str, log_dir: str):
        self.log = open(os.path.join(log_dir, f"relay-{mode}-{ns.name}.log"), "w+")
        cmd = [sys.executable, "-m", "tests.integration.relays", mode, "--netns", ns.path, *args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=self.log, text=True)

    def ready(self, timeout: float = 15) -> dict:
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if r else ""
        if not line:
            err = self.stderr()
            self.close()
            raise AssertionError(f"relay said nothing within {timeout}s (exit {self.proc.returncode}): {err}")
        return json.loads(line)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()
        self.log.close()


@pytest.fixture
def relays(sockdir):
    made: list[Relay] = []

    def start(mode: str, ns: Netns, *args: str) -> Relay:
        r = Relay(mode, ns, *args, log_dir=sockdir)
        made.append(r)
        return r
    yield start
    for r in made:
        r.close()


# -- what a guest does ----------------------------------------------------------------------------

UDP_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for attempt in range(3):
    s.sendto(b"fastnet-udp", (sys.argv[1], int(sys.argv[2])))
    try:
        data, addr = s.recvfrom(100)
    except socket.timeout:
        continue
    print(data.decode(), addr[0])
    sys.exit(0)
sys.exit("no echo")
"""


def iperf(ns: Netns, host: HostServices, reverse: bool, diag=None) -> float:
    args = ["iperf3", "-c", HOST_ALIAS, "-p", str(host.iperf_port), "-t", "1", "-J"] + (["-R"] if reverse else [])
    try:
        r = ns.run(*args, timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"iperf3 {'-R ' if reverse else ''}hung; {diag() if diag else ''}") from None
    res = json.loads(r.stdout) if r.stdout.strip() else {}
    assert r.returncode == 0 and "error" not in res, (res.get("error"), r.stdout[-3000:], r.stderr)
    return res["end"]["sum_received"]["bits_per_second"]


def exercise(ns: Netns, host: HostServices, *, iperf3: bool = True, diag=None) -> dict:
    """ping the gateway, curl and UDP echo through the host alias, iperf3 up and down."""
    r = ns.run("ping", "-c1", "-W5", GATEWAY, timeout=15)
    assert r.returncode == 0, r.stdout + r.stderr
    r = ns.run("curl", "-sS", "-m", "15", f"http://{HOST_ALIAS}:{host.http_port}/{PAYLOAD.name}", timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == PAYLOAD.read_text()
    r = ns.run(sys.executable, "-c", UDP_CLIENT, HOST_ALIAS, str(host.udp_port), timeout=15)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["echo:fastnet-udp", HOST_ALIAS]
    out = {}
    if iperf3:
        out["up_gbit"] = round(iperf(ns, host, reverse=False, diag=diag) / 1e9, 3)
        out["down_gbit"] = round(iperf(ns, host, reverse=True, diag=diag) / 1e9, 3)
        assert out["up_gbit"] > 0 and out["down_gbit"] > 0
    return out


def configure(ns: Netns, ip: str) -> None:
    ns.ip("addr", "add", f"{ip}/24", "dev", "tap0")
    ns.ip("route", "add", "default", "via", GATEWAY)


STATIC = ["--addr", f"{GUEST}/24", "--gateway", GATEWAY]


# -- the links -----------------------------------------------------------------------------------

def test_vmnet(net, host, guests, relays, sockdir, record_property):
    path = net.vmnet(os.path.join(sockdir, "vmnet.sock")).path
    ns = guests()
    vm_uuid = str(uuidlib.uuid4())
    relay = relays("vmnet", ns, "--path", path, "--uuid", vm_uuid)
    got = relay.ready()
    assert got["ready"], got
    assert (got["mtu"], got["max_packet_size"]) == (1500, 1550)
    lease = net.call(net.net.pool.lookup_mac, bytes.fromhex(got["mac"].replace(":", "")))
    assert lease is not None and lease.uuid == vm_uuid
    configure(ns, str(lease.ip))
    (port,) = net.wait_ports(1)
    assert port.kind == "vmnet" and port.uuid == vm_uuid and port.lease is lease
    speeds = exercise(ns, host, diag=net.diagnose)
    record_property("vmnet", speeds)
    print("vmnet", speeds)
    st = net.stats()["ports"][0]
    assert st["link"]["rx_bad_len"] == 0


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_qemu(net, host, guests, relays, sockdir, transport, record_property):
    if transport == "unix":
        lst = net.qemu(f"unix://{os.path.join(sockdir, 'qemu.sock')}")
        target = f"unix://{lst.bound_address}"
    else:
        lst = net.qemu("tcp://127.0.0.1:0")
        target = "tcp://{}:{}".format(*lst.bound_address)
    ns = guests()
    relay = relays("qemu", ns, "--connect", target, *STATIC)
    assert relay.ready()["ready"]
    (port,) = net.wait_ports(1)
    assert port.kind == "qemu"
    speeds = exercise(ns, host, diag=net.diagnose)
    record_property(f"qemu-{transport}", speeds)
    print(f"qemu-{transport}", speeds)


@pytest.mark.parametrize("magic", [False, True], ids=["plain", "legacy-VFKT"])
def test_vfkit(net, host, guests, relays, sockdir, magic, record_property):
    lst = net.vfkit(os.path.join(sockdir, "vfkit.sock"))
    ns = guests()
    relay = relays("vfkit", ns, "--path", lst.path, "--bind", os.path.join(sockdir, "vm.sock"),
                   *(["--magic"] if magic else []), *STATIC)
    assert relay.ready()["ready"]
    speeds = exercise(ns, host, diag=net.diagnose)
    (port,) = net.wait_ports(1)
    assert port.kind == "vfkit" and port.info["legacy_magic"] is magic
    record_property(f"vfkit-{'magic' if magic else 'plain'}", speeds)
    print("vfkit", speeds)


def test_stdio(host, guests, relays, record_property):
    ns = guests()
    relay = relays("stdio", ns, *STATIC, "--", sys.executable, "-m", "tests.integration.harness", "stdio")
    assert relay.ready()["ready"]
    speeds = exercise(ns, host, diag=relay.stderr)
    record_property("stdio", speeds)
    print("stdio", speeds)


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "tso"])
def test_tap(net, host, guests, offload, record_property):
    # No relay: the network holds the TAP itself (containers, rootless namespaces).
    ns = guests()
    port = net.tap(ns.path, offload=offload)
    assert port.kind == "tap"
    ns.ip("link", "set", "tap0", "up")
    configure(ns, GUEST)
    speeds = exercise(ns, host, diag=net.diagnose)
    if offload:
        assert net.stats()["ports"][0]["link"]["rx_gso"] > 0   # the guest handed over super-frames
    record_property(f"tap-{'tso' if offload else 'plain'}", speeds)
    print(f"tap-{'tso' if offload else 'plain'}", speeds)


# -- vmnet with several VMs ------------------------------------------------------------------------

def test_two_vms_on_one_vmnet_socket_ping_each_other(net, guests, relays, sockdir):
    need("ping")
    path = net.vmnet(os.path.join(sockdir, "vmnet.sock")).path
    a, b = guests("a"), guests("b")
    ra = relays("vmnet", a, "--path", path, "--uuid", str(uuidlib.uuid4()))
    rb = relays("vmnet", b, "--path", path, "--preferred", "192.168.65.77",
                "--addr", "192.168.65.77/24", "--gateway", GATEWAY)
    ga, gb = ra.ready(), rb.ready()
    assert ga["ready"] and gb["ready"] and ga["mac"] != gb["mac"]
    ip_a = str(net.call(net.net.pool.lookup_mac, bytes.fromhex(ga["mac"].replace(":", ""))).ip)
    configure(a, ip_a)
    net.wait_ports(2)
    r = a.run("ping", "-c3", "-i0.2", "-W5", "192.168.65.77", timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    r = b.run("ping", "-c3", "-i0.2", "-W5", ip_a, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    # The guests also still reach the gateway, and each other's frames went through the switch.
    assert a.run("ping", "-c1", "-W5", GATEWAY, timeout=15).returncode == 0
    sw = net.stats()["switch"]
    assert sw["ports"] == 2 and sw["switched"] >= 6


def test_vmnet_reconnect_with_the_same_uuid(net, host, guests, relays, sockdir):
    path = net.vmnet(os.path.join(sockdir, "vmnet.sock")).path
    ns = guests()
    vm_uuid = str(uuidlib.uuid4())
    first = relays("vmnet", ns, "--path", path, "--uuid", vm_uuid)
    got1 = first.ready()
    lease = net.call(net.net.pool.lookup_mac, bytes.fromhex(got1["mac"].replace(":", "")))
    configure(ns, str(lease.ip))
    assert ns.run("ping", "-c1", "-W5", GATEWAY, timeout=15).returncode == 0
    # The hypervisor restarts: the old connection goes away (and with the relay, the guest's
    # TAP), the VM comes back with its UUID and must get the same MAC, so the same IP.
    first.close()
    deadline = time.monotonic() + 10
    while net.ports() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert net.ports() == []
    second = relays("vmnet", ns, "--path", path, "--uuid", vm_uuid)
    got2 = second.ready()
    assert got2["mac"] == got1["mac"]
    (port,) = net.wait_ports(1)
    assert port.lease.ip == lease.ip
    configure(ns, str(lease.ip))
    exercise(ns, host, iperf3=False)


def test_vmnet_disconnect_reaches_the_relay(net, guests, relays, sockdir):
    path = net.vmnet(os.path.join(sockdir, "vmnet.sock")).path
    ns = guests()
    relay = relays("vmnet", ns, "--path", path, "--preferred", "10.9.9.9")
    got = relay.ready()
    assert got == {**got, "ready": False, "error": "Preferred IP address out of range."}
    assert net.ports() == []


# -- DHCP over a link ------------------------------------------------------------------------------

UDHCPC_SCRIPT = """#!/bin/sh
# busybox udhcpc calls this with the lease in the environment.
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    echo "lease $ip $mask $router" >> "$LEASE_LOG"
    ;;
esac
exit 0
"""


def test_vmnet_guest_configures_itself_with_dhcp(net, host, guests, relays, sockdir):
    need("busybox")
    path = net.vmnet(os.path.join(sockdir, "vmnet.sock")).path
    ns = guests()
    relay = relays("vmnet", ns, "--path", path, "--uuid", str(uuidlib.uuid4()))
    got = relay.ready()
    lease = net.call(net.net.pool.lookup_mac, bytes.fromhex(got["mac"].replace(":", "")))
    script = os.path.join(sockdir, "udhcpc.sh")
    with open(script, "w") as f:
        f.write(UDHCPC_SCRIPT)
    os.chmod(script, 0o755)
    log = os.path.join(sockdir, "leases")
    r = ns.run("env", f"LEASE_LOG={log}", "busybox", "udhcpc", "-i", "tap0", "-f", "-q", "-n", "-t", "5", "-T", "2",
               "-s", script, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    words = open(log).read().split()
    assert words[:2] == ["lease", str(lease.ip)], words
    assert words[2] == "24"   # busybox gives the mask as a prefix length
    assert words[3] == GATEWAY
    exercise(ns, host, iperf3=False)
