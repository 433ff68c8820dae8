"""Published ports without a guest: the spec syntax, the errors users see, the state file."""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import subprocess
import sys

import pytest

from fastnet.services.ports import (PortError, PortSpec, PublishedPorts, _bind_error, parse_host_side,
                                    parse_publish)
from tests.integration.harness import NetworkRunner

G = ipaddress.IPv4Address("192.168.65.3")


@pytest.mark.parametrize("text, want", [
    ("8080:192.168.65.3:80", ("tcp", None, 8080, G, 80, None)),
    ("0:192.168.65.3:80", ("tcp", None, 0, G, 80, None)),
    ("127.0.0.1:8080:192.168.65.3:80", ("tcp", "127.0.0.1", 8080, G, 80, None)),
    ("0.0.0.0:8080:192.168.65.3:80", ("tcp", "0.0.0.0", 8080, G, 80, None)),
    ("[::1]:8080:192.168.65.3:80", ("tcp", "::1", 8080, G, 80, None)),
    ("localhost:8080:192.168.65.3:80", ("tcp", "127.0.0.1", 8080, G, 80, None)),
    ("127.0.0.1:8080:80", ("tcp", "127.0.0.1", 8080, None, 80, None)),
    ("8080:80", ("tcp", None, 8080, None, 80, None)),
    ("/run/x.sock:192.168.65.3:22", ("unix", None, 0, G, 22, "/run/x.sock")),
    ("/run/x.sock:22", ("unix", None, 0, None, 22, "/run/x.sock")),
])
def test_publish_syntax(text, want):
    s = parse_publish(text)
    assert (s.proto, s.host_addr, s.host_port, s.guest_addr, s.guest_port, s.path) == want


@pytest.mark.parametrize("text, message", [
    ("80", "expected"), ("a:b:c:d", "not a number"), ("70000:192.168.65.3:80", "0..65535"),
    ("8080:192.168.65.3:0", "guest port"), ("8080:fe80::1:80", "expected"), ("8080:1.2.3:80", "expected"),
    ("nothost:8080:192.168.65.3:80", "not an IP address"), ("/x.sock", "/PATH"),
])
def test_publish_syntax_errors(text, message):
    with pytest.raises(PortError) as e:
        parse_publish(text)
    assert message in str(e.value)


def test_host_side_for_removal():
    assert parse_host_side("8080") == ("tcp", None, 8080, None)
    assert parse_host_side("8080", "udp") == ("udp", None, 8080, None)
    assert parse_host_side("127.0.0.1:8080") == ("tcp", "127.0.0.1", 8080, None)
    assert parse_host_side("[::1]:8080") == ("tcp", "::1", 8080, None)
    assert parse_host_side("8080:192.168.65.3:80") == ("tcp", None, 8080, None)
    assert parse_host_side("/run/x.sock") == ("unix", None, 0, "/run/x.sock")
    assert parse_host_side("/run/x.sock:192.168.65.3:22") == ("unix", None, 0, "/run/x.sock")


def test_default_binds():
    assert PortSpec(guest_port=1).binds() == ["127.0.0.1", "::1"]
    assert PortSpec(host_addr="", guest_port=1).binds() == ["0.0.0.0", "::"]
    assert PortSpec(host_addr="10.0.0.1", guest_port=1).binds() == ["10.0.0.1"]


@pytest.mark.parametrize("code, text", [(errno.EADDRINUSE, "port is already allocated"),
                                        (errno.EADDRNOTAVAIL, "cannot assign requested address"),
                                        (errno.EACCES, "permission denied")])
def test_bind_errors_in_users_words(code, text):
    e = _bind_error(OSError(code, os.strerror(code)), "tcp", "127.0.0.1:80")
    assert str(e) == f"cannot publish tcp 127.0.0.1:80: {text}"


