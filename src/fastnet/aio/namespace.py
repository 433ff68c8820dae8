"""Run a command in a new network namespace whose only link is a TAP device we serve.

The child process unshares a network and a mount namespace (and a user namespace when we are
not root, which is what makes ``fastnet run`` rootless where /dev/net/tun allows it), creates
and configures ``tap0`` itself with ioctls (no iproute2 inside), bind-mounts its own
/etc/resolv.conf and /etc/hosts, passes the TAP descriptor back over a socketpair and, on the
parent's word, execs the command. No setns is needed, so nothing here depends on the parent's
privileges over the new namespaces.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import sys

from fastnet import _io

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _child(sock: socket.socket, cmd: list[str], *, tap: str, mtu: int, ip: str, prefix: int, gateway: str,
           mac: bytes, offload: bool, resolv_conf: str | None, hosts: str | None) -> None:
    """In the forked child. Never returns."""
    try:
        uid, gid = os.geteuid(), os.getegid()
        flags = CLONE_NEWNET | CLONE_NEWNS
        if uid != 0:
            flags |= CLONE_NEWUSER
        _check(_libc.unshare(flags), "unshare")
        if uid != 0:
            # Map ourselves to root in the new user namespace (user_namespaces(7)).
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"0 {uid} 1")
            _write("/proc/self/gid_map", f"0 {gid} 1")
        # Our bind mounts must not leak into the parent's mount namespace.
        _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
        for src, dst in ((resolv_conf, "/etc/resolv.conf"), (hosts, "/etc/hosts")):
            if src and os.path.exists(dst):
                _check(_libc.mount(src.encode(), dst.encode(), None, MS_BIND, None), f"bind mount {dst}")
        fd, name = _io.tap_open(tap, None, vnet_hdr=offload, offload=offload)
        _io.if_configure(name, mtu=mtu, ip=ip, prefix=prefix, gateway=gateway, mac=mac)
        socket.send_fds(sock, [b"T"], [fd])
        os.close(fd)
        if sock.recv(1) != b"G":
            os._exit(1)
        # The socket stays open: it is close-on-exec, so a successful exec closes it and a
        # failed one reports its error through it (Sandbox.exec_error).
        os.execvp(cmd[0], cmd)
    except OSError as e:
        msg = f"fastnet run: {e.strerror or e}" if not isinstance(e, FileNotFoundError) else \
            f"fastnet run: command not found: {cmd[0]}"
        try:
            sock.sendall(b"E" + msg.encode()[:1000])
        except OSError:
            print(msg, file=sys.stderr)
        os._exit(127 if isinstance(e, FileNotFoundError) else 1)
    except BaseException as e:  # noqa: BLE001 - the child must never return into the parent's code
        try:
            sock.sendall(b"E" + f"fastnet run: {e}".encode()[:1000])
        except OSError:
            pass
        os._exit(1)


class Sandbox:
    """A child process in fresh namespaces; ``tap_fd`` is its link, ``start()`` lets it exec."""

    def __init__(self, cmd: list[str], *, tap: str = "tap0", mtu: int, ip: str, prefix: int, gateway: str,
                 mac: bytes, offload: bool = False, resolv_conf: str | None = None, hosts: str | None = None):
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = os.fork()
        if self.pid == 0:
            parent.close()
            _child(child, cmd, tap=tap, mtu=mtu, ip=ip, prefix=prefix, gateway=gateway, mac=mac,
                   offload=offload, resolv_conf=resolv_conf, hosts=hosts)
        child.close()
        self._sock = parent
        msg, fds, _, _ = socket.recv_fds(parent, 1024, 1)
        if not fds:
            self.wait()
            raise OSError(msg[1:].decode(errors="replace") if msg[:1] == b"E" else "the namespace child failed")
        self.tap_fd = fds[0]
        # A failed exec reports its error on the socket after "G"; keep it to read later.

    def start(self) -> None:
        self._sock.sendall(b"G")

    def exec_error(self) -> str | None:
        """The child's error message if the exec failed (call after it exited)."""
        self._sock.setblocking(False)
        try:
            data = self._sock.recv(1024)
        except OSError:
            return None
        return data[1:].decode(errors="replace") if data[:1] == b"E" else None

    def wait(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)
