"""Published ports end to end: ``fastnet serve --tap tap0 --netns NS --api PATH`` serving a guest
namespace, ports published with ``fastnet expose`` (the command line the shared benchmark
runs), and real clients on the host: curl, iperf3 both ways, UDP echo, a client in a second
namespace whose own address the guest must see, port 0, EADDRINUSE, unexpose, a restart.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time

import pytest

from tests.integration.netns import Netns, VethLink, need, requires_netns
from tests.test_cli import fastnet_cmd

pytestmark = [requires_netns, pytest.mark.netns]

GATEWAY = "192.168.65.1"
HOST_ALIAS = "192.168.65.2"
GUEST = "192.168.65.3"
PEER_ECHO = os.path.join(os.path.dirname(__file__), "peer_echo.py")
# The DNS service must not forward anything to this machine's resolver.
CONFINED_TOML = '[dns]\nresolv_conf = "/dev/null"\nsystem_fallback = false\nhosts_file = ""\n'


def wait_for(pred, timeout: float, what: str, proc: subprocess.Popen | None = None, log=None):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited ({proc.returncode}): {log.read_text() if log else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s" + (f": {log.read_text()[-3000:]}" if log else ""))
        time.sleep(0.05)


class Daemon:
    """``fastnet serve`` for one guest namespace, with its API; restartable."""

    def __init__(self, tmp, guest: Netns, *extra: str, ipv6: bool = True):
        self.tmp = tmp
        self.ipv6 = ipv6
        self.guest = guest
        self.api = str(tmp / "api.sock")
        self.conf = tmp / "fastnet.toml"
        self.conf.write_text(CONFINED_TOML)
        self.log = tmp / "serve.log"
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([fastnet_cmd(), "serve", "--tap", "tap0", "--netns", self.guest.path,
                                          "--api", self.api, "--disable-proxy", "--config", str(self.conf), "-v",
                                          *self.extra], stdout=subprocess.DEVNULL, stderr=log)
        wait_for(lambda: os.path.exists(self.api), 15, "the API socket", self.proc, self.log)
        # The TAP goes away with the process that held it: configure the guest every start.
        g = self.guest
        if not self.ipv6:
            # A guest that sends nothing of its own (no IPv6 neighbour discovery when its link
            # comes up): fastnet learns its MAC by ARP when the first client arrives.
            g.run("sysctl", "-qw", "net.ipv6.conf.tap0.disable_ipv6=1", check=True)
        g.ip("link", "set", "tap0", "up")
        g.ip("addr", "add", f"{GUEST}/24", "dev", "tap0")
        g.ip("route", "add", "default", "via", GATEWAY)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([fastnet_cmd(), *args, "--api", self.api], capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            raise AssertionError(f"fastnet {' '.join(args)} failed ({r.returncode}): {r.stderr}\n"
                                 f"{self.log.read_text()[-3000:]}")
        return r

    def expose(self, spec: str, *flags: str) -> dict:
        return json.loads(self.cli("expose", "--json", *flags, spec).stdout)


@pytest.fixture
def guest():
    ns = Netns("p")
    yield ns
    ns.delete()


@pytest.fixture
def daemon(tmp_path, guest):
    d = Daemon(tmp_path, guest).start()
    yield d
    d.stop()


@pytest.fixture
def spawn():
    procs = []

    def start(argv, ready: str | None = None, timeout: float = 10):
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
        procs.append(p)
        if ready:
            deadline = time.monotonic() + timeout
            seen = b""
            while ready.encode() not in seen:
                r, _, _ = select.select([p.stdout], [], [], max(0, deadline - time.monotonic()))
                chunk = os.read(p.stdout.fileno(), 4096) if r else b""
                assert chunk, f"{argv}: no {ready!r} within {timeout}s: {seen!r}"
                seen += chunk
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(5)
        p.stdout.close()


def peer_server(spawn, guest: Netns, proto: str, port: int):
    return spawn(guest.cmd(sys.executable, PEER_ECHO, proto, f"0.0.0.0:{port}"), ready="ready")


def tcp_peer(host: str, port: int, timeout: float = 5) -> tuple[socket.socket, str]:
    """Connect and read the server's "peer IP PORT" line."""
    s = socket.create_connection((host, port), timeout=timeout)
    line = b""
    while not line.endswith(b"\n"):
        chunk = s.recv(100)
        assert chunk, f"closed after {line!r}"
        line += chunk
    return s, line.decode().strip()


