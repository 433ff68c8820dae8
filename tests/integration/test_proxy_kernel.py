"""The HTTP/HTTPS proxy end to end with real programs.

- "The internet": a namespace behind a veth pair from the host namespace, with a web server
  (plain HTTP and HTTPS with a certificate made here) on two addresses.
- The corporate proxy: tinyproxy (Debian) on the host's loopback, its config and log in a temp
  dir; it runs in a private mount namespace whose /etc/hosts names the web server, so it never
  asks a real resolver.
- The guest: a namespace on a TAP attached to a VirtualNetwork with the proxy enabled from a
  watched JSON file; curl in the guest has no proxy variables unless a test gives them.

Everything the guest may reach is the virtual network itself and the test's own namespaces.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import socket
import subprocess
import sys
import time

import pytest

from fastnet._tcp import Refusal
from fastnet.aio.forwarder import Refuse
from tests.integration.harness import GATEWAY, GUEST, NetworkRunner
from tests.integration.netns import Netns, VethLink, need, requires_netns

pytestmark = [requires_netns, pytest.mark.netns]

WEBSERVER = os.path.join(os.path.dirname(__file__), "webserver.py")
# An address block for "the internet" unlikely to clash with a concurrent run.
NET = f"10.233.{os.getpid() % 200 + 20}"
WEB = f"{NET}.2"          # web.fastnet.test, secure.fastnet.test, excluded.fastnet.test
FAR = f"{NET}.130"        # inside the excluded CIDR
EXCLUDED_CIDR = f"{NET}.128/25"
NAMES = ("web.fastnet.test", "secure.fastnet.test", "excluded.fastnet.test")
AUTH_USER, AUTH_PASSWORD = "proxyuser", "Sekr1t-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_tcp(host: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.3).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


class Tinyproxy:
    """tinyproxy on 127.0.0.1 with its own config, log, /etc/hosts and resolv.conf."""

    def __init__(self, tmp, name: str, auth: tuple[str, str] | None = None):
        self.port = free_port()
        d = tmp / name
        d.mkdir()
        self.log_path = d / "tinyproxy.log"
        hosts = d / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n{WEB} {' '.join(NAMES)}\n")
        resolv = d / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\n")   # nothing answers there: no lookups leave
        conf = d / "tinyproxy.conf"
        conf.write_text("\n".join([
            f"Port {self.port}", "Listen 127.0.0.1", "Timeout 30", f'LogFile "{self.log_path}"', "LogLevel Info",
            "MaxClients 50", "Allow 127.0.0.1", *([f"BasicAuth {auth[0]} {auth[1]}"] if auth else []), ""]))
        script = (f"mount --bind {hosts} /etc/hosts && mount --bind {resolv} /etc/resolv.conf && "
                  f"exec tinyproxy -d -c {conf}")
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                     stdout=subprocess.DEVNULL, stderr=open(d / "stderr", "w"))
        try:
            wait_tcp("127.0.0.1", self.port)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"tinyproxy did not start: {(d / 'stderr').read_text()[-2000:]}")

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except FileNotFoundError:
            return ""

    def wait_log(self, text: str, timeout: float = 5) -> str:
        """tinyproxy may write its log line just after the answer: poll for it briefly."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.05)
        return self.log()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class OnlyTestNetworks:
    """The network's own policy (with the proxy's interceptor), but flows may leave only for
    the test's internet namespace; everything else is refused."""

    def __init__(self, inner, allowed_prefix: str):
        import ipaddress

        self.inner = inner
        self.allowed = ipaddress.IPv4Network(f"{allowed_prefix}.0/24")

    def _ok(self, dst) -> bool:
        return dst in self.inner.config.subnet or dst in self.allowed

    def tcp_target(self, gip, gport, dip, dport):
        return self.inner.tcp_target(gip, gport, dip, dport) if self._ok(dip) else Refuse(Refusal.NET_UNREACHABLE)

    def udp_target(self, gip, gport, dip, dport):
        return self.inner.udp_target(gip, gport, dip, dport) if self._ok(dip) else Refuse(Refusal.NET_UNREACHABLE)

    def icmp_target(self, gip, dip):
        return self.inner.icmp_target(gip, dip) if self._ok(dip) else Refuse(Refusal.DROP)


