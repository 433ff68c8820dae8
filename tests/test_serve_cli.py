"""``fastnet serve`` as a user meets it on a bad day: every mistake is one line on stderr (exit
2 for the command line, 1 for what it names: files, sockets), and SIGTERM ends it with 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from tests.integration.rootless import GoVmnetClient
from tests.test_cli import fastnet_cmd, run


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="fnsv")   # short: sun_path holds 108 bytes
    yield d
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


def one_line(proc: subprocess.CompletedProcess, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fastnet") and "error" in lines[0], lines[0]
    return lines[0]


def serve(*args: str) -> subprocess.CompletedProcess:
    return run("serve", "--disable-proxy", *args)


class Daemon:
    def __init__(self, *args: str, ready_path: str):
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([fastnet_cmd(), "serve", "--disable-proxy", *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 15
        while not os.path.exists(ready_path):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.stderr()
            time.sleep(0.02)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"fastnet serve ignored SIGTERM: {self.stderr()}") from None


@pytest.mark.parametrize("argv", [["--no-such-flag"], ["--listen-vmnet", "/tmp/x", "--mtu", "lots"],
                                  ["--listen-vmnet"]])
def test_bad_flags(argv):
    one_line(serve(*argv), 2)


def test_nothing_to_serve():
    assert "nothing to serve" in one_line(serve(), 1)


def test_unreadable_config(sockdir):
    line = one_line(serve("--listen-vmnet", f"{sockdir}/v", "--config", f"{sockdir}/missing.toml"), 1)
    assert "cannot read config" in line and "missing.toml" in line
    line = one_line(serve("--listen-vmnet", f"{sockdir}/v", "--config", sockdir), 1)
    assert "cannot read config" in line and "Is a directory" in line
    assert not os.path.exists(f"{sockdir}/v")   # nothing was started


@pytest.mark.parametrize("text,expect", [
    ("[network\nmtu = 1500\n", "is not valid TOML"),
    ("[network]\nmtu_bytes = 1500\n", "unknown setting network.mtu_bytes"),
    ("[network]\nmtu = 100\n", "mtu 100 is outside 576..65520"),
    ("[network]\ngateway = \"10.0.0.1\"\n", "gateway 10.0.0.1 is outside the subnet"),
    ("[dns]\ntimeout = \"soon\"\n", "dns.timeout"),
])
def test_invalid_config(tmp_path, sockdir, text, expect):
    cfg = tmp_path / "fastnet.toml"
    cfg.write_text(text)
    assert expect in one_line(serve("--listen-vmnet", f"{sockdir}/v", "--config", str(cfg)), 1)


def test_socket_path_in_use(sockdir):
    path = os.path.join(sockdir, "vmnet.sock")
    first = Daemon("--listen-vmnet", path, ready_path=path)
    GoVmnetClient(path, time.monotonic() + 10).close()   # answered: the daemon is running
    try:
        line = one_line(serve("--listen-vmnet", path), 1)
        assert "socket path in use" in line and path in line
        # The same for another listener kind on that path, and for a path that is a file.
        assert "socket path in use" in one_line(serve("--listen-vfkit", path), 1)
        assert first.proc.poll() is None
    finally:
        assert first.stop() == 0, first.stderr()
    plain = os.path.join(sockdir, "file")
    open(plain, "w").close()
    assert "exists and is not a socket" in one_line(serve("--listen-qemu", f"unix:{plain}"), 1)


def test_sigterm_exits_0_and_removes_its_sockets(sockdir):
    vm, q = os.path.join(sockdir, "vm.sock"), os.path.join(sockdir, "q.sock")
    d = Daemon("--listen-vmnet", vm, "--listen-qemu", f"unix:{q}", ready_path=q)
    # A vmnet handshake is answered from the event loop: once it is, the daemon is running
    # (and handles SIGTERM). The VM stays attached: that must not keep it from exiting.
    c = GoVmnetClient(vm, time.monotonic() + 10)
    c.connect_vif("7d7f5c8e-2f0b-4f55-8d0c-3c1d6c3e9a01")
    try:
        assert d.stop() == 0, d.stderr()
    finally:
        c.close()
    assert not os.path.exists(vm) and not os.path.exists(q)
