"""The qemu, vfkit and stdio transports and the unix socket path rules, without a network:
what each listener hands to ``on_attach`` and that the descriptor carries the peer's bytes."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from fastnet import _io
from fastnet.aio import qemu, stdio, vfkit
from fastnet.aio.unixsock import SocketPathInUse, bind_unix, socket_alive


class Attached:
    def __init__(self):
        self.calls: list[tuple[int, dict]] = []
        self.cv = threading.Condition()

    def __call__(self, fd, **kw):
        with self.cv:
            self.calls.append((fd, kw))
            self.cv.notify_all()

    def wait(self, n, timeout=5):
        with self.cv:
            assert self.cv.wait_for(lambda: len(self.calls) >= n, timeout), self.calls
        return self.calls

    def close(self):
        for fd, _ in self.calls:
            os.close(fd)


@pytest.fixture
def attached():
    a = Attached()
    yield a
    a.close()


def read_some(fd: int, n: int, timeout: float = 5) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        try:
            out += os.read(fd, n - len(out))
        except BlockingIOError:
            time.sleep(0.005)
    return out


def read_datagram(fd: int, timeout: float = 5) -> bytes | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.005)
    return None


# -- socket paths --------------------------------------------------------------------------------

def test_live_stream_socket_is_in_use(sock_dir):
    path = os.path.join(sock_dir, "s")
    live = bind_unix(path)
    live.listen(1)
    try:
        assert socket_alive(path)
        with pytest.raises(SocketPathInUse, match="socket path in use"):
            bind_unix(path)
    finally:
        live.close()


def test_live_datagram_socket_is_in_use(sock_dir):
    path = os.path.join(sock_dir, "d")
    live = bind_unix(path, socket.SOCK_DGRAM)
    try:
        assert socket_alive(path)
        with pytest.raises(SocketPathInUse):
            bind_unix(path, socket.SOCK_DGRAM)
    finally:
        live.close()


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_stale_socket_is_replaced(sock_dir, kind):
    path = os.path.join(sock_dir, "stale")
    dead = socket.socket(socket.AF_UNIX, kind)
    dead.bind(path)
    dead.close()
    assert not socket_alive(path)
    s = bind_unix(path, kind)
    s.close()


def test_a_file_that_is_not_a_socket_is_left_alone(sock_dir):
    path = os.path.join(sock_dir, "notes.txt")
    with open(path, "w") as f:
        f.write("precious")
    with pytest.raises(FileExistsError):
        bind_unix(path)
    assert open(path).read() == "precious"


# -- qemu ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, want", [
    ("unix:///tmp/q.sock", ("unix", "/tmp/q.sock")),
    ("/tmp/q.sock", ("unix", "/tmp/q.sock")),
    ("q.sock", ("unix", "q.sock")),
    ("tcp://127.0.0.1:1234", ("tcp", ("127.0.0.1", 1234))),
    ("127.0.0.1:1234", ("tcp", ("127.0.0.1", 1234))),
    ("tcp://[::1]:99", ("tcp", ("::1", 99))),
    (("localhost", 5), ("tcp", ("localhost", 5))),
])
def test_qemu_addresses(spec, want):
    assert qemu.parse_address(spec) == want


def test_qemu_address_errors():
    with pytest.raises(ValueError):
        qemu.parse_address("tcp://host:port")


def test_qemu_unix_accepts_many(loop_thread, sock_dir, attached):
    path = os.path.join(sock_dir, "qemu.sock")
    lst = qemu.QemuListener(f"unix://{path}", on_attach=attached, loop=loop_thread.loop)
    loop_thread.call(lst.start)
    try:
        clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
        for c in clients:
            c.connect(path)
        calls = attached.wait(3)
        for i, (c, (fd, kw)) in enumerate(zip(clients, calls)):
            assert not os.get_blocking(fd)
            assert kw["info"]["transport"] == "qemu"
        # Each fd is its client's connection (accept order = connect order here).
        for i, c in enumerate(clients):
            c.sendall(struct.pack(">I", 14) + bytes([i]) * 14)
        for i, (fd, _) in enumerate(calls):
            assert read_some(fd, 18) == struct.pack(">I", 14) + bytes([i]) * 14
        for c in clients:
            c.close()
        assert qemu.LINK_ARGS == {"kind": "qemu", "link_kind": _io.LINK_STREAM, "framing": 4}
    finally:
        loop_thread.call(lst.close)
    assert not os.path.exists(path)


def test_qemu_tcp(loop_thread, attached):
    lst = qemu.QemuListener("tcp://127.0.0.1:0", on_attach=attached, loop=loop_thread.loop)
    loop_thread.call(lst.start)
    try:
        host, port = lst.bound_address
        assert host == "127.0.0.1" and port > 0
        with socket.create_connection((host, port), timeout=5):
            (fd, kw), = attached.wait(1)
            s = socket.socket(fileno=os.dup(fd))
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            s.close()
            assert kw["info"]["peer"].startswith("('127.0.0.1'")
    finally:
        loop_thread.call(lst.close)


# -- vfkit ---------------------------------------------------------------------------------------

def vm_socket(sock_dir, name="vm.sock") -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(os.path.join(sock_dir, name))
    s.settimeout(5)
    return s


@pytest.mark.parametrize("magic", [True, False], ids=["legacy-VFKT", "no-magic"])
def test_vfkit_learns_the_peer(loop_thread, sock_dir, attached, magic):
    path = os.path.join(sock_dir, "vfkit.sock")
    lst = vfkit.VfkitListener(path, on_attach=attached, loop=loop_thread.loop)
    loop_thread.call(lst.start)
    vm = vm_socket(sock_dir)
    try:
        frame1 = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)
        if magic:
            vm.sendto(b"VFKT", path)
        vm.sendto(frame1, path)
        (fd, kw), = attached.wait(1)
        assert kw["info"]["legacy_magic"] is magic
        assert kw["info"]["peer"] == vm.getsockname()
        assert lst.legacy_magic is magic and lst.attached
        # The magic is consumed; the first real frame is not (it was only peeked at).
        assert read_datagram(fd) == frame1
        # The socket is connected to the VM: a plain write reaches it.
        os.write(fd, b"\x02" * 14)
        assert vm.recv(100) == b"\x02" * 14
        assert vfkit.LINK_ARGS["link_kind"] == _io.LINK_DGRAM
    finally:
        vm.close()
        loop_thread.call(lst.close)
    assert not os.path.exists(path)


def test_vfkit_ignores_an_unbound_sender(loop_thread, sock_dir, attached):
    path = os.path.join(sock_dir, "vfkit.sock")
    lst = vfkit.VfkitListener(path, on_attach=attached, loop=loop_thread.loop)
    loop_thread.call(lst.start)
    anon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    vm = vm_socket(sock_dir)
    try:
        anon.sendto(b"VFKT", path)   # no address of its own: nothing could be sent back
        vm.sendto(b"VFKT", path)
        (fd, kw), = attached.wait(1)
        assert kw["info"]["peer"] == vm.getsockname()
        assert lst.stats["unbound_senders"] == 1
    finally:
        anon.close()
        vm.close()
        loop_thread.call(lst.close)


def test_vfkit_live_path_is_refused(loop_thread, sock_dir, attached):
    path = os.path.join(sock_dir, "vfkit.sock")
    first = vfkit.VfkitListener(path, on_attach=attached, loop=loop_thread.loop)
    loop_thread.call(first.start)
    try:
        with pytest.raises(SocketPathInUse):
            loop_thread.call(vfkit.VfkitListener(path, on_attach=attached, loop=loop_thread.loop).start)
    finally:
        loop_thread.call(first.close)


# -- stdio ---------------------------------------------------------------------------------------

def test_stdio_hands_over_nonblocking_fds(attached):
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    try:
        stdio.attach_stdio(attached, stdin=r_in, stdout=w_out)
        (fd, kw), = attached.calls
        attached.calls.clear()   # the test closes these itself
        assert fd == r_in and kw["write_fd"] == w_out
        assert not os.get_blocking(r_in) and not os.get_blocking(w_out)
        assert kw["info"]["transport"] == "stdio"
        assert stdio.LINK_ARGS == {"kind": "stdio", "link_kind": _io.LINK_STREAM, "framing": -2}
    finally:
        for fd in (r_in, w_in, r_out, w_out):
            os.close(fd)


PROTECT = r"""
import os, sys
from fastnet.aio import stdio
def on_attach(fd, write_fd, info):
    print("stray output")            # must not reach the frame stream
    sys.stdout.flush()
    os.write(write_fd, b"\x0e\x00" + b"F" * 14)
    data = b""
    while len(data) < 3:
        try:
            data += os.read(fd, 3)
        except BlockingIOError:
            pass
    os.write(2, b"got " + data + b"\n")
stdio.attach_stdio(on_attach)
"""


def test_stdio_protects_the_stream_from_stray_prints():
    p = subprocess.run([sys.executable, "-c", PROTECT], input=b"abc", capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"\x0e\x00" + b"F" * 14
    assert b"stray output" in p.stderr and b"got abc" in p.stderr


def test_every_transport_says_how_to_run_it():
    from fastnet.aio import listeners

    assert listeners.LINK_ARGS == {
        "vmnet": {"kind": "vmnet", "link_kind": _io.LINK_STREAM, "framing": -2},
        "qemu": {"kind": "qemu", "link_kind": _io.LINK_STREAM, "framing": 4},
        "vfkit": {"kind": "vfkit", "link_kind": _io.LINK_DGRAM, "framing": 0},
        "stdio": {"kind": "stdio", "link_kind": _io.LINK_STREAM, "framing": -2},
        "tap": {"kind": "tap", "link_kind": _io.LINK_TAP},
    }