def test_json_form_is_checked():
    with pytest.raises(PortError, match="host_port must be an integer"):
        PortSpec.from_json({"host_port": True, "guest_port": 1})
    with pytest.raises(PortError, match="unknown field"):
        PortSpec.from_json({"guest_port": 1, "hostport": 2})
    with pytest.raises(PortError, match="unknown protocol"):
        PortSpec.from_json({"proto": "sctp", "guest_port": 1})
    with pytest.raises(PortError, match="not an IPv4 guest address"):
        PortSpec.from_json({"guest_addr": "::1", "guest_port": 1})
    assert PortSpec.from_json(PortSpec(host_port=5, guest_addr=G, guest_port=6).to_json()) == \
        PortSpec(host_port=5, guest_addr=G, guest_port=6)


@pytest.fixture
def runner():
    with NetworkRunner() as r:
        yield r


def test_state_file_round_trip(runner, tmp_path):
    state = str(tmp_path / "ports.json")
    ports = runner.call(lambda: PublishedPorts(runner.net, state_file=state))
    picked = runner.call(lambda: ports.add(parse_publish("0:192.168.65.3:80")))
    fixed_port = picked.host_port
    runner.call(lambda: ports.add(parse_publish("0:192.168.65.3:53", "udp")))
    saved = json.loads(open(state).read())
    assert saved["version"] == 1 and [(p["proto"], p["requested_port"]) for p in saved["ports"]] == \
        [("tcp", 0), ("udp", 0)]
    runner.call(ports.close)
    again = runner.call(lambda: PublishedPorts(runner.net, state_file=state))
    assert runner.call(again.restore) == []
    got = runner.call(again.list)
    assert [(f.proto, f.host_port == saved["ports"][i]["host_port"], f.requested_port) for i, f in enumerate(got)] == \
        [("tcp", True, 0), ("udp", True, 0)]
    assert got[0].host_port == fixed_port
    runner.call(again.close)
    # The picked port was taken meanwhile: another is picked, and the problem reported.
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", fixed_port))
        held.listen()
        third = runner.call(lambda: PublishedPorts(runner.net, state_file=state))
        problems = runner.call(third.restore)
        assert len(problems) == 1 and f"port {fixed_port} was taken" in problems[0]
        assert runner.call(third.list)[0].host_port != fixed_port
        runner.call(third.close)


def test_a_bad_state_file_is_reported_not_fatal(runner, tmp_path):
    state = tmp_path / "ports.json"
    state.write_text("{not json")
    ports = runner.call(lambda: PublishedPorts(runner.net, state_file=str(state)))
    problems = runner.call(ports.restore)
    assert len(problems) == 1 and "cannot read the ports state file" in problems[0]
    state.write_text(json.dumps({"version": 1, "ports": [{"proto": "tcp", "host_port": 1, "guest_port": 0}, 7]}))
    problems = runner.call(ports.restore)
    assert len(problems) == 2


def test_removing_an_unknown_forward(runner):
    ports = runner.call(lambda: PublishedPorts(runner.net))
    with pytest.raises(PortError) as e:
        runner.call(lambda: ports.remove(5))
    assert e.value.kind == "not_found"


PRIVILEGED = """
import asyncio, sys
from fastnet.services.network import VirtualNetwork
from fastnet.services.config import NetworkConfig, DnsConfig
from fastnet.services.ports import PublishedPorts, parse_publish, PortError
loop = asyncio.new_event_loop()
net = VirtualNetwork(NetworkConfig(dns_service=DnsConfig(enabled=False)), loop=loop)
try:
    PublishedPorts(net).add(parse_publish("80:192.168.65.3:80"))
except PortError as e:
    print(e)
"""


def test_a_privileged_port_is_permission_denied():
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to an unprivileged user")
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        if int(f.read()) <= 80:
            pytest.skip("port 80 is not privileged on this machine (net.ipv4.ip_unprivileged_port_start)")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                        PRIVILEGED], capture_output=True, text=True, timeout=60, cwd="/")
    assert r.stdout.strip() == "cannot publish tcp 127.0.0.1:80: permission denied", r.stdout + r.stderr
