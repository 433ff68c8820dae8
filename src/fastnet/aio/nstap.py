"""Open a TAP device inside another process's namespaces, the way slirp4netns does it
(reference/slirp-passt.md §1.4).

A forked child joins the target's user namespace (when one is given; failing that is not fatal,
since a privileged caller can join the network namespace directly) and then its network
namespace, creates or opens the TAP there (so CAP_NET_ADMIN is needed only inside that user
namespace), optionally configures it, and passes the descriptor back over a socketpair. Only
the descriptor crosses: we stay in our own namespaces, so every host socket is a host socket.
The child is a fork because setns() into a user namespace needs a single-threaded process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket

from fastnet import _io

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(path: str, nstype: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, nstype) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns {path}: {os.strerror(e)}")
    finally:
        os.close(fd)


def _child(sock: socket.socket, netns: str, tapname: str, userns: str | None, configure: dict | None) -> None:
    """In the forked child: never returns."""
    try:
        if userns:
            try:
                _setns(userns, CLONE_NEWUSER)
            except OSError:
                pass  # already there, or privileged enough to enter the network namespace as we are
        _setns(netns, CLONE_NEWNET)
        fd, name = _io.tap_open(tapname, None)
        if configure is not None:
            _io.if_configure(name, **configure)
        socket.send_fds(sock, [b"T" + name.encode()], [fd])
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - the child must never return into the parent's code
        try:
            sock.sendall(b"E" + (str(e) or type(e).__name__).encode()[:1000])
        except OSError:
            pass
        os._exit(1)


def open_tap_in(netns: str, tapname: str = "tap0", *, userns: str | None = None,
                configure: dict | None = None) -> tuple[int, str]:
    """(fd, ifname) of TAP tapname in the network namespace at path netns, entered through
    user namespace userns when given. configure: keyword arguments of ``_io.if_configure``
    (mtu, ip, prefix, gateway, mac), applied inside. The fd is non-blocking."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        parent.close()
        _child(child, netns, tapname, userns, configure)
    child.close()
    try:
        parent.settimeout(30)
        msg, fds, _, _ = socket.recv_fds(parent, 1024, 1)
    finally:
        parent.close()
        os.waitpid(pid, 0)
    if not fds or msg[:1] != b"T":
        for fd in fds:
            os.close(fd)
        reason = msg[1:].decode(errors="replace") if msg[:1] == b"E" else "the namespace child failed"
        raise OSError(f"cannot open TAP {tapname} in {netns}: {reason}")
    return fds[0], msg[1:].decode()