def test_curl_reaches_a_server_in_the_guest(daemon, spawn, guest, tmp_path):
    need("curl")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hello from the guest\n")
    spawn(guest.cmd(sys.executable, "-u", "-m", "http.server", "8000", "--bind", GUEST, "--directory",
                    str(tmp_path / "www")), ready="Serving")
    port = daemon.expose(f"0:{GUEST}:8000")
    assert port["host_port"] > 0 and port["requested_port"] == 0
    assert f"127.0.0.1:{port['host_port']}" in port["listening"]
    for url in (f"http://127.0.0.1:{port['host_port']}/", f"http://[::1]:{port['host_port']}/"):
        if "::1" in url and f"[::1]:{port['host_port']}" not in port["listening"]:
            continue  # a host without IPv6 loopback
        r = subprocess.run(["curl", "-sS", "--max-time", "10", url], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0 and r.stdout == "hello from the guest\n", r.stderr
    ports = json.loads(daemon.cli("ports", "--json").stdout)
    assert ports[0]["connections"]["accepted"] >= 1
    table = daemon.cli("ports").stdout
    assert f"127.0.0.1:{port['host_port']}" in table and f"{GUEST}:8000" in table


def test_loopback_clients_appear_as_the_host_alias(daemon, spawn, guest):
    peer_server(spawn, guest, "tcp", 7000)
    port = daemon.expose(f"127.0.0.1:0:{GUEST}:7000")
    s, line = tcp_peer("127.0.0.1", port["host_port"])
    with s:
        _, ip, cport = line.split()
        assert ip == HOST_ALIAS and int(cport) == s.getsockname()[1]
        s.sendall(b"ping")
        assert s.recv(100) == b"ping"
        flows = json.loads(daemon.cli("flows", "--json").stdout)
        mine = [f for f in flows if f["forward"] == port["id"]]
        assert mine and mine[0]["direction"] == "in" and mine[0]["guest"] == f"{GUEST}:7000"
        assert "ESTABLISHED" in daemon.cli("flows", "--published").stdout


def test_guest_sees_the_real_address_of_a_client_in_another_namespace(daemon, spawn, guest):
    peer_server(spawn, guest, "tcp", 7001)
    peer_server(spawn, guest, "udp", 7002)
    client = Netns("c")
    link = None
    try:
        link = VethLink(client, "10.213.0.1/24", "10.213.0.2/24")
        if not link.routes_via_link("10.213.0.2"):
            pytest.skip("10.213.0.0/24 is routed elsewhere on this machine")
        tcp = daemon.expose(f"10.213.0.1:0:{GUEST}:7001")
        udp = daemon.expose(f"10.213.0.1:0:{GUEST}:7002", "--udp")
        code = (
            "import socket,sys\n"
            f"s=socket.create_connection(('10.213.0.1',{tcp['host_port']}),timeout=5)\n"
            "line=b''\n"
            "while not line.endswith(b'\\n'): line+=s.recv(100)\n"
            "print(line.decode().strip(), s.getsockname()[1])\n"
            "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.settimeout(5)\n"
            f"u.sendto(b'x',('10.213.0.1',{udp['host_port']}))\n"
            "d,a=u.recvfrom(1000); print(d.decode(), u.getsockname()[1], a[0], a[1])\n")
        r = client.run(sys.executable, "-c", code, timeout=20)
        assert r.returncode == 0, r.stderr
        tcp_line, udp_line = r.stdout.splitlines()
        _, ip, gport, local = tcp_line.split()
        assert (ip, gport) == ("10.213.0.2", local)
        _, ip, gport, payload, local, src, sport = udp_line.split()
        assert (ip, gport, payload) == ("10.213.0.2", local, "x")
        assert (src, int(sport)) == ("10.213.0.1", udp["host_port"])   # the reply comes from the published address
    finally:
        if link is not None:
            link.delete()
        client.delete()


def test_iperf3_both_directions_through_a_published_port(daemon, spawn, guest):
    need("iperf3")
    spawn(guest.cmd("iperf3", "-s", "-p", "5201", "--forceflush"), ready="listening")
    port = daemon.expose(f"0:{GUEST}:5201")["host_port"]
    rates = {}
    for direction, flags in (("host->guest", []), ("guest->host", ["-R"])):
        r = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", "2", "-J", "--connect-timeout", "5000",
                            *flags], capture_output=True, text=True, timeout=40)
        out = json.loads(r.stdout)
        assert r.returncode == 0 and not out.get("error"), (out.get("error"), daemon.log.read_text()[-2000:])
        rates[direction] = out["end"]["sum_received"]["bits_per_second"] / 1e9
    print("iperf3 through a published port, Gbit/s:", rates)
    assert all(v > 0.1 for v in rates.values()), rates


