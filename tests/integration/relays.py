"""The hypervisor's side of each VM link, played by a relay between a guest namespace's TAP
device and fastnet: what HyperKit (vmnet), QEMU (-netdev stream), vfkit (unixgram) and
gvforwarder (stdio) do with a VM's NIC, with the guest's kernel as the VM.

Each relay is a separate process (so it does not share the test's GIL with the network it
talks to) and writes one JSON line on stdout once the link is up — {"ready": true, ...} with
what the handshake gave (vmnet: MAC, MTU) — or {"ready": false, "error": ...}, then relays
until the link or the TAP goes away.

    python -m tests.integration.relays vmnet --netns PATH --path SOCK [--uuid U] [--preferred IP]
    python -m tests.integration.relays qemu  --netns PATH --connect unix:///SOCK|tcp://H:P
    python -m tests.integration.relays vfkit --netns PATH --path SOCK --bind OWN [--magic]
    python -m tests.integration.relays stdio --netns PATH -- COMMAND...

The vmnet client is written from reference/vpnkit.md §2 on its own (struct formats, not
fastnet's encoder), so the tests check fastnet against an independent reading of the protocol.

Relaying is batched: every frame the TAP has is read before one write to the link, and one
large read of the link yields many frames.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys

VMNET_VERSION = 22
TAP_BATCH = 256
READ_CHUNK = 1 << 20

# Frame counts, written to stderr (the relay's log) when the relay exits.
STATS = {"to_link": 0, "from_link": 0, "tap_dropped": 0}


# -- the vmnet client handshake ------------------------------------------------------------------

def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"server closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def vmnet_client_handshake(sock: socket.socket, *, uuid: str | None = None, preferred: str | None = None,
                           version: int = VMNET_VERSION, command: int | None = None,
                           raw_uuid: bytes | None = None) -> dict:
    """HyperKit's side: Init, read the server's Init, Command, read the 258-byte response.
    Returns {"init": {...}, "type": "vif", "mtu", "max_packet_size", "mac"} or
    {"init": ..., "type": "disconnect", "reason"}, or {"init": ..., "type": "closed"} when the
    server hung up after its Init (a version it does not speak)."""
    commit = b"hyperkit-test-client-commit-0123456789ab"
    assert len(commit) == 40
    sock.sendall(struct.pack("<5sI40s", b"VMN3T", version, commit))
    magic, sversion, scommit = struct.unpack("<5sI40s", recv_exactly(sock, 49))
    out = {"init": {"magic": magic.decode(), "version": sversion, "commit": scommit.decode("ascii", "replace")}}
    if command is None:
        command = 8 if preferred is not None else 1
    if raw_uuid is None:
        raw_uuid = uuid.encode() if uuid is not None else bytes(36)
    ip = 0
    if preferred is not None:
        # The address as a u32 LE of its host-order value: the octets travel reversed.
        ip = struct.unpack("!I", socket.inet_aton(preferred))[0]
    try:
        sock.sendall(struct.pack("<B36sI", command, raw_uuid, ip))
        resp = recv_exactly(sock, 258)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        out["type"] = "closed"
        return out
    if resp[0] == 1:
        mtu, mps = struct.unpack_from("<HH", resp, 1)
        out.update(type="vif", mtu=mtu, max_packet_size=mps, mac=":".join(f"{b:02x}" for b in resp[5:11]),
                   padding_zero=not any(resp[11:]))
    elif resp[0] == 2:
        n = resp[1]
        out.update(type="disconnect", reason=resp[2:2 + n].decode(), padding_zero=not any(resp[2 + n:]))
    else:
        out.update(type=f"unknown {resp[0]}")
    return out


# -- the guest's TAP ---------------------------------------------------------------------------

def open_tap(netns: str, name: str = "tap0") -> int:
    from fastnet import _io

    fd, _ = _io.tap_open(name, netns)
    return fd


def ip_netns(netns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", os.path.basename(netns), *args], check=True, capture_output=True, timeout=10)


def configure_guest(netns: str, *, mac: str | None, mtu: int, addr: str | None, gateway: str | None) -> None:
    if mac:
        ip_netns(netns, "link", "set", "tap0", "address", mac)
    ip_netns(netns, "link", "set", "tap0", "mtu", str(mtu), "up")
    if addr:
        ip_netns(netns, "addr", "add", addr, "dev", "tap0")
    if gateway:
        ip_netns(netns, "route", "add", "default", "via", gateway)


# -- relaying ----------------------------------------------------------------------------------

def tap_frames(tap: int) -> list[bytes]:
    """Every frame the TAP has right now (at most TAP_BATCH)."""
    out = []
    for _ in range(TAP_BATCH):
        try:
            out.append(os.read(tap, 65536))
        except BlockingIOError:
            break
    return out


def tap_write(tap: int, frame: bytes) -> None:
    try:
        os.write(tap, frame)
    except OSError as e:  # a full device queue or a frame the kernel rejects: dropped, as a NIC would
        if e.errno not in (errno.EAGAIN, errno.EINVAL, errno.EIO):
            raise
        STATS["tap_dropped"] += 1


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def relay_stream(tap: int, rfd: int, wfd: int, prefix: int, big_endian: bool) -> None:
    """TAP ⇄ a length-prefixed stream (rfd/wfd blocking; reads only when select says so)."""
    hdr = struct.Struct((">" if big_endian else "<") + ("I" if prefix == 4 else "H"))
    sel = selectors.DefaultSelector()
    sel.register(tap, selectors.EVENT_READ, "tap")
    sel.register(rfd, selectors.EVENT_READ, "link")
    buf = bytearray()
    while True:
        for key, _ in sel.select():
            if key.data == "tap":
                frames = tap_frames(tap)
                if frames:
                    write_all(wfd, b"".join(hdr.pack(len(f)) + f for f in frames))
                    STATS["to_link"] += len(frames)
            else:
                data = os.read(rfd, READ_CHUNK)
                if not data:
                    return
                buf += data
                pos = 0
                while len(buf) - pos >= prefix:
                    (n,) = hdr.unpack_from(buf, pos)
                    if len(buf) - pos - prefix < n:
                        break
                    tap_write(tap, bytes(buf[pos + prefix:pos + prefix + n]))
                    STATS["from_link"] += 1
                    pos += prefix + n
                del buf[:pos]


def relay_dgram(tap: int, sock: socket.socket) -> None:
    """TAP ⇄ one frame per datagram on a connected socket."""
    sel = selectors.DefaultSelector()
    sel.register(tap, selectors.EVENT_READ, "tap")
    sel.register(sock, selectors.EVENT_READ, "link")
    while True:
        for key, _ in sel.select():
            if key.data == "tap":
                for f in tap_frames(tap):
                    sock.send(f)   # blocking: waits while fastnet's receive queue is full
                    STATS["to_link"] += 1
            else:
                for _ in range(TAP_BATCH):
                    try:
                        f = sock.recv(65536, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        break
                    tap_write(tap, f)
                    STATS["from_link"] += 1


def say(**msg) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


# -- the relays --------------------------------------------------------------------------------

def run_vmnet(a) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(a.path)
    res = vmnet_client_handshake(sock, uuid=a.uuid, preferred=a.preferred)
    if res["type"] != "vif":
        say(ready=False, error=res.get("reason", res["type"]), handshake=res)
        return 1
    sock.settimeout(None)
    tap = open_tap(a.netns)
    configure_guest(a.netns, mac=res["mac"], mtu=res["mtu"], addr=a.addr, gateway=a.gateway)
    # vmnet says nothing of the IP: it is the preferred one, or the guest learns it by DHCP
    # (or the test looks the MAC up in the network's pool).
    say(ready=True, **{k: res[k] for k in ("mac", "mtu", "max_packet_size")}, ip=a.preferred, server=res["init"])
    relay_stream(tap, sock.fileno(), sock.fileno(), 2, big_endian=False)
    return 0


def run_qemu(a) -> int:
    target = a.connect
    if target.startswith("tcp://"):
        host, _, port = target[len("tcp://"):].rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(target[len("unix://"):] if target.startswith("unix://") else target)
    sock.settimeout(None)
    tap = open_tap(a.netns)
    configure_guest(a.netns, mac=a.mac, mtu=a.mtu, addr=a.addr, gateway=a.gateway)
    say(ready=True)
    relay_stream(tap, sock.fileno(), sock.fileno(), 4, big_endian=True)
    return 0


def run_vfkit(a) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(a.bind)   # vfkit binds its own socket: the server answers to this address
    for opt, size in ((socket.SO_SNDBUF, 1 << 20), (socket.SO_RCVBUF, 4 << 20)):
        sock.setsockopt(socket.SOL_SOCKET, opt, size)
    sock.connect(a.path)
    if a.magic:
        sock.send(b"VFKT")
    tap = open_tap(a.netns)
    configure_guest(a.netns, mac=a.mac, mtu=a.mtu, addr=a.addr, gateway=a.gateway)
    say(ready=True)
    try:
        relay_dgram(tap, sock)
    finally:
        os.unlink(a.bind)
    return 0


def run_stdio(a) -> int:
    """gvforwarder's role: start the network with its stdin/stdout as the link."""
    child = subprocess.Popen(a.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    tap = open_tap(a.netns)
    configure_guest(a.netns, mac=a.mac, mtu=a.mtu, addr=a.addr, gateway=a.gateway)
    say(ready=True, pid=child.pid)
    try:
        relay_stream(tap, child.stdout.fileno(), child.stdin.fileno(), 2, big_endian=False)
    finally:
        child.stdin.close()   # EOF on its stdin: the network's link closes and it exits
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
    return 0


def main(argv=None) -> int:
    # The tests stop relays with SIGTERM: exit through the finally blocks (the stdio relay's
    # child, the vfkit relay's socket file).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    p = argparse.ArgumentParser(prog="relays")
    sub = p.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--netns", required=True, help="path of the guest namespace (/var/run/netns/NAME)")
    common.add_argument("--addr", help="guest address, e.g. 192.168.65.3/24")
    common.add_argument("--gateway", help="default route via")
    common.add_argument("--mtu", type=int, default=1500)
    common.add_argument("--mac", default=None)
    v = sub.add_parser("vmnet", parents=[common])
    v.add_argument("--path", required=True)
    v.add_argument("--uuid", help="default: 36 NUL bytes (the server picks one)")
    v.add_argument("--preferred")
    q = sub.add_parser("qemu", parents=[common])
    q.add_argument("--connect", required=True)
    f = sub.add_parser("vfkit", parents=[common])
    f.add_argument("--path", required=True)
    f.add_argument("--bind", required=True)
    f.add_argument("--magic", action="store_true", help="send the legacy VFKT datagram first")
    s = sub.add_parser("stdio", parents=[common])
    s.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    if a.mode == "stdio":
        if a.command[:1] == ["--"]:
            a.command = a.command[1:]
        if not a.command:
            p.error("stdio needs the command to run after --")
    try:
        return {"vmnet": run_vmnet, "qemu": run_qemu, "vfkit": run_vfkit, "stdio": run_stdio}[a.mode](a)
    except (OSError, EOFError) as e:
        say(ready=False, error=f"{type(e).__name__}: {e}")
        return 1
    finally:
        print(f"relay {a.mode}: {json.dumps(STATS)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
