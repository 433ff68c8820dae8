"""The DNS service from a real guest: a namespace whose tap0 is a port of a VirtualNetwork,
configured statically (192.168.65.3/24 via 192.168.65.1) with its resolv.conf naming the gateway,
asked with dig (and curl, and raw sockets for malformed input) across the kernel's UDP and TCP
and fastnet's own stack.

The service's upstream is named by a resolv.conf file the test writes, pointing at a dnspython
authoritative server the test runs on the host's loopback (tests/services/authority.py); its
hosts file is the test's too, and the getaddrinfo fallback is off. No query reaches this
machine's own resolver, and its /etc/resolv.conf is never read."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fastnet.services.config import DnsConfig, NetworkConfig
from tests.integration.harness import GATEWAY, GUEST, HOST_ALIAS, NetworkRunner
from tests.integration.netns import need, requires_netns
from tests.services.authority import BIG_COUNT, BIG_NAME, Authority

pytestmark = [requires_netns, pytest.mark.netns, pytest.mark.timeout(120)]

TIMEOUT = 2.0          # the service's upstream timeout in these tests
HOST_NAMES = ["host.docker.internal", "docker.for.mac.localhost", "docker.for.mac.host.internal",
              "host.containers.internal"]
GATEWAY_NAMES = ["gateway.docker.internal", "docker.for.mac.gateway.internal", "gateway.containers.internal"]


@dataclass
class DnsNet:
    ns: object
    runner: NetworkRunner
    auth: Authority
    hosts: Path
    resolv: Path

    def dns_stats(self) -> dict:
        return self.runner.call(lambda: self.runner.net.dns.stats())


@pytest.fixture
def dnsnet(guest_ns, tmp_path):
    need("dig")
    resolv = tmp_path / "resolv.conf"
    hosts = tmp_path / "hosts"
    hosts.write_text("10.9.9.9 devbox.test\n")
    with Authority() as auth:
        resolv.write_text(f"# the test's upstream, on the host's loopback\nnameserver {auth.address}\n")
        cfg = NetworkConfig(dns_service=DnsConfig(resolv_conf=str(resolv), hosts_file=str(hosts), timeout=TIMEOUT,
                                                  retry_interval=0.5, system_fallback=False))
        with NetworkRunner(cfg) as runner:
            runner.attach_tap(guest_ns, GUEST)
            guest_ns.set_resolv_conf(f"nameserver {GATEWAY}\noptions timeout:3 attempts:1\n")
            yield DnsNet(guest_ns, runner, auth, hosts, resolv)


@dataclass
class Dig:
    status: str
    flags: set[str]
    answers: list[tuple[str, str, str]]     # (name, type, data)
    size: int | None
    elapsed: float
    text: str


def dig(ns, *args: str, timeout: float = 20) -> Dig:
    t0 = time.monotonic()
    r = ns.run("dig", f"@{GATEWAY}", "+time=5", "+tries=1", *args, timeout=timeout)
    elapsed = time.monotonic() - t0
    text = r.stdout + r.stderr
    status = re.search(r"status: (\w+)", text)
    flags = re.search(r";; flags: ([a-z ]*);", text)
    size = re.search(r"MSG SIZE\s+rcvd: (\d+)", text)
    answers = []
    section = None
    for line in r.stdout.splitlines():
        if line.startswith(";; ") and line.endswith("SECTION:"):
            section = line[3:-len(" SECTION:")]
            continue
        if section == "ANSWER" and line and not line.startswith(";"):
            name, _ttl, _cls, rtype, data = line.split(None, 4)
            answers.append((name, rtype, data))
        elif not line.strip():
            section = None
    return Dig(status.group(1) if status else "", set(flags.group(1).split()) if flags else set(), answers,
               int(size.group(1)) if size else None, elapsed, text)


# -- local names -----------------------------------------------------------------------------------

def test_every_default_alias_resolves(dnsnet):
    for names, ip in ((HOST_NAMES, HOST_ALIAS), (GATEWAY_NAMES, GATEWAY)):
        for name in names:
            d = dig(dnsnet.ns, name, "A")
            assert d.status == "NOERROR" and "aa" in d.flags, d.text
            assert d.answers == [(name + ".", "A", ip)], d.text
    assert dnsnet.auth.queries == []


def test_an_alias_asked_for_aaaa_is_noerror_and_empty(dnsnet):
    d = dig(dnsnet.ns, "host.docker.internal", "AAAA")
    assert d.status == "NOERROR" and d.answers == [], d.text
    assert dnsnet.auth.queries == []                 # not leaked upstream


def test_the_guest_is_named_by_its_dhcp_hostname(dnsnet):
    runner = dnsnet.runner
    mac = bytes.fromhex(dnsnet.ns.run("cat", "/sys/class/net/tap0/address", check=True).stdout.strip().replace(":", ""))
    runner.call(lambda: runner.net.pool.allocate(mac=mac, hostname="buildvm", preferred=ipaddress.IPv4Address(GUEST)))
    d = dig(dnsnet.ns, "buildvm.localdomain", "A")
    assert d.answers == [("buildvm.localdomain.", "A", GUEST)], d.text
    d = dig(dnsnet.ns, "-x", GUEST)
    assert d.answers == [("3.65.168.192.in-addr.arpa.", "PTR", "buildvm.localdomain.")], d.text


# -- forwarded to the upstream ----------------------------------------------------------------------

@pytest.mark.parametrize("args,expected", [
    (("_http._tcp.example.test", "SRV"), [("SRV", "0 5 80 www.example.test.")]),
    (("example.test", "MX"), [("MX", "10 mail.example.test.")]),
    (("example.test", "TXT"), [("TXT", '"v=spf1 -all" "second string"')]),
    (("-x", "10.0.0.80"), [("PTR", "www.example.test.")]),
    (("www.example.test", "AAAA"), [("AAAA", "2001:db8::80")]),
    (("example.test", "CAA"), [("CAA", '0 issue "letsencrypt.org"')]),
])
def test_record_types_from_a_real_authoritative_server(dnsnet, args, expected):
    d = dig(dnsnet.ns, *args)
    assert d.status == "NOERROR", d.text
    assert [(t, data) for _, t, data in d.answers] == expected, d.text
    assert len(dnsnet.auth.queries) == 1


def test_a_100_record_answer_is_truncated_over_udp_and_whole_over_tcp(dnsnet):
    d = dig(dnsnet.ns, "+ignore", "+bufsize=512", BIG_NAME, "A")
    assert "tc" in d.flags and d.status == "NOERROR", d.text
    assert d.size is not None and d.size <= 512
    assert 0 < len(d.answers) < BIG_COUNT                  # whole records, as many as fit
    d = dig(dnsnet.ns, "+ignore", "+noedns", BIG_NAME, "A")
    assert "tc" in d.flags and d.size <= 512, d.text
    d = dig(dnsnet.ns, "+tcp", BIG_NAME, "A")
    assert "tc" not in d.flags and d.status == "NOERROR", d.text
    assert len(d.answers) == BIG_COUNT
    d = dig(dnsnet.ns, BIG_NAME, "A")                      # dig's own UDP then TCP retry
    assert len(d.answers) == BIG_COUNT, d.text


def test_upstream_down_is_servfail_within_the_timeout(dnsnet):
    dnsnet.auth.mode = "silent"                            # there but not answering
    d = dig(dnsnet.ns, "www.example.test", "A")
    assert d.status == "SERVFAIL", d.text
    assert d.elapsed < TIMEOUT + 1.5
    dnsnet.auth.stop()                                     # gone: port unreachable
    for rtype in ("MX", "A"):
        d = dig(dnsnet.ns, "mail.example.test", rtype)
        assert d.status == "SERVFAIL", d.text
        assert d.elapsed < TIMEOUT + 1.5
    stats = dnsnet.dns_stats()
    assert stats["rcodes"]["SERVFAIL"] == 3 and stats["failures"] == 3


def test_a_hosts_file_change_is_picked_up_without_restart(dnsnet):
    d = dig(dnsnet.ns, "devbox.test", "A")
    assert d.answers == [("devbox.test.", "A", "10.9.9.9")], d.text
    dnsnet.hosts.write_text("10.9.9.10 devbox.test\n")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        d = dig(dnsnet.ns, "devbox.test", "A")
        if d.answers == [("devbox.test.", "A", "10.9.9.10")]:
            break
        time.sleep(0.2)
    assert d.answers == [("devbox.test.", "A", "10.9.9.10")], d.text


# -- reaching the host through its name ---------------------------------------------------------

class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from the host's loopback\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_curl_reaches_the_hosts_loopback_by_name(dnsnet):
    need("curl")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        r = dnsnet.ns.run("curl", "-sS", "--max-time", "10", f"http://host.docker.internal:{port}/", timeout=20)
        assert r.returncode == 0 and r.stdout == "hello from the host's loopback\n", r.stderr
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- the guest's side of the wire: raw sockets ------------------------------------------------------

GUEST_SCRIPT = r"""
import random, socket, struct, sys, json
GW = sys.argv[1]
random.seed(7)
hdr = lambda qd=1: struct.pack("!HHHHHH", 0x4242, 0x0100, qd, 0, 0, 0)
q = b"\x04host\x06docker\x08internal\x00\x00\x01\x00\x01"
bad = [random.randbytes(n) for n in (0, 1, 5, 11, 12, 40, 300)]
bad += [(hdr() + q)[:n] for n in (3, 12, 17, 30)]                  # truncated
bad += [hdr() + b"\xc0\x0c\x00\x01\x00\x01",                      # a pointer to itself
        hdr() + b"\x01a\xc0\x0c\x00\x01\x00\x01",                  # a loop through a label
        hdr() + b"\xc0\x11\x01a\xc0\x0c\x00\x01\x00\x01"]          # two pointers at each other
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(0.5)
replies = 0
for m in bad:
    u.sendto(m, (GW, 53))
    try:
        data = u.recv(4096)
        replies += 1
    except socket.timeout:
        pass
