"""``fastnet vpnkit``: vpnkit's command line (reference/vpnkit.md §1.2) on fastnet, run as the
programs that spawn vpnkit run it. Everything here stays on unix sockets in a temporary
directory; rootlesskit end to end is in tests/integration/test_rootlesskit.py."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from fastnet.cli import build_parser
from fastnet.cli.vpnkit import UNSUPPORTED, build_network_config, parse_forwards, smallest_subnet
from fastnet.errors import ConfigError
from tests.integration.rootless import GoVmnetClient
from tests.test_cli import fastnet_cmd, run


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="fnvk")   # short: sun_path holds 108 bytes
    yield d
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["vpnkit", *argv])


def one_line_error(proc: subprocess.CompletedProcess, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fastnet vpnkit: error:") or lines[0].startswith("fastnet: error:"), lines[0]
    return lines[0]


class Vpnkit:
    """`fastnet vpnkit ARGS` in the background; ready once its socket answers a handshake."""

    def __init__(self, *args: str, pass_fds=(), sock: str | None = None):
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([fastnet_cmd(), "vpnkit", *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log, pass_fds=pass_fds)
        self.sock = sock

    def connect(self, timeout: float = 10) -> GoVmnetClient:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return GoVmnetClient(self.sock, deadline)
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"fastnet vpnkit is not serving (exit {self.proc.poll()}): {self.stderr()}")
                time.sleep(0.02)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        finally:
            self.log.close()


# -- the command line ------------------------------------------------------------------------------

def test_unknown_flag_is_one_line_and_exit_2(sockdir):
    line = one_line_error(run("vpnkit", "--ethernet", f"{sockdir}/s", "--no-such-flag", "1"), 2)
    assert "--no-such-flag" in line


def test_ethernet_is_required():
    assert "--ethernet" in one_line_error(run("vpnkit", "--mtu", "1500"), 2)


@pytest.mark.parametrize("flag", sorted(UNSUPPORTED))
def test_flags_fastnet_cannot_honour_are_rejected_with_the_reason(flag, sockdir):
    line = one_line_error(run("vpnkit", "--ethernet", f"{sockdir}/s", flag, "x"), 2)
    assert f"{flag} is not supported by fastnet: {UNSUPPORTED[flag]}" in line
    assert not os.listdir(sockdir)   # nothing was started


@pytest.mark.parametrize("uri", ["hyperv-connect://5b0a8fb5-26dd-4a85-9d97-89a3b2d3b1a2", "vsock://2:62373",
                                 "hyperkit://:62373/./vms/0", "\\\\.\\pipe\\dockerVpnkit"])
def test_ethernet_transports_other_than_unix_sockets_are_rejected(uri):
    line = one_line_error(run("vpnkit", "--ethernet", uri), 2)
    assert "only a unix socket path or fd:N" in line


def test_unambiguous_prefixes_work_as_in_cmdliner():
    # Docker Desktop's own command lines say --dhcp for --dhcp-path.
    args = parse("--ethernet", "/x", "--dhcp", "/nonexistent.json", "--lowest", "192.168.65.10")
    assert args.dhcp_path == "/nonexistent.json" and args.lowest_ip == "192.168.65.10"


def test_addresses_follow_vpnkit():
    cfg = build_network_config(parse("--ethernet", "/x"))
    assert (cfg.subnet, cfg.gateway, cfg.host_alias, cfg.first_guest, cfg.last_guest, cfg.mtu) == (
        ipaddress.IPv4Network("192.168.65.0/24"), ipaddress.IPv4Address("192.168.65.1"),
        ipaddress.IPv4Address("192.168.65.2"), ipaddress.IPv4Address("192.168.65.3"),
        ipaddress.IPv4Address("192.168.65.254"), 1500)
    assert cfg.host_loopback
    # Docker Desktop for Windows: the smallest prefix holding gateway, lowest and highest.
    cfg = build_network_config(parse("--ethernet", "/x", "--gateway-ip", "10.17.0.1", "--host-ip", "10.17.0.2",
                                     "--lowest-ip", "10.17.0.3", "--highest-ip", "10.17.0.14", "--mtu", "8000"))
    assert cfg.subnet == ipaddress.IPv4Network("10.17.0.0/28") and cfg.mtu == 8000
    # The gateway alone moves the whole network (the others follow its /24).
    cfg = build_network_config(parse("--ethernet", "/x", "--gateway-ip", "10.0.2.1"))
    assert (str(cfg.host_alias), str(cfg.first_guest), str(cfg.subnet)) == ("10.0.2.2", "10.0.2.3", "10.0.2.0/24")
    assert smallest_subnet([ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("10.0.0.2")]).prefixlen == 30


def test_host_ip_zero_disables_the_host_loopback_alias():
    # What rootlesskit passes for --disable-host-loopback.
    cfg = build_network_config(parse("--ethernet", "/x", "--host-ip", "0.0.0.0"))
    assert cfg.host_alias is None and cfg.host_loopback is False


def test_dns_dhcp_and_names(tmp_path):
    dhcp = tmp_path / "dhcp.json"
    dhcp.write_text(json.dumps({"searchDomains": ["corp.example", "example"], "domainName": "example"}))
    dns = tmp_path / "dns"
    dns.write_text("# upstream\nnameserver 127.0.0.1#5353\nsearch other.example\ntimeout 2000\n")
    cfg = build_network_config(parse("--ethernet", "/x", "--dhcp-path", str(dhcp), "--dns", str(dns),
                                     "--hosts", str(tmp_path / "hosts"), "--host-names", "host.docker.internal,h.x",
                                     "--gateway-names", "gateway.docker.internal", "--vm-names", "docker-for-desktop",
                                     "--server-macaddr", "f6:16:36:bc:f9:c7"))
    assert cfg.domain == "example" and cfg.search == ["corp.example", "example"]
    d = cfg.dns_service
    assert d.resolv_conf == str(dns) and d.system_fallback is False and d.timeout == 2.0
    assert d.hosts_file == str(tmp_path / "hosts")
    assert d.host_names == ["host.docker.internal", "h.x"] and d.gateway_names == ["gateway.docker.internal"]
    assert d.hosts["docker-for-desktop"] == ["192.168.65.3"]
    assert cfg.gateway_mac == bytes.fromhex("f61636bcf9c7")
    # --domain wins over the file; without names, vpnkit's defaults answer beside Docker's.
    cfg = build_network_config(parse("--ethernet", "/x", "--dhcp-path", str(dhcp), "--domain", "d.example"))
    assert cfg.domain == "d.example"
    assert "host.internal" in cfg.dns_service.host_names and "host.docker.internal" in cfg.dns_service.host_names
    assert cfg.dns_service.hosts["vm.internal"] == ["192.168.65.3"]


def test_dns_file_lines_fastnet_cannot_honour_are_errors(tmp_path):
    dns = tmp_path / "dns"
    dns.write_text("nameserver 127.0.0.1\nzone corp.example\nnameserver 127.0.0.2\n")
    with pytest.raises(ConfigError, match="line 2: 'zone' is not supported"):
        build_network_config(parse("--ethernet", "/x", "--dns", str(dns)))
    proc = run("vpnkit", "--ethernet", str(tmp_path / "s"), "--dns", str(dns))
    assert "'zone' is not supported" in one_line_error(proc, 1)


def test_bad_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "dhcp.json"
    bad.write_text("{not json")
    assert "not valid JSON" in one_line_error(run("vpnkit", "--ethernet", str(tmp_path / "s"), "--dhcp-path", str(bad)), 1)
    assert "--dns" in one_line_error(run("vpnkit", "--ethernet", str(tmp_path / "s"), "--dns", str(tmp_path / "none")), 1)


def test_forwards_syntax():
    assert parse_forwards("udpv4-forwards", "123:127.0.0.1:53859,53:127.0.0.1:5353") == {
        123: ("127.0.0.1", 53859), 53: ("127.0.0.1", 5353)}
    with pytest.raises(ConfigError, match="bad item '123:localhost'"):
        parse_forwards("udpv4-forwards", "123:localhost")


# -- serving ---------------------------------------------------------------------------------------

def test_docker_desktop_command_line_serves_vms(sockdir, tmp_path):
    """Docker Desktop for Mac's vpnkit command line (reference/vpnkit.md §1.2), less the flags
    fastnet rejects: accepted, and a VM gets its address by DHCP the way vpnkit's Go client asks."""
    dhcp = tmp_path / "dhcp.json"
    dhcp.write_text('{"searchDomains": ["example"], "domainName": "example"}')
    path = os.path.join(sockdir, "e.sock")
    vk = Vpnkit("--ethernet", path, "--host-names",
                "host.docker.internal,docker.for.mac.host.internal,docker.for.mac.localhost",
                "--gateway-names", "gateway.docker.internal,docker.for.mac.gateway.internal,docker.for.mac.http.internal",
                "--vm-names", "docker-for-desktop", "--listen-backlog", "32", "--mtu", "1500",
                "--allowed-bind-addresses", "0.0.0.0", "--dhcp", str(dhcp), "--port-max-idle-time", "300",
                "--max-connections", "2000", "--gateway-ip", "192.168.65.1", "--host-ip", "192.168.65.2",
                "--lowest-ip", "192.168.65.3", "--highest-ip", "192.168.65.254",
                "--udpv4-forwards", "123:127.0.0.1:53859", "--gc-compact-interval", "1800", "--pcap-snaplen", "128",
                "--dns", os.devnull, sock=path)
    try:
        c = vk.connect()
        vif = c.connect_vif("5ea2aa0a-d1a1-4a7e-9bb9-6a0b7c0d7a11")
        assert (vif["mtu"], vif["max_packet_size"], vif["mac"]) == (1500, 1550, bytes.fromhex("025000000001"))
        assert c.dhcp(vif["mac"]) == "192.168.65.3"
        # The same UUID on a second connection (rootlesskit does this) gets the same address.
        c2 = vk.connect()
        assert c2.connect_vif("5ea2aa0a-d1a1-4a7e-9bb9-6a0b7c0d7a11")["mac"] == vif["mac"]
        assert c2.dhcp(vif["mac"]) == "192.168.65.3"
        c.close()
        c2.close()
    finally:
        assert vk.stop() == 0, vk.stderr()
    assert not os.path.exists(path)   # our socket file is removed on exit