class World:
    def __init__(self, tmp):
        need("tinyproxy", "openssl", "curl", "unshare")
        self.tmp = tmp
        self.cleanup = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self):
        from fastnet.cli.serve import attach_tap
        from fastnet.services.proxyconf import ProxyConfigSource

        tmp = self.tmp
        # The internet namespace and its web server.
        self.inet = Netns("i")
        self.cleanup.append(self.inet.delete)
        self.veth = VethLink(self.inet, f"{NET}.1/24", f"{WEB}/24", (f"{FAR}/24",))
        self.cleanup.append(self.veth.delete)
        for addr in (WEB, FAR):  # never send a test packet anywhere but into the link
            assert self.veth.routes_via_link(addr), f"{addr} is not routed into the test's link"
        self.ca = tmp / "cert.pem"
        key = tmp / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=secure.fastnet.test", "-keyout", str(key),
                        "-out", str(self.ca), "-addext",
                        "subjectAltName=" + ",".join(f"DNS:{n}" for n in NAMES) + f",IP:{WEB},IP:{FAR}"],
                       check=True, capture_output=True, timeout=30)
        self.web = self.inet.popen(sys.executable, WEBSERVER, "--cert", str(self.ca), "--key", str(key),
                                   f"{WEB}:80", f"{WEB}:443:tls", f"{FAR}:80", f"{FAR}:443:tls",
                                   stdout=subprocess.PIPE, stderr=open(tmp / "web.log", "w"), text=True)
        self.cleanup.append(lambda: (self.web.kill(), self.web.wait(5)))
        ready, _, _ = select.select([self.web.stdout], [], [], 15)
        assert ready and self.web.stdout.readline().strip() == "ready", (tmp / "web.log").read_text()
        # The corporate proxies.
        self.proxy = Tinyproxy(tmp, "open")
        self.cleanup.append(self.proxy.stop)
        self.auth_proxy = Tinyproxy(tmp, "auth", auth=(AUTH_USER, AUTH_PASSWORD))
        self.cleanup.append(self.auth_proxy.stop)
        # fastnet, with the proxy configured from a watched file.
        self.conf = tmp / "http_proxy.json"
        self.write_conf(self.default_conf())
        self.source = ProxyConfigSource(file=str(self.conf), environ={}, system=False)
        self.runner = NetworkRunner()
        self.runner.__enter__()
        self.cleanup.append(self.runner.close)
        net = self.runner.net
        confined = net.policy                      # harness's wrapper: swap in ours around the real policy

        def setup():
            net.policy = confined.inner
            self.service = net.enable_proxy(self.source)
            net.policy = OnlyTestNetworks(confined.inner, NET)
            self.source.start(self.runner.loop)
        self.runner.call(setup)
        self.cleanup.append(lambda: self.runner.call(lambda: (self.source.close(), self.service.close())))
        # The guest.
        self.guest = Netns("g")
        self.cleanup.append(self.guest.delete)
        self.runner.call(attach_tap, net, "tap0", self.guest.path, False)
        self.guest.ip("link", "set", "tap0", "up")
        self.guest.ip("addr", "add", f"{GUEST}/24", "dev", "tap0")
        self.guest.ip("route", "add", "default", "via", GATEWAY)
        self.guest.set_hosts(f"127.0.0.1 localhost\n{GATEWAY} gateway.docker.internal\n{WEB} {' '.join(NAMES)}\n")
        self.guest.set_resolv_conf(f"nameserver {GATEWAY}\n")

    def default_conf(self) -> dict:
        url = f"http://127.0.0.1:{self.proxy.port}"
        return {"http": url, "https": url, "exclude": f"excluded.fastnet.test {EXCLUDED_CIDR}"}

    def write_conf(self, obj) -> None:
        tmp = f"{self.conf}.tmp"
        with open(tmp, "w") as f:
            f.write(obj if isinstance(obj, str) else json.dumps(obj))
        os.replace(tmp, self.conf)

    def set_conf(self, obj) -> float:
        """Write the file and wait (at most a second, the promise) until fastnet uses it."""
        from fastnet.services.proxyconf import layer_from_json, merge

        want = merge(layer_from_json(obj))
        if self.source.current == want:
            return 0.0
        t0 = time.monotonic()
        self.write_conf(obj)
        while self.source.current != want:
            assert time.monotonic() - t0 < 1.0, "the new proxy configuration did not apply within a second"
            time.sleep(0.02)
        return time.monotonic() - t0

    def curl(self, url: str, *args: str, env: dict | None = None) -> tuple[int, str, str, int]:
        """(curl exit code, body, http status, time in ms) from the guest, no proxy variables
        unless env gives them."""
        clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})}
        t0 = time.monotonic()
        r = self.guest.run("curl", "-sS", "--max-time", "15", "--cacert", str(self.ca), "-w", "\n%{http_code}",
                           *args, url, env=clean, timeout=30)
        body, _, code = r.stdout.rpartition("\n")
        return r.returncode, body, code, int((time.monotonic() - t0) * 1000)

    def close(self):
        for fn in reversed(self.cleanup):
            try:
                fn()
            except Exception:
                pass
        self.cleanup.clear()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("proxy"))
    yield w
    w.close()