def test_udp_echo_through_a_published_port(daemon, spawn, guest):
    peer_server(spawn, guest, "udp", 5353)
    port = daemon.expose(f"0:{GUEST}:5353", "--udp")
    assert port["proto"] == "udp"
    clients = []
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        if f"[{addr}]:{port['host_port']}" not in port["listening"] and family == socket.AF_INET6:
            continue
        c = socket.socket(family, socket.SOCK_DGRAM)
        c.settimeout(5)
        clients.append((c, addr))
    seen = set()
    for round_ in range(3):
        for i, (c, addr) in enumerate(clients):
            msg = f"m{round_}-{i}".encode()
            c.sendto(msg, (addr, port["host_port"]))
            data, src = c.recvfrom(1000)
            _, ip, gport, payload = data.decode().split()
            assert ip == HOST_ALIAS and payload == msg.decode()
            assert src[1] == port["host_port"]
            seen.add((i, gport))
    # One flow per client address, the same one every round.
    assert len({g for _, g in seen}) == len(clients) and len(seen) == len(clients)
    flows = [f for f in json.loads(daemon.cli("flows", "--json", "--proto", "udp").stdout)
             if f["forward"] == port["id"]]
    assert len(flows) == len(clients)
    for c, _ in clients:
        c.close()


def test_port_zero_picks_a_free_port_and_a_taken_one_is_reported(daemon):
    a = daemon.expose(f"0:{GUEST}:80")
    b = daemon.expose(f"0:{GUEST}:81")
    assert a["host_port"] and b["host_port"] and a["host_port"] != b["host_port"]
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        r = daemon.cli("expose", f"{taken}:{GUEST}:80", check=False)
        assert r.returncode == 1 and "port is already allocated" in r.stderr, r.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        r = daemon.cli("expose", "--udp", f"{held.getsockname()[1]}:{GUEST}:53", check=False)
        assert r.returncode == 1 and "port is already allocated" in r.stderr, r.stderr
    # One of our own is taken too, unless it is the very same forward (then it is kept as is).
    r = daemon.cli("expose", f"{a['host_port']}:{GUEST}:8080", check=False)
    assert r.returncode == 1 and "port is already allocated" in r.stderr
    assert daemon.expose(f"{a['host_port']}:{GUEST}:80")["id"] == a["id"]
    r = daemon.cli("expose", f"192.0.2.1:0:{GUEST}:80", check=False)
    assert r.returncode == 1 and "cannot assign requested address" in r.stderr, r.stderr
    r = daemon.cli("expose", "not-a-spec", check=False)
    assert r.returncode == 1 and "HOSTPORT" in r.stderr


def test_unexpose_stops_the_listener_and_optionally_the_connections(daemon, spawn, guest):
    peer_server(spawn, guest, "tcp", 7003)
    keep = daemon.expose(f"0:{GUEST}:7003")
    s1, _ = tcp_peer("127.0.0.1", keep["host_port"])
    daemon.cli("unexpose", f"{keep['host_port']}")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", keep["host_port"]), timeout=5)
    with s1:   # the connection made before runs on
        s1.sendall(b"still here")
        assert s1.recv(100) == b"still here"
    drop = daemon.expose(f"0:{GUEST}:7003")
    s2, _ = tcp_peer("127.0.0.1", drop["host_port"])
    with s2:
        out = daemon.cli("unexpose", "--close-connections", "--id", str(drop["id"])).stdout
        assert f"forward {drop['id']}" in out
        s2.settimeout(5)
        try:
            assert s2.recv(100) == b""
        except ConnectionResetError:
            pass   # RST: what an aborted connection should get
    assert json.loads(daemon.cli("ports", "--json").stdout) == []
    r = daemon.cli("unexpose", "12345", check=False)
    assert r.returncode == 1 and "no published tcp port" in r.stderr


def test_a_guest_that_refuses_resets_the_client(daemon):
    port = daemon.expose(f"0:{GUEST}:9")   # nothing listens on 9 in the guest: it answers RST
    t0 = time.monotonic()
    with pytest.raises(ConnectionResetError):
        # The reset may land before connect() has reported success, or after.
        with socket.create_connection(("127.0.0.1", port["host_port"]), timeout=5) as s:
            s.settimeout(5)
            s.recv(100)
    assert time.monotonic() - t0 < 5


