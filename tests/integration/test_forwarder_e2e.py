"""The forwarder end to end with the Linux kernel as the guest: outbound to a non-loopback
destination (an "internet" namespace the test builds), a thousand concurrent TCP connections and
a thousand UDP flows, refusals and ICMP errors as the guest sees them, and the daemon as users
run it: ``fastnet serve`` (--disable-host-loopback, ping of the gateway and the host alias with
ping sockets or raw sockets, SIGTERM, --pcap) and ``fastnet run``.

Traffic goes only to the host's loopback and to namespaces created here; DNS never reaches this
machine's resolver (the daemons get a config with no upstream)."""

from __future__ import annotations

import json
import os
import pathlib
import random
import select
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from fastnet.pcap import read_frames
from tests.integration.harness import GATEWAY, GUEST, HOST_ALIAS, LoopbackOnly, TapForwarder
from tests.integration.netns import Netns, VethLink, need, requires_netns
from tests.test_cli import fastnet_cmd

pytestmark = [requires_netns, pytest.mark.netns]

PAGE = pathlib.Path(__file__).with_name("transfer.py")

# A config that keeps the daemon's DNS off this machine's resolver, with one name of its own.
PRIVATE_CONFIG = """
[dns]
resolv_conf = "/dev/null"
hosts_file = ""
system_fallback = false
[dns.hosts]
"db.fastnet.test" = "192.168.65.9"
"""


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_tcp(port: int, host: str = "127.0.0.1", timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {host}:{port}"
            time.sleep(0.05)


@pytest.fixture
def web():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            cwd=PAGE.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_tcp(port)
    yield port
    proc.kill()
    proc.wait(5)


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="fne2e")
    yield pathlib.Path(d)
    subprocess.run(["rm", "-rf", d])


