"""Unix socket paths for the listeners: refuse a path another server is serving, replace a
stale socket file left by a process that died, and remove only our own file on close."""

from __future__ import annotations

import errno
import os
import socket
import stat


class SocketPathInUse(OSError):
    """The path is a socket that a live process is serving."""


def socket_alive(path: str) -> bool:
    """Whether something is bound and serving at the unix socket ``path``.

    A stream connect tells all three cases apart without knowing the socket's type: it
    succeeds (or finds the backlog full) for a listening stream socket, fails with
    EPROTOTYPE for a bound socket of another type (a datagram server such as vfkit's), and
    with ECONNREFUSED when nobody holds the path any more.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as e:
        return e.errno in (errno.EPROTOTYPE, errno.EAGAIN, errno.ETIMEDOUT) or isinstance(e, socket.timeout)
    finally:
        probe.close()
    return True


def bind_unix(path: str, kind: int = socket.SOCK_STREAM, *, listen: int | None = None) -> socket.socket:
    """A non-blocking unix socket of type ``kind`` bound at ``path`` (and listening with that
    backlog when ``listen`` is given; the socket is closed if any step fails).

    Raises SocketPathInUse when a live server holds the path, FileExistsError when the path is
    something other than a socket (never deleted: it may be a user's file)."""
    path = os.fspath(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(errno.EEXIST, f"{path} exists and is not a socket")
        if socket_alive(path):
            raise SocketPathInUse(errno.EADDRINUSE, f"socket path in use: {path} (another process is serving it)")
        os.unlink(path)  # stale: its server is gone
    sock = socket.socket(socket.AF_UNIX, kind)
    try:
        sock.bind(path)
        sock.setblocking(False)
        if listen is not None:
            sock.listen(listen)
    except BaseException:
        sock.close()
        raise
    return sock


def bound_inode(path: str) -> int | None:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


def unlink_if_ours(path: str, inode: int | None) -> None:
    """Remove the socket file at path if it is still the one we bound (a successor may have
    replaced it already)."""
    if inode is not None and bound_inode(path) == inode:
        try:
            os.unlink(path)
        except OSError:
            pass


def pause_accepting(listener, delay: float = 0.2) -> None:
    """Stop accepting on listener._sock for `delay` seconds (after EMFILE and the like, so the
    loop does not spin on a socket it cannot accept from), then resume with its _on_accept."""
    sock = listener._sock
    loop = listener.loop
    loop.remove_reader(sock.fileno())

    def resume():
        if listener._sock is sock:
            loop.add_reader(sock.fileno(), listener._on_accept)

    loop.call_later(delay, resume)