@pytest.fixture
def fresh(world):
    world.set_conf(world.default_conf())
    return world


def test_plain_http_goes_through_the_proxy_transparently(fresh):
    rc, body, code, _ = fresh.curl("http://web.fastnet.test/t-transparent")
    assert (rc, code) == (0, "200"), body
    assert "GET /t-transparent host=web.fastnet.test" in body and "(tinyproxy/" in body
    assert "GET http://web.fastnet.test/t-transparent HTTP/1.1" in fresh.proxy.wait_log("/t-transparent")


def test_keep_alive_and_head_through_the_transparent_proxy(fresh):
    rc, body, code, _ = fresh.curl("http://web.fastnet.test/t-ka1", "--next", "-I", "http://web.fastnet.test/t-ka2",
                                   "--next", "http://web.fastnet.test/t-ka3")
    assert rc == 0, body
    assert "GET /t-ka1" in body and "GET /t-ka3" in body and "content-length" in body.lower()
    log = fresh.proxy.wait_log("/t-ka3")
    assert "HEAD http://web.fastnet.test/t-ka2" in log


def test_https_is_tunnelled_with_the_sni_name(fresh):
    rc, body, code, _ = fresh.curl("https://secure.fastnet.test/t-tls")
    assert (rc, code) == (0, "200"), body
    assert "GET /t-tls host=secure.fastnet.test" in body and "tls=yes" in body and "via=-" in body
    assert "CONNECT secure.fastnet.test:443" in fresh.proxy.wait_log("CONNECT secure.fastnet.test:443")


def test_excluded_domain_goes_direct_for_http_and_https(fresh):
    rc, body, code, _ = fresh.curl("http://excluded.fastnet.test/t-excl-domain")
    assert (rc, code) == (0, "200") and "via=-" in body, body
    rc, body, code, _ = fresh.curl("https://excluded.fastnet.test/t-excl-domain-tls")
    assert (rc, code) == (0, "200") and "tls=yes" in body, body
    fresh.proxy.wait_log("never-logged", timeout=0.3)
    log = fresh.proxy.log()
    assert "t-excl-domain" not in log and "excluded.fastnet.test" not in log