# The same over TCP: framed garbage, then a good query on the same connection.
t = socket.create_connection((GW, 53), timeout=5)
for m in bad[2:]:
    t.sendall(struct.pack("!H", len(m)) + m)
t.sendall(struct.pack("!H", len(hdr() + q)) + hdr() + q)
good = False
while not good:
    n = struct.unpack("!H", t.recv(2, socket.MSG_WAITALL))[0]
    data = t.recv(n, socket.MSG_WAITALL)
    good = len(data) > 12 and data[3] & 0x0F == 0 and data[7] == 1   # NOERROR, one answer
# A reply is due to each message with a whole header that is not itself a response (QR clear).
due = sum(1 for m in bad if len(m) >= 12 and not m[2] & 0x80)
print(json.dumps({"udp_replies": replies, "udp_due": due, "tcp_good": good, "sent": len(bad) + len(bad) - 2}))
"""


def test_malformed_queries_do_not_break_the_server_and_are_counted(dnsnet):
    r = dnsnet.ns.run(sys.executable, "-c", GUEST_SCRIPT, GATEWAY, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["tcp_good"] is True
    stats = dnsnet.dns_stats()
    assert stats["internal_errors"] == 0
    # Every bad message is counted: FORMERR where there was a header to answer, dropped otherwise.
    # A zero-length UDP datagram is a message too; the kernel delivers it.
    assert stats["malformed_formerr"] + stats["malformed_dropped"] == out["sent"], stats
    assert out["udp_replies"] == out["udp_due"] > 0
    d = dig(dnsnet.ns, "host.docker.internal", "A")
    assert d.answers == [("host.docker.internal.", "A", HOST_ALIAS)]


PIPELINE_SCRIPT = r"""
import socket, struct, sys, time
GW = sys.argv[1]
def query(qid, name):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x01\x00\x01"
t = socket.create_connection((GW, 53), timeout=10)
msgs = [query(1, "www.example.test"), query(2, "host.docker.internal"), query(3, "gateway.docker.internal")]
t.sendall(b"".join(struct.pack("!H", len(m)) + m for m in msgs))
order = []
for _ in msgs:
    n = struct.unpack("!H", t.recv(2, socket.MSG_WAITALL))[0]
    order.append(struct.unpack("!H", t.recv(n, socket.MSG_WAITALL)[:2])[0])
print(" ".join(map(str, order)))
"""


def test_queries_pipelined_on_one_tcp_connection_are_answered_as_they_are_ready(dnsnet):
    dnsnet.auth.delay = 0.5                  # the upstream question is slow; the local ones are not
    r = dnsnet.ns.run(sys.executable, "-c", PIPELINE_SCRIPT, GATEWAY, timeout=30)
    assert r.returncode == 0, r.stderr
    order = r.stdout.split()
    assert sorted(order) == ["1", "2", "3"] and order[-1] == "1", order


def test_nothing_listens_for_dns_on_the_host(dnsnet):
    """The service is reachable through the virtual network only: no host socket on port 53."""
    r = subprocess.run(["ss", "-Hlntup", "sport = :53"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"pid={os.getpid()}," not in r.stdout