def test_ethernet_fd_serves_an_inherited_socket(sockdir):
    path = os.path.join(sockdir, "fd.sock")
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(8)
    vk = Vpnkit("--ethernet", f"fd:{ls.fileno()}", "--dns", os.devnull, pass_fds=(ls.fileno(),), sock=path)
    ls.close()
    try:
        c = vk.connect()
        vif = c.connect_vif("0b2c7a1e-4e8f-4a58-9d44-5b3c2f1a9e00")
        assert c.dhcp(vif["mac"]) == "192.168.65.3"
        c.close()
    finally:
        assert vk.stop() == 0, vk.stderr()
    assert os.path.exists(path)   # an inherited socket's file belongs to whoever bound it


def test_ethernet_fd_that_is_not_a_socket(tmp_path):
    with open(tmp_path / "f", "w") as f:
        proc = subprocess.run([fastnet_cmd(), "vpnkit", "--ethernet", f"fd:{f.fileno()}"], capture_output=True,
                              text=True, timeout=60, pass_fds=(f.fileno(),))
    assert "not a socket" in one_line_error(proc, 1)


def test_socket_path_in_use_is_one_line(sockdir):
    path = os.path.join(sockdir, "e.sock")
    first = Vpnkit("--ethernet", path, "--dns", os.devnull, sock=path)
    try:
        first.connect().close()
        line = one_line_error(run("vpnkit", "--ethernet", path, "--dns", os.devnull), 1)
        assert "socket path in use" in line and path in line
    finally:
        assert first.stop() == 0
