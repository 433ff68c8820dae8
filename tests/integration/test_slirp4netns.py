"""``fastnet slirp4netns``: slirp4netns's command line, defaults and API socket.

The API is checked against the real slirp4netns (installed as a benchmark anchor): the same
requests, in the same order, to both; the answers must be the same JSON, except that fastnet's
list_hostfwd carries the documented ``return`` wrapper beside api.c's bare ``entries``, and a
failed bind names its reason after slirp4netns's text.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.integration.netns import Netns, need, requires_netns
from tests.test_cli import fastnet_cmd

pytestmark = [requires_netns, pytest.mark.netns]

PEER_ECHO = os.path.join(os.path.dirname(__file__), "peer_echo.py")


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slirp:
    """A slirp4netns-compatible process serving a fresh namespace."""

    def __init__(self, argv0: list[str], tmp, *flags: str, configure: bool = True, tag: str = "s"):
        self.ns = Netns(tag)
        self.api = str(tmp / f"{self.ns.name}.api")
        ready_r, ready_w = os.pipe()
        self.exit_r, self.exit_w = os.pipe()
        self.log = tmp / f"{self.ns.name}.log"
        argv = [*argv0, *(["--configure"] if configure else []), "--netns-type=path", f"--api-socket={self.api}",
                f"--ready-fd={ready_w}", f"--exit-fd={self.exit_r}", *flags, self.ns.path, "tap0"]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, pass_fds=(ready_w, self.exit_r))
        os.close(ready_w)
        os.close(self.exit_r)
        try:
            r, _, _ = select.select([ready_r], [], [], 20)
            got = os.read(ready_r, 16) if r else b""
        finally:
            os.close(ready_r)
        if got != b"1":
            self.close()
            raise AssertionError(f"{argv0}: no ready byte ({got!r}): {self.log.read_text()[-2000:]}")

    def request(self, payload: str | bytes, shutdown: bool = True) -> str:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(self.api)
            s.sendall(payload.encode() if isinstance(payload, str) else payload)
            if shutdown:
                s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                out += chunk
            return out.decode()
        finally:
            s.close()

    def call(self, execute: str, **arguments) -> dict:
        req = {"execute": execute}
        if arguments:
            req["arguments"] = arguments
        return json.loads(self.request(json.dumps(req)))

    def close(self) -> None:
        try:
            os.close(self.exit_w)
        except OSError:
            pass
        if self.proc.poll() is None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.ns.delete()


FASTNET = lambda: [fastnet_cmd(), "slirp4netns"]  # noqa: E731


@pytest.fixture
def started(tmp_path):
    made = []

    def start(argv0=None, *flags, **kw):
        s = Slirp(argv0 or FASTNET(), tmp_path, *flags, **kw)
        made.append(s)
        return s

    yield start
    for s in made:
        s.close()


def test_configure_ready_fd_and_defaults(started):
    s = started()
    addr = s.ns.run("ip", "-o", "-4", "addr", "show", "dev", "tap0").stdout
    assert "inet 10.0.2.100/24" in addr
    assert "default via 10.0.2.2 dev tap0" in s.ns.run("ip", "route").stdout
    assert "mtu 1500" in s.ns.run("ip", "link", "show", "tap0").stdout
    assert "UP" in s.ns.run("ip", "link", "show", "lo").stdout
    banner = s.log.read_text()
    for line in ("* Gateway:         10.0.2.2", "* DNS:             10.0.2.3", "* Recommended IP:  10.0.2.100"):
        assert line in banner
    assert oct(os.stat(s.api).st_mode & 0o777) == "0o600"
    # The gateway answers ping (and ARP, with libslirp's 52:55:<IP> MAC).
    need("ping")
    r = s.ns.run("ping", "-c", "1", "-W", "3", "10.0.2.2", timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "52:55:0a:00:02:02" in s.ns.run("ip", "neigh", "show", "10.0.2.2").stdout


def test_cidr_mtu_and_macaddress(started):
    s = started(None, "--cidr=10.99.0.0/24", "--mtu=65520", "--macaddress=02:00:00:00:00:42")
    assert "inet 10.99.0.100/24" in s.ns.run("ip", "-o", "-4", "addr", "show", "dev", "tap0").stdout
    assert "default via 10.99.0.2" in s.ns.run("ip", "route").stdout
    link = s.ns.run("ip", "link", "show", "tap0").stdout
    assert "mtu 65520" in link and "02:00:00:00:00:42" in link


@pytest.mark.parametrize("argv, message", [
    (["--cidr=10.0.0.0/26"], "prefix length must be 1..25"),
    (["--macaddress=02:00:00:00:00:01"], "--macaddress can only be used with --configure"),
    (["--enable-sandbox"], "not supported"),
    (["--enable-seccomp"], "not supported"),
    (["--mtu=100"], "--mtu"),
])
def test_bad_command_lines_are_refused(argv, message):
    r = subprocess.run([fastnet_cmd(), "slirp4netns", *argv, "1", "tap0"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and message in r.stderr, r.stderr


def test_help_lists_what_rootlesskit_and_podman_probe_for():
    r = subprocess.run([fastnet_cmd(), "slirp4netns", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    for flag in ("--netns-type", "--userns-path", "--cidr", "--disable-host-loopback", "--api-socket", "--configure",
                 "--ready-fd", "--exit-fd", "--mtu", "--disable-dns", "--macaddress", "--outbound-addr"):
        assert flag in r.stdout
    # Not offered, so that callers probing --help do not ask for them.
    assert "--enable-sandbox" not in r.stdout and "--enable-seccomp" not in r.stdout
    v = subprocess.run([fastnet_cmd(), "slirp4netns", "--version"], capture_output=True, text=True, timeout=30)
    assert v.returncode == 0 and v.stdout.startswith("slirp4netns version ")


def api_script(ports: list[int]) -> list[str]:
    a, b, c = ports
    return [
        json.dumps({"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "127.0.0.1", "host_port": a,
                                                             "guest_port": 80}}),
        json.dumps({"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "127.0.0.1", "host_port": a,
                                                             "guest_port": 80}}),
        json.dumps({"execute": "add_hostfwd", "arguments": {"proto": "udp", "host_addr": "127.0.0.1", "host_port": b,
                                                             "guest_addr": "10.0.2.100", "guest_port": 53}}),
        '{"execute":"list_hostfwd"}',
        '{"execute":"remove_hostfwd","arguments":{"id":1}}',
        '{"execute":"remove_hostfwd","arguments":{"id":1}}',
        '{"execute":"remove_hostfwd","arguments":{}}',
        '{"execute":"add_hostfwd","arguments":{"proto":"sctp","host_port":1,"guest_port":1}}',
        '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::1","host_port":1,"guest_port":1}}',
        '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":"80","guest_port":1}}',
        f'{{"execute":"add_hostfwd","arguments":{{"proto":"tcp","host_port":{c},"guest_addr":"x","guest_port":1}}}}',
        f'{{"execute":"add_hostfwd","arguments":{{"proto":"tcp","host_port":{c}}}}}',
        '{"execute":"nope"}',
        '{"arguments":{}}',
        '[1,2]',
        'garbage',
        f'{{"execute":"add_hostfwd","arguments":{{"proto":"tcp","host_addr":"192.0.2.1","host_port":{c},'
        f'"guest_port":80}}}}',
        '{"execute":"list_hostfwd"}',
    ]


def same_answer(ours: str, theirs: str) -> bool:
    a, b = json.loads(ours), json.loads(theirs)
    if "entries" in b:   # api.c's shape; ours carries the documented wrapper as well
        return a.get("entries") == b["entries"] and a.get("return") == {"entries": b["entries"]}
    desc = b.get("error", {}).get("desc", "")
    if desc.endswith("slirp_add_hostfwd failed"):
        return a.get("error", {}).get("desc", "").startswith(desc + ": ")
    return a == b


def test_api_answers_as_slirp4netns_does(started):
    need("slirp4netns")
    ports = [free_port(), free_port(socket.SOCK_DGRAM), free_port()]
    theirs = started(["slirp4netns"], tag="r")
    expected = [theirs.request(r) for r in api_script(ports)]
    theirs.close()
    ours = started()
    got = [ours.request(r) for r in api_script(ports)]
    for req, a, b in zip(api_script(ports), got, expected):
        assert same_answer(a, b), (req, a, b)
    # Neither answer ends with a newline: one JSON object, then the connection closes.
    assert not got[0].endswith("\n")
    # A request with no shutdown from the client is answered too, and an oversized one refused.
    listed = json.loads(ours.request('{"execute":"list_hostfwd"}', shutdown=False))
    assert [e["id"] for e in listed["entries"]] == [2]
    big = json.dumps({"execute": "list_hostfwd", "pad": "x" * 5000})
    assert json.loads(ours.request(big)) == {"error": {"desc": "bad request: too large message"}}


def test_forwards_reach_the_namespace_and_it_reaches_the_host(started, tmp_path):
    s = started()
    echo = [subprocess.Popen(s.ns.cmd(sys.executable, PEER_ECHO, proto, "0.0.0.0:80"), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT) for proto in ("tcp", "udp")]
    web = None
    try:
        for p in echo:
            r, _, _ = select.select([p.stdout], [], [], 10)
            assert r and b"ready" in p.stdout.readline()
        tport, uport = free_port(), free_port(socket.SOCK_DGRAM)
        assert s.call("add_hostfwd", proto="tcp", host_addr="127.0.0.1", host_port=tport, guest_port=80) == \
            {"return": {"id": 1}}
        assert s.call("add_hostfwd", proto="udp", host_addr="127.0.0.1", host_port=uport, guest_port=80) == \
            {"return": {"id": 2}}
        with socket.create_connection(("127.0.0.1", tport), timeout=5) as c:
            line = c.recv(100).decode()
            assert line.split()[:2] == ["peer", "10.0.2.2"], line   # libslirp's view of a host client
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(5)
            u.sendto(b"x", ("127.0.0.1", uport))
            assert u.recvfrom(100)[0].split()[:2] == [b"peer", b"10.0.2.2"]
        # The namespace reaches the host's loopback through the gateway, as with slirp4netns.
        wport = free_port()
        (tmp_path / "host.txt").write_text("on the host\n")
        web = subprocess.Popen([sys.executable, "-m", "http.server", str(wport), "--bind", "127.0.0.1", "--directory",
                                str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", wport), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        need("curl")
        r = s.ns.run("curl", "-sS", "--max-time", "10", f"http://10.0.2.2:{wport}/host.txt", timeout=20)
        assert r.returncode == 0 and r.stdout == "on the host\n", r.stderr
        assert s.call("remove_hostfwd", id=1) == {"return": {}}
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", tport), timeout=5)
    finally:
        for p in echo + ([web] if web else []):
            p.kill()
            p.wait(5)
            if p.stdout:
                p.stdout.close()


def test_disable_host_loopback(started):
    s = started(None, "--disable-host-loopback")
    assert "WARNING: 127.0.0.1" not in s.log.read_text()
    need("curl")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        r = s.ns.run("curl", "-sS", "--max-time", "5", f"http://10.0.2.2:{listener.getsockname()[1]}/", timeout=20)
        assert r.returncode == 7, (r.returncode, r.stderr)   # refused, not reached


def test_exit_fd_ends_it(started):
    s = started()
    assert s.proc.poll() is None
    os.close(s.exit_w)
    s.proc.wait(10)
    assert s.proc.returncode == 0
    assert not os.path.exists(s.api)
    # The TAP went with the process that held it.
    deadline = time.monotonic() + 5
    while s.ns.run("ip", "link", "show", "tap0").returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert s.ns.run("ip", "link", "show", "tap0").returncode != 0


def test_netns_type_pid_joins_a_process_namespaces(tmp_path):
    """The default form (what rootlesskit runs): a PID whose user and network namespaces are
    entered to open the TAP."""
    need("unshare")
    child = subprocess.Popen(["unshare", "--user", "--map-root-user", "--net", "--", "sleep", "60"],
                             start_new_session=True)
    proc = None
    try:
        mine = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{child.pid}/ns/net") == mine:
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.01)
        r_fd, w_fd = os.pipe()
        api = str(tmp_path / "pid.api")
        proc = subprocess.Popen([fastnet_cmd(), "slirp4netns", "-c", "-r", str(w_fd), "-a", api, str(child.pid), "tap0"],
                                pass_fds=(w_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(w_fd)
        r, _, _ = select.select([r_fd], [], [], 20)
        assert r and os.read(r_fd, 1) == b"1", proc.stderr.read1(4000) if proc.poll() is not None else "no ready byte"
        os.close(r_fd)
        out = subprocess.run(["nsenter", "--target", str(child.pid), "--user", "--net", "--preserve-credentials",
                              "ip", "-o", "-4", "addr", "show", "tap0"], capture_output=True, text=True, timeout=10)
        assert "10.0.2.100/24" in out.stdout, out.stderr
        assert shutil.which("nsenter")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            proc.stderr.close()
        child.kill()
        child.wait(5)


def test_netns_type_tapfd_serves_an_open_tap(tmp_path):
    """--netns-type=tapfd: the first argument is a TAP descriptor the caller already opened."""
    from fastnet import _io

    need("ping")
    ns = Netns("t")
    proc = None
    fd = -1
    try:
        fd, _ = _io.tap_open("tap0", ns.path)
        ns.ip("link", "set", "tap0", "up")
        ns.ip("addr", "add", "10.0.2.100/24", "dev", "tap0")
        ns.ip("route", "add", "default", "via", "10.0.2.2")
        r_fd, w_fd = os.pipe()
        proc = subprocess.Popen([fastnet_cmd(), "slirp4netns", "--netns-type=tapfd", "-r", str(w_fd), str(fd)],
                                pass_fds=(fd, w_fd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(w_fd)
        os.close(fd)
        fd = -1
        r, _, _ = select.select([r_fd], [], [], 20)
        assert r and os.read(r_fd, 1) == b"1"
        os.close(r_fd)
        out = ns.run("ping", "-c", "1", "-W", "3", "10.0.2.2", timeout=10)
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        if fd >= 0:
            os.close(fd)
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            proc.stderr.close()
        ns.delete()