def run_guest_py(ns: Netns, code: str, *args: str, timeout: float = 60) -> dict:
    r = ns.run(sys.executable, "-c", code, *args, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


# -- outbound to a non-loopback destination ------------------------------------------------------

INET_SERVER = r"""
import socket, socketserver, sys, threading
addr, tport, uport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
class H(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        body = f"hello from the internet, you are {self.client_address[0]}".encode()
        self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
socketserver.ThreadingTCPServer.allow_reuse_address = True
srv = socketserver.ThreadingTCPServer((addr, tport), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((addr, uport))
print("ready", flush=True)
while True:
    data, peer = u.recvfrom(2000)
    u.sendto(b"udp " + peer[0].encode() + b" " + data, peer)
"""

UDP_ASK = r"""
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for _ in range(5):
    s.sendto(b"from the guest", (sys.argv[1], int(sys.argv[2])))
    try:
        data, peer = s.recvfrom(2000)
        print(json.dumps({"reply": data.decode(), "peer": peer[0]}))
        break
    except socket.timeout:
        continue
else:
    sys.exit("no reply")
"""


@pytest.fixture
def internet():
    """A namespace playing a host on the internet: a veth from the host namespace, with a
    private benchmarking-range (198.18.0.0/15) subnet routed into it and nowhere else."""
    ns = Netns("i")
    link = None
    try:
        for _ in range(10):
            net = f"198.18.{random.randrange(1, 250)}"
            link = VethLink(ns, f"{net}.1/24", f"{net}.2/24")
            if link.routes_via_link(f"{net}.2"):
                break
            link.delete()   # that subnet is taken (another run): pick another
            link = None
        assert link is not None, "no free 198.18.x.0/24 for the internet namespace"
        tport, uport = free_port(), free_port(socket.SOCK_DGRAM)
        proc = ns.popen(sys.executable, "-c", INET_SERVER, f"{net}.2", str(tport), str(uport),
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        r, _, _ = select.select([proc.stdout], [], [], 10)
        assert r and proc.stdout.readline().strip() == "ready"
        yield {"ip": f"{net}.2", "host_side": f"{net}.1", "tcp": tport, "udp": uport}
        proc.kill()
        proc.wait(5)
        proc.stdout.close()
    finally:
        if link is not None:
            link.delete()
        ns.delete()


def test_outbound_to_a_non_loopback_destination(guest_ns, internet):
    need("curl", "ping")
    far = internet["ip"]
    with TapForwarder(guest_ns, policy=LoopbackOnly(allowed=[far])) as fw:
        r = guest_ns.run("curl", "-sS", "-m", "15", f"http://{far}:{internet['tcp']}/", timeout=30)
        assert r.returncode == 0, r.stderr
        # The far end sees the host's own address: the flow was re-originated by a host socket.
        assert r.stdout == f"hello from the internet, you are {internet['host_side']}"
        got = run_guest_py(guest_ns, UDP_ASK, far, str(internet["udp"]), timeout=30)
        assert got == {"reply": f"udp {internet['host_side']} from the guest", "peer": far}
        r = guest_ns.run("ping", "-c2", "-i0.2", "-W5", far, timeout=20)
        assert r.returncode == 0, r.stdout + r.stderr
        st = fw.stats()
        assert st["events"]["new"] >= 1 and st["events"]["udp_new"] >= 1 and st["events"]["icmp_new"] >= 1
        # An address the policy does not list is still unreachable, right away.
        r = guest_ns.run("curl", "-sS", "-m", "10", f"http://{internet['host_side'][:-1]}9:{internet['tcp']}/")
        assert r.returncode == 7, r.stderr


# -- a thousand TCP connections and a thousand UDP flows -------------------------------------------

ECHO_SERVER = r"""
import asyncio, socket, sys
async def main():
    async def conn(r, w):
        try:
            while line := await r.readline():
                w.write(line)
                await w.drain()
        except ConnectionError:
            pass
        w.close()
    srv = await asyncio.start_server(conn, "127.0.0.1", 0, backlog=4096)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)   # SO_RCVBUFFORCE (root)
    u.bind(("127.0.0.1", 0))
    u.setblocking(False)
    loop = asyncio.get_running_loop()
    def echo():
        while True:
            try:
                data, peer = u.recvfrom(2000)
            except BlockingIOError:
                return
            u.sendto(data, peer)
    loop.add_reader(u.fileno(), echo)
    print(srv.sockets[0].getsockname()[1], u.getsockname()[1], flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""

MANY_TCP = r"""
import asyncio, json, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def main():
    t0 = time.monotonic()
    async def open_one(i):
        r, w = await asyncio.open_connection(host, port)
        w.write(b"hello %d\n" % i)
        await w.drain()
        assert await r.readline() == b"hello %d\n" % i
        return r, w
    conns = await asyncio.gather(*(open_one(i) for i in range(n)))
    opened = time.monotonic() - t0
    print(json.dumps({"open": len(conns)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)   # all held open meanwhile
    async def again(i, rw):
        r, w = rw
        w.write(b"again %d\n" % i)
        await w.drain()
        ok = await r.readline() == b"again %d\n" % i
        w.close()
        await w.wait_closed()
        return ok
    oks = await asyncio.gather(*(again(i, c) for i, c in enumerate(conns)))
    print(json.dumps({"echoed": sum(oks), "open_s": round(opened, 2), "total_s": round(time.monotonic() - t0, 2)}))
asyncio.run(asyncio.wait_for(main(), 100))
"""

MANY_UDP = r"""
import json, selectors, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.connect((host, port))
    socks.append(s)
sel = selectors.DefaultSelector()
for i, s in enumerate(socks):
    sel.register(s, selectors.EVENT_READ, i)
pending = set(range(n))
t0 = time.monotonic()
sends = 0
deadline = t0 + 40
while pending and time.monotonic() < deadline:
    for i in list(pending):
        try:
            socks[i].send(b"flow %d" % i)
            sends += 1
        except BlockingIOError:
            pass
    resend_at = time.monotonic() + 1.0
    while pending and time.monotonic() < resend_at:
        for key, _ in sel.select(timeout=0.1):
            i = key.data
            try:
                data = socks[i].recv(100)
            except (BlockingIOError, ConnectionRefusedError):
                continue
            if data == b"flow %d" % i:
                pending.discard(i)
print(json.dumps({"answered": n - len(pending), "sends": sends, "seconds": round(time.monotonic() - t0, 2),
                  "ports": len({s.getsockname()[1] for s in socks})}))
"""


@pytest.fixture
def echo_host():
    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    r, _, _ = select.select([proc.stdout], [], [], 10)
    assert r, "the echo server did not start"
    tport, uport = map(int, proc.stdout.readline().split())
    yield tport, uport
    proc.kill()
    proc.wait(5)
    proc.stdout.close()


def test_a_thousand_concurrent_tcp_connections(guest_ns, echo_host):
    n = 1000
    with TapForwarder(guest_ns) as fw:
        p = guest_ns.popen(sys.executable, "-c", MANY_TCP, HOST_ALIAS, str(echo_host[0]), str(n),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            r, _, _ = select.select([p.stdout], [], [], 90)
            line = p.stdout.readline() if r else ""
            assert line, f"the guest did not open {n} connections in 90 s: {p.poll()} {fw.stats()['engine']}"
            assert json.loads(line) == {"open": n}
            st = fw.stats()
            # All of them at once: one engine flow and one host socket each.
            assert st["engine"]["flows_active"] >= n and len(st["flows"]) >= n, st["engine"]
            out, err = p.communicate("go\n", timeout=90)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        assert p.returncode == 0, err[-3000:]
        res = json.loads(out.strip().splitlines()[-1])
        assert res["echoed"] == n, res
        st = fw.stats()
        assert st["engine"]["bad_csum"] == 0
        assert st["events"]["new"] >= n and st["events"]["refused"] == 0
        deadline = time.monotonic() + 15   # the closes run their course
        while fw.stats()["engine"]["flows_active"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fw.stats()["engine"]["flows_active"] == 0
    print("1000 tcp:", res)


def test_a_thousand_udp_flows(guest_ns, echo_host):
    n = 1000
    with TapForwarder(guest_ns) as fw:
        res = run_guest_py(guest_ns, MANY_UDP, HOST_ALIAS, str(echo_host[1]), str(n), timeout=90)
        assert res["answered"] == n and res["ports"] == n, res
        st = fw.stats()
        # One NAT flow (and host socket) per guest port, all alive at once.
        assert st["dgram"]["flows_opened"] >= n and st["dgram"]["flows_active"] >= n, st["dgram"]
        assert st["dgram"]["evicted"] == 0
        assert sum(1 for f in st["dgram_flows"] if f["proto"] == "udp") >= n
    print("1000 udp:", res)


# -- refusals and ICMP errors as the guest sees them -----------------------------------------------

REFUSALS = r"""
import errno, json, socket, sys
closed_udp, closed_tcp = int(sys.argv[1]), int(sys.argv[2])
out = {}
def udp(addr, recverr=False):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if recverr:
        # Linux reports only "hard" ICMP errors (port unreachable, prohibited) to a connected
        # UDP socket, unless it asks for all of them (ip(7) IP_RECVERR).
        s.setsockopt(socket.SOL_IP, 11, 1)   # IP_RECVERR
    s.settimeout(5)
    s.connect(addr)
    for _ in range(3):
        s.send(b"anyone?")
        try:
            s.recv(100)
            return "answered"
        except socket.timeout:
            continue
        except OSError as e:
            return errno.errorcode[e.errno]
    return "timeout"
out["udp_closed_port"] = udp(("192.168.65.2", closed_udp))
if sys.argv[3:] == ["unlisted"]:   # only where the test's policy refuses it: never sent anywhere
    out["udp_unlisted"] = udp(("192.0.2.10", 53), recverr=True)
t = socket.socket()
t.settimeout(5)
try:
    t.connect(("192.168.65.2", closed_tcp))
    out["tcp_closed_port"] = "connected"
except OSError as e:
    out["tcp_closed_port"] = errno.errorcode.get(e.errno, str(e))
print(json.dumps(out))
"""


def test_refusals_reach_the_guest_as_rst_and_icmp(guest_ns):
    closed_udp, closed_tcp = free_port(socket.SOCK_DGRAM), free_port()
    with TapForwarder(guest_ns) as fw:
        t0 = time.monotonic()
        got = run_guest_py(guest_ns, REFUSALS, str(closed_udp), str(closed_tcp), "unlisted", timeout=40)
        took = time.monotonic() - t0
        st = fw.stats()
    # The host's ICMP port unreachable for the loopback port, translated back to the guest's
    # flow; the policy's refusal of an unlisted address as ICMP network unreachable; a TCP
    # connect to a closed port as a RST — all at once, not after a timeout.
    assert got == {"udp_closed_port": "ECONNREFUSED", "udp_unlisted": "ENETUNREACH", "tcp_closed_port": "ECONNREFUSED"}
    assert took < 10
    assert st["dgram"]["icmp_errors_out"] >= 1 or st["dgram"]["refused"] >= 1
    assert st["engine"]["rst_out"] >= 1


# -- the daemon: fastnet serve ---------------------------------------------------------------------

class Serve:
    """`fastnet serve --tap tap0 --netns GUEST ...` (optionally run inside another namespace);
    the guest's tap0 gets GUEST/24 and a default route once the daemon created it."""

    def __init__(self, guest: Netns, tmp: pathlib.Path, *args: str, inside: Netns | None = None):
        cfg = tmp / "fastnet.toml"
        cfg.write_text(PRIVATE_CONFIG)
        self.log_path = tmp / f"serve-{guest.name}.log"
        self.log = open(self.log_path, "w")
        argv = [fastnet_cmd(), "serve", "--tap", "tap0", "--netns", guest.path, "--config", str(cfg),
                "--disable-proxy", "-v", *args]
        if inside is not None:
            argv = inside.cmd(*argv)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 15
        while subprocess.run(["ip", "-n", guest.name, "link", "show", "tap0"], capture_output=True).returncode:
            assert self.proc.poll() is None and time.monotonic() < deadline, self.stderr()
            time.sleep(0.05)
        guest.ip("link", "set", "tap0", "up")
        guest.ip("addr", "add", f"{GUEST}/24", "dev", "tap0")
        guest.ip("route", "add", "default", "via", GATEWAY)

    def stderr(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()[-4000:]

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"fastnet serve ignored SIGTERM for {timeout}s: {self.stderr()}") from None
        finally:
            self.log.close()


def test_serve_disable_host_loopback(guest_ns, tmp, web):
    need("curl", "ping")
    seen = []
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.1)
    srv = Serve(guest_ns, tmp, "--disable-host-loopback")
    try:
        t0 = time.monotonic()
        r = guest_ns.run("curl", "-sS", "-m", "10", f"http://{HOST_ALIAS}:{web}/{PAGE.name}", timeout=20)
        assert r.returncode == 7 and time.monotonic() - t0 < 5, r.stderr   # refused (RST), at once
        got = run_guest_py(guest_ns, REFUSALS, str(udp.getsockname()[1]), str(web), timeout=40)
        assert got["udp_closed_port"] == "ECONNREFUSED" and got["tcp_closed_port"] == "ECONNREFUSED", got
        try:
            seen.append(udp.recvfrom(100))
        except socket.timeout:
            pass
        assert seen == []   # the open UDP port on the host's loopback never heard from the guest
        r = guest_ns.run("ping", "-c1", "-W2", HOST_ALIAS, timeout=10)
        assert r.returncode != 0                                      # no echo through the alias either
        r = guest_ns.run("ping", "-c1", "-W5", GATEWAY, timeout=10)   # the gateway itself still answers
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        udp.close()
        assert srv.stop() == 0, srv.stderr()


@pytest.mark.parametrize("ping_sockets", [True, False], ids=["ping-socket", "raw-socket"])
def test_serve_ping_gateway_and_host_alias(guest_ns, tmp, ping_sockets):
    """fastnet answers pings to the gateway itself and forwards pings to the host alias for real,
    to 127.0.0.1 of the namespace it runs in: with an unprivileged ping socket where that
    namespace's net.ipv4.ping_group_range allows one, else (as root) with a raw socket."""
    need("ping", "sysctl")
    host = Netns("h")   # fastnet's "host": its own namespace, whose sysctl the test may change
    key = "net.ipv4.ping_group_range"
    try:
        before = host.run("sysctl", "-n", key, check=True).stdout.split()
        host.run("sysctl", "-w", f"{key}={'0 2147483647' if ping_sockets else '1 0'}", check=True)
        try:
            srv = Serve(guest_ns, tmp, inside=host)
            try:
                for target in (GATEWAY, HOST_ALIAS):
                    r = guest_ns.run("ping", "-c3", "-i0.2", "-W5", target, timeout=20)
                    assert r.returncode == 0 and " 0% packet loss" in r.stdout, target + r.stdout + r.stderr
            finally:
                code = srv.stop()
            log = srv.stderr()
            assert code == 0, log
        finally:
            host.run("sysctl", "-w", f"{key}={' '.join(before)}")
    finally:
        host.delete()
    assert ("ping sockets are not allowed" in log) is not ping_sockets, log


HOLD = r"""
import json, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"hold")
print("connected", flush=True)
s.settimeout(30)
t0 = time.monotonic()
try:
    data = s.recv(100)
    what = "eof" if not data else "data"
except ConnectionResetError:
    what = "reset"
except socket.timeout:
    what = "timeout"
print(json.dumps({"got": what, "after": round(time.monotonic() - t0, 2)}))
"""


def test_serve_sigterm_resets_every_flow_and_pcap_records_frames(guest_ns, tmp, web):
    need("curl")
    pcap = tmp / "capture.pcap"
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    ls.settimeout(15)
    hold_port = ls.getsockname()[1]
    srv = Serve(guest_ns, tmp, "--pcap", str(pcap))
    holders = []
    try:
        r = guest_ns.run("curl", "-sS", "-m", "15", f"http://{HOST_ALIAS}:{web}/{PAGE.name}", timeout=30)
        assert r.returncode == 0 and r.stdout == PAGE.read_text(), r.stderr
        accepted = []
        for _ in range(3):
            p = guest_ns.popen(sys.executable, "-c", HOLD, HOST_ALIAS, str(hold_port),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            holders.append(p)
            c, _ = ls.accept()
            c.settimeout(10)
            assert c.recv(4) == b"hold"
            accepted.append(c)
            r, _, _ = select.select([p.stdout], [], [], 10)
            assert r and p.stdout.readline().strip() == "connected"
        assert srv.stop() == 0, srv.stderr()
        for p in holders:
            out, err = p.communicate(timeout=20)
            assert json.loads(out.strip().splitlines()[-1])["got"] == "reset", out + err
        for c in accepted:   # the host side of each flow was closed too
            try:
                assert c.recv(100) == b""
            except ConnectionResetError:
                pass
            c.close()
    finally:
        for p in holders:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        ls.close()
        if srv.proc.poll() is None:
            srv.stop()
    frames = read_frames(str(pcap))
    assert frames, "nothing recorded"
    ip_alias = socket.inet_aton(HOST_ALIAS)

    def tcp(f):
        if len(f) < 54 or f[12:14] != b"\x08\x00" or f[23] != 6:
            return None
        ihl = (f[14] & 15) * 4
        sport, dport = int.from_bytes(f[14 + ihl:16 + ihl], "big"), int.from_bytes(f[16 + ihl:18 + ihl], "big")
        return f[26:30], f[30:34], sport, dport, f[14 + ihl + 13]
    segs = [t for t in map(tcp, frames) if t]
    # Both directions are there: the guest's SYN to the web server, fastnet's SYN-ACK, and the
    # RSTs SIGTERM sent to the held flows.
    assert any(t[1] == ip_alias and t[3] == web and t[4] & 0x12 == 0x02 for t in segs)
    assert any(t[0] == ip_alias and t[2] == web and t[4] & 0x12 == 0x12 for t in segs)
    assert len({t[3] for t in segs if t[0] == ip_alias and t[2] == hold_port and t[4] & 0x04}) == 3
    assert any(f[12:14] == b"\x08\x06" for f in frames)   # and ARP


# -- fastnet run -----------------------------------------------------------------------------------

def fastnet_run(tmp: pathlib.Path, *cmd: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    cfg = tmp / "run.toml"
    cfg.write_text(PRIVATE_CONFIG)
    return subprocess.run([fastnet_cmd(), "run", "--config", str(cfg), "--", *cmd], capture_output=True, text=True,
                          timeout=timeout, **kw)


def test_run_as_root_end_to_end(tmp, web):
    need("curl", "getent")
    # The README's main job: a name the gateway's DNS answers, the host's loopback behind it.
    r = fastnet_run(tmp, "curl", "-sS", "-m", "15", f"http://host.docker.internal:{web}/{PAGE.name}")
    assert r.returncode == 0 and r.stdout == PAGE.read_text(), r.stderr
    # DNS through the gateway: a name only fastnet's DNS knows (not in the command's hosts file).
    r = fastnet_run(tmp, "getent", "ahostsv4", "db.fastnet.test")
    assert r.returncode == 0 and r.stdout.split()[0] == "192.168.65.9", r.stdout + r.stderr
    r = fastnet_run(tmp, "sh", "-c", "cat /etc/resolv.conf; ip -4 -o addr show; ip route")
    assert "nameserver 192.168.65.1" in r.stdout and "192.168.65.3/24" in r.stdout
    assert "default via 192.168.65.1" in r.stdout
    # The command's exit status is fastnet's.
    assert fastnet_run(tmp, "sh", "-c", "exit 7").returncode == 7
    assert fastnet_run(tmp, "true").returncode == 0
    assert fastnet_run(tmp, "sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM   # as a shell says
    r = fastnet_run(tmp, "/nonexistent/command")
    assert r.returncode == 127 and len(r.stderr.strip().splitlines()) == 1 and "/nonexistent/command" in r.stderr


def test_run_as_an_ordinary_user(tmp):
    need("setpriv")
    nobody = 65534
    os.chmod(tmp, 0o755)
    argv = ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", "--",
            fastnet_cmd(), "run", "--", "sh", "-c", "ip -4 -o addr show; exit 3"]
    st = os.stat("/dev/net/tun")
    if not st.st_mode & stat.S_IROTH or not st.st_mode & stat.S_IWOTH:
        # Distributions that let ordinary users create TAP devices make /dev/net/tun 0666; this
        # machine's is root's only. As root, give the test its own: a private mount namespace
        # in which a 0666 node for the same device is bound over it.
        need("unshare", "mknod")
        node = os.path.join(tmp, "tun")
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                f'mknod {node} c 10 200 && chmod 666 {node} && mount --bind {node} /dev/net/tun && exec "$@"',
                "sh", *argv]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp)
    if "cannot create the namespace" in r.stderr:
        pytest.skip(f"user namespaces are not available to an ordinary user here: {r.stderr.strip()}")
    assert r.returncode == 3, r.stderr
    assert "192.168.65.3/24" in r.stdout