def test_restart_restores_the_published_ports(daemon, spawn, guest):
    peer_server(spawn, guest, "tcp", 7004)
    fixed = daemon.expose(f"0:{GUEST}:7004")
    udp = daemon.expose(f"0:{GUEST}:7005", "--udp")
    daemon.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", fixed["host_port"]), timeout=5)
    assert not os.path.exists(daemon.api)   # removed at exit
    daemon.start()
    ports = {p["id"]: p for p in json.loads(daemon.cli("ports", "--json").stdout)}
    assert {(p["proto"], p["host_port"], p["guest_port"], p["requested_port"]) for p in ports.values()} == {
        ("tcp", fixed["host_port"], 7004, 0), ("udp", udp["host_port"], 7005, 0)}
    s, line = tcp_peer("127.0.0.1", fixed["host_port"])
    s.close()
    assert line.startswith(f"peer {HOST_ALIAS} ")


def test_a_unix_socket_reaches_a_guest_tcp_port(daemon, spawn, guest, tmp_path):
    peer_server(spawn, guest, "tcp", 7006)
    path = str(tmp_path / "guest.sock")
    port = daemon.expose(f"{path}:{GUEST}:7006")
    assert port["proto"] == "unix" and port["path"] == path
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(5)
    c.connect(path)
    with c:
        line = c.recv(100).decode()
        assert line.startswith(f"peer {HOST_ALIAS} ")
        c.sendall(b"over unix")
        assert c.recv(100) == b"over unix"
    daemon.cli("unexpose", path)
    assert not os.path.exists(path)


def test_a_silent_guest_is_found_by_arp_and_a_missing_one_resets_the_client(tmp_path, guest, spawn):
    d = Daemon(tmp_path, guest, ipv6=False).start()
    try:
        peer_server(spawn, guest, "tcp", 7007)
        # Nobody holds .77: the ARP request goes unanswered and the client is reset (not left
        # hanging) after the resolution timeout.
        nobody = d.expose("0:192.168.65.77:7007")
        t0 = time.monotonic()
        with pytest.raises(ConnectionResetError):
            with socket.create_connection(("127.0.0.1", nobody["host_port"]), timeout=10) as s:
                s.settimeout(10)
                s.recv(100)
        assert time.monotonic() - t0 < 5
        port = d.expose(f"0:{GUEST}:7007")
        s, line = tcp_peer("127.0.0.1", port["host_port"])
        s.close()
        assert line.startswith(f"peer {HOST_ALIAS} ")
        ports = {p["id"]: p for p in json.loads(d.cli("ports", "--json").stdout)}
        assert ports[nobody["id"]]["connections"]["refused"] == 1
    finally:
        d.stop()


def test_fastnet_run_publishes_to_its_command(tmp_path):
    """``fastnet run -p`` with the command's own address as the default guest, and its API."""
    need("curl")
    api = str(tmp_path / "run.sock")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ("import http.server as h\n"
              "class H(h.BaseHTTPRequestHandler):\n"
              "    def do_GET(self):\n"
              "        b = ('hello from ' + self.client_address[0]).encode()\n"
              "        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers()\n"
              "        self.wfile.write(b)\n"
              "s = h.HTTPServer(('0.0.0.0', 8000), H); s.timeout = 30; s.handle_request()\n")
    proc = subprocess.Popen([fastnet_cmd(), "run", "--api", api, "-p", f"127.0.0.1:{port}:8000", "--",
                             sys.executable, "-c", server], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: os.path.exists(api), 15, "the API socket", proc)
        r = subprocess.run([fastnet_cmd(), "ports", "--json", "--api", api], capture_output=True, text=True, timeout=30)
        listed = json.loads(r.stdout)
        assert listed[0]["guest_addr"] is None and listed[0]["origin"] == "command line"
        body = None
        deadline = time.monotonic() + 20
        while body is None and time.monotonic() < deadline:
            r = subprocess.run(["curl", "-sS", "-m", "5", f"http://127.0.0.1:{port}/"], capture_output=True,
                               text=True, timeout=15)
            if r.returncode == 0:
                body = r.stdout
            else:
                time.sleep(0.1)   # the command may not listen yet: the client was reset
        assert body == f"hello from {HOST_ALIAS}"
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert not os.path.exists(api)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