def test_excluded_cidr_goes_direct(fresh):
    rc, body, code, _ = fresh.curl(f"http://{FAR}/t-excl-cidr")
    assert (rc, code) == (0, "200") and "via=-" in body, body
    rc, body, code, _ = fresh.curl(f"https://{FAR}/t-excl-cidr-tls")
    assert (rc, code) == (0, "200") and "tls=yes" in body, body
    fresh.proxy.wait_log("never-logged", timeout=0.3)
    assert FAR not in fresh.proxy.log()


def test_explicit_proxy_on_the_gateway(fresh):
    # Both spellings, as `fastnet proxy-env` gives them: curl reads only the lower-case http_proxy.
    gw = "http://gateway.docker.internal:3128"
    env = {"HTTP_PROXY": gw, "http_proxy": gw, "HTTPS_PROXY": gw, "https_proxy": gw}
    rc, body, code, _ = fresh.curl("http://web.fastnet.test/t-explicit", env=env)
    assert (rc, code) == (0, "200") and "(tinyproxy/" in body, body
    assert "GET http://web.fastnet.test/t-explicit" in fresh.proxy.wait_log("/t-explicit")
    rc, body, code, _ = fresh.curl("https://secure.fastnet.test/t-explicit-tls", env=env)
    assert (rc, code) == (0, "200") and "tls=yes" in body, body
    assert fresh.proxy.wait_log("CONNECT").count("CONNECT secure.fastnet.test:443") >= 1
    # An excluded destination: the explicit proxy goes there itself.
    rc, body, code, _ = fresh.curl(f"http://{FAR}/t-explicit-direct", env=env)
    assert (rc, code) == (0, "200") and "via=-" in body, body
    assert "t-explicit-direct" not in fresh.proxy.log()


def test_proxy_authentication(world, caplog):
    caplog.set_level(logging.DEBUG, logger="fastnet")
    url = f"http://{AUTH_USER}:{AUTH_PASSWORD}@127.0.0.1:{world.auth_proxy.port}"
    world.set_conf({"http": url, "https": url})
    rc, body, code, _ = world.curl("http://web.fastnet.test/t-auth")
    assert (rc, code) == (0, "200") and "(tinyproxy/" in body, body
    assert "GET http://web.fastnet.test/t-auth" in world.auth_proxy.wait_log("/t-auth")
    rc, body, code, _ = world.curl("https://secure.fastnet.test/t-auth-tls")
    assert (rc, code) == (0, "200"), body
    # No credentials: the proxy's 407 (with its Proxy-Authenticate) reaches the guest as it is.
    bare = f"http://127.0.0.1:{world.auth_proxy.port}"
    world.set_conf({"http": bare, "https": bare})
    rc, body, code, _ = world.curl("http://web.fastnet.test/t-auth-none", "-i")
    assert code == "407" and "proxy-authenticate: basic" in body.lower(), body
    # Wrong ones: tinyproxy answers 401, passed through the same way.
    bad = f"http://{AUTH_USER}:wrong-pw@127.0.0.1:{world.auth_proxy.port}"
    world.set_conf({"http": bad, "https": bad})
    rc, body, code, _ = world.curl("http://web.fastnet.test/t-auth-bad")
    assert code == "401", body
    assert AUTH_PASSWORD not in caplog.text and "wrong-pw" not in caplog.text


