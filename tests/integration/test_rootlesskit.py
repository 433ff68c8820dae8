"""rootlesskit ``--net=vpnkit`` with fastnet as the vpnkit binary: a command in rootlesskit's
namespaces fetches a page from a server on the host's loopback.

The binary rootlesskit gets is a wrapper that records its command line and execs ``fastnet
vpnkit "$@"``. Where the installed rootlesskit has no vpnkit driver (Debian's is built without
it), the real-rootlesskit test skips with that reason and ``VpnkitDriver``
(tests/integration/rootless.py) plays the driver's part, step for step as rootlesskit's source
does it, so fastnet still gets exactly rootlesskit's command line, its two connections with one
UUID and its Go client's DHCP.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from tests.integration.netns import need, requires_netns
from tests.integration.rootless import (VPNKIT_SOCKET, VpnkitDriver, driver_unavailable, fastnet_argv,
                                        read_wrapper_log, rootlesskit_missing, run_rootlesskit, write_wrapper)

pytestmark = [requires_netns, pytest.mark.netns]

PAGE = pathlib.Path(__file__).with_name("transfer.py")
HOST_ALIAS = "192.168.65.2"


@pytest.fixture
def work():
    d = tempfile.mkdtemp(prefix="fnrk")   # short: the vmnet socket path must fit sun_path
    yield d
    subprocess.run(["rm", "-rf", d])


@pytest.fixture
def web():
    """A web server on the host's loopback serving this directory."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            cwd=PAGE.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "http.server did not start"
            time.sleep(0.05)
    yield port
    proc.kill()
    proc.wait(5)


def wrapper(work: str, *extra: str) -> tuple[str, str]:
    """The --vpnkit-binary script; fastnet's DNS is pointed at nothing (no host resolver)."""
    log = os.path.join(work, "argv.log")
    return write_wrapper(os.path.join(work, "vpnkit"), fastnet_argv("vpnkit"), log,
                         ["--dns", os.devnull, *extra]), log


def curl_page(run, port: int) -> None:
    r = run("curl", "-sS", "-m", "15", f"http://{HOST_ALIAS}:{port}/{PAGE.name}", timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == PAGE.read_text()


def test_rootlesskit_net_vpnkit(work, web):
    """The real thing, where rootlesskit has the driver."""
    reason = rootlesskit_missing() or driver_unavailable("vpnkit")
    if reason:
        pytest.skip(reason)
    need("curl")
    binary, log = wrapper(work)
    state = os.path.join(work, "state")
    r = run_rootlesskit("vpnkit", binary, ["curl", "-sS", "-m", "15", f"http://{HOST_ALIAS}:{web}/{PAGE.name}"],
                        state_dir=state, timeout=90)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout == PAGE.read_text()
    assert read_wrapper_log(log) == [["--ethernet", os.path.join(state, VPNKIT_SOCKET), "--mtu", "1500"]]


def test_rootlesskit_vpnkit_driver_fetches_from_the_host(work, web):
    need("curl", "unshare", "nsenter")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(15)

    def echo():
        try:
            data, addr = udp.recvfrom(100)
            udp.sendto(b"fwd:" + data, addr)
        except OSError:
            pass

    th = threading.Thread(target=echo, daemon=True)
    th.start()
    # vpnkit's gateway forwards (Docker Desktop forwards NTP this way), added by the wrapper.
    binary, log = wrapper(work, "--udpv4-forwards", f"123:127.0.0.1:{udp.getsockname()[1]}")
    state = os.path.join(work, "state")
    drv = VpnkitDriver(binary, state, log_dir=work).start()
    try:
        assert (drv.ip, drv.mac) == ("192.168.65.3", "02:50:00:00:00:01")
        curl_page(drv.run, web)
        r = drv.run(sys.executable, "-c", "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                    "s.settimeout(10); s.sendto(b'ntp', ('192.168.65.1', 123)); print(s.recvfrom(100))", timeout=20)
        assert r.returncode == 0 and "b'fwd:ntp', ('192.168.65.1', 123)" in r.stdout, r.stdout + r.stderr
        # It really ran as the child's root in its own user namespace.
        assert os.readlink(f"/proc/{drv.child.pid}/ns/user") != os.readlink("/proc/self/ns/user")
        assert drv.vpnkit.poll() is None
    finally:
        drv.close()
        udp.close()
    assert read_wrapper_log(log) == [["--ethernet", os.path.join(state, VPNKIT_SOCKET), "--mtu", "1500"]]


def test_rootlesskit_vpnkit_driver_disable_host_loopback(work, web):
    need("curl", "ping", "unshare", "nsenter")
    binary, log = wrapper(work)
    state = os.path.join(work, "state")
    drv = VpnkitDriver(binary, state, disable_host_loopback=True, log_dir=work).start()
    try:
        t0 = time.monotonic()
        r = drv.run("curl", "-sS", "-m", "8", f"http://{HOST_ALIAS}:{web}/{PAGE.name}", timeout=30)
        # No alias at all: nobody answers ARP for it, so the guest's kernel gives up at once.
        assert r.returncode == 7 and r.stdout == "", r.stderr
        assert time.monotonic() - t0 < 8
        # The gateway still answers.
        r = drv.run("ping", "-c1", "-W5", "192.168.65.1", timeout=15)
        assert r.returncode == 0, r.stdout + r.stderr
        assert drv.vpnkit.poll() is None
    finally:
        drv.close()
    assert read_wrapper_log(log) == [["--ethernet", os.path.join(state, VPNKIT_SOCKET), "--mtu", "1500",
                                      "--host-ip", "0.0.0.0"]]