def test_config_file_change_applies_without_restarting(fresh, caplog):
    world = fresh
    rc, body, code, _ = world.curl("http://web.fastnet.test/t-before")
    assert "(tinyproxy/" in body
    # Exclude the web server's name: the very next request goes direct.
    conf = world.default_conf()
    conf["exclude"] += " web.fastnet.test"
    elapsed = world.set_conf(conf)
    assert elapsed < 1.0
    rc, body, code, _ = world.curl("http://web.fastnet.test/t-after")
    assert (rc, code) == (0, "200") and "via=-" in body, body
    assert "/t-after" not in world.proxy.log()
    # An invalid file: reported in one line, the last good configuration stays.
    caplog.set_level(logging.WARNING, logger="fastnet.proxy")
    before = world.source.current
    world.write_conf('{"http": ')
    time.sleep(0.8)
    assert world.source.current is before
    warnings = [r.getMessage() for r in caplog.records if r.name == "fastnet.proxy" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "keeping the last good configuration" in warnings[0] and "\n" not in warnings[0]
    rc, body, code, _ = world.curl("http://web.fastnet.test/t-invalid")
    assert "via=-" in body
    # Back to proxying everything.
    world.set_conf(world.default_conf())
    rc, body, code, _ = world.curl("http://web.fastnet.test/t-restored")
    assert "(tinyproxy/" in body


def test_stopped_proxy_gives_a_502_page(world):
    doomed = Tinyproxy(world.tmp, "doomed")
    try:
        url = f"http://127.0.0.1:{doomed.port}"
        world.set_conf({"http": url, "https": url})
        rc, body, code, _ = world.curl("http://web.fastnet.test/t-alive")
        assert code == "200" and "/t-alive" in doomed.wait_log("/t-alive")
    finally:
        doomed.stop()
    rc, body, code, ms = world.curl("http://web.fastnet.test/t-dead")
    assert code == "502", body
    assert f"cannot connect to the HTTP proxy 127.0.0.1:{doomed.port}" in body and "refused" in body.lower()
    assert ms < 5000
    # HTTPS cannot carry a page: the guest gets a TLS alert at once, not a hang.
    rc, body, code, ms = world.curl("https://secure.fastnet.test/t-dead-tls")
    assert rc == 35 and ms < 5000, (rc, body)


def test_fastnet_serve_with_a_proxy_file(world):
    """The daemon as users run it: `fastnet serve --proxy-file` intercepts and serves
    gateway:3128. (Its NAT policy is the real one: the guest only ever dials the test's
    own addresses.)"""
    from tests.test_cli import fastnet_cmd

    conf = world.tmp / "serve_proxy.json"
    url = f"http://127.0.0.1:{world.proxy.port}"
    conf.write_text(json.dumps({"http": url, "https": url, "exclude": EXCLUDED_CIDR}))
    guest = Netns("s")
    proc = None
    try:
        guest.set_hosts(f"127.0.0.1 localhost\n{GATEWAY} gateway.docker.internal\n{WEB} {' '.join(NAMES)}\n")
        guest.set_resolv_conf(f"nameserver {GATEWAY}\n")
        proc = subprocess.Popen([fastnet_cmd(), "serve", "--tap", "tap0", "--netns", guest.path, "--proxy-file",
                                 str(conf), "--ignore-env-proxy", "--ignore-system-proxy"],
                                stdout=subprocess.DEVNULL, stderr=open(world.tmp / "serve.log", "w"),
                                env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})
        deadline = time.monotonic() + 10
        while subprocess.run(["ip", "-n", guest.name, "link", "show", "tap0"], capture_output=True).returncode:
            assert proc.poll() is None and time.monotonic() < deadline, (world.tmp / "serve.log").read_text()
            time.sleep(0.05)
        guest.ip("link", "set", "tap0", "up")
        guest.ip("addr", "add", f"{GUEST}/24", "dev", "tap0")
        guest.ip("route", "add", "default", "via", GATEWAY)
        clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}

        def curl(url, **env):
            r = guest.run("curl", "-sS", "--max-time", "15", "--cacert", str(world.ca), url, env={**clean, **env},
                          timeout=30)
            return r.returncode, r.stdout + r.stderr
        rc, out = curl("http://web.fastnet.test/t-serve")
        assert rc == 0 and "(tinyproxy/" in out, out
        assert "GET http://web.fastnet.test/t-serve" in world.proxy.wait_log("/t-serve")
        gw = "http://gateway.docker.internal:3128"
        rc, out = curl("https://secure.fastnet.test/t-serve-explicit", https_proxy=gw, HTTPS_PROXY=gw)
        assert rc == 0 and "tls=yes" in out, out
        rc, out = curl(f"http://{FAR}/t-serve-direct")
        assert rc == 0 and "via=-" in out, out
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        guest.delete()
