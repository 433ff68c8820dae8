"""rootlesskit for the tests, for every network driver that spawns a helper binary (vpnkit,
slirp4netns): the set-up it needs as root, whether the installed build has a driver at all,
wrapper scripts that record the command line a driver passes before exec'ing fastnet, and
running a command under rootlesskit with every wait bounded.

rootlesskit refuses to run as root without a subordinate id range for root (/etc/subuid and
/etc/subgid, and newuidmap/newgidmap from the ``uidmap`` package); ``ensure_subids()`` adds
``root:100000:65536`` when root has none (and leaves it: other tests may be using it).

Debian's rootlesskit (1.1.0) is built without the vpnkit driver: ``--net=vpnkit`` fails at once
with "not supported in this Debian package", before any binary is spawned (the upstream source
has the driver behind the ``no_vpnkit`` build tag). ``driver_unavailable()`` says so, and for
that case ``VpnkitDriver`` plays rootlesskit's vpnkit driver (pkg/network/vpnkit, v1 and v2)
step for step, so fastnet is still checked against exactly what rootlesskit would do:

1. spawn ``BINARY --ethernet STATE_DIR/vpnkit-ethernet.sock --mtu MTU`` (plus ``--host-ip
   0.0.0.0`` with --disable-host-loopback), killed with the parent (PR_SET_PDEATHSIG);
2. connect to the socket, retrying for up to 10 s, and run the vmnet handshake with a random
   UUID (command Ethernet), then learn the address the way moby/vpnkit's Go client
   (go/pkg/vmnet) does: a bare DHCP DISCOVER — IPv4 header checksum left at 0, UDP checksum 0,
   no padding — resent every second until an OFFER arrives, whose yiaddr is taken as the
   address (option 53 must be the first option). This connection then stays open, unread;
3. in the child's user and network namespace: a TAP (tap0) with the VIF's MAC, the address /24,
   the default route via 192.168.65.1 and the MTU — all fixed by rootlesskit, whatever vpnkit
   was told — and a second vmnet connection with the same UUID relaying the TAP's frames
   (tests/integration/relays.py plays that part);
4. run the command in the child's namespaces; on exit, SIGKILL the binary.
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib

REPO = pathlib.Path(__file__).resolve().parents[2]
SUBID_RANGE = "100000:65536"

# What rootlesskit's vpnkit driver configures in the child, whatever vpnkit was told.
VPNKIT_GATEWAY = "192.168.65.1"
VPNKIT_DNS = "192.168.65.1"
VPNKIT_PREFIX = 24
VPNKIT_SOCKET = "vpnkit-ethernet.sock"

# How builds without a driver say so.
DRIVER_MISSING = ("not supported in this Debian package", "disabled by build tag", "unknown network driver")


def ensure_subids(user: str = "root") -> None:
    """Give `user` a subordinate uid and gid range unless it has one (rootlesskit needs it)."""
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = []
        if any(line.split(":", 1)[0] == user for line in lines):
            continue
        with open(path, "a") as f:
            f.write(f"{user}:{SUBID_RANGE}\n")


def rootlesskit_missing() -> str | None:
    """Why rootlesskit cannot run here at all, or None."""
    if os.geteuid() != 0:
        return "needs root (subordinate ids, TAP devices)"
    if shutil.which("rootlesskit") is None:
        return "rootlesskit is not installed (Debian package rootlesskit)"
    for tool in ("newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package uidmap)"
    return None


_probed: dict[str, str | None] = {}


def driver_unavailable(net: str, timeout: float = 15) -> str | None:
    """None when the installed rootlesskit spawns ``--net=NET``'s binary; else why it cannot.

    The probe gives rootlesskit a binary that only leaves a mark and exits: a build with the
    driver spawns it (and then fails, which is fine), one without says so first."""
    if net in _probed:
        return _probed[net]
    reason = rootlesskit_missing()
    if reason is None:
        ensure_subids()
        with tempfile.TemporaryDirectory(prefix="fnrkprobe") as d:
            mark = os.path.join(d, "spawned")
            probe = write_script(os.path.join(d, "probe"), f"touch {mark}\nexit 1\n")
            proc = subprocess.Popen(["rootlesskit", f"--net={net}", f"--{net}-binary={probe}", "--state-dir",
                                     os.path.join(d, "state"), "true"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and not os.path.exists(mark) and time.monotonic() < deadline:
                time.sleep(0.05)
            spawned = os.path.exists(mark)
            kill_group(proc)
            err = proc.stderr.read()
            proc.stderr.close()
            if spawned:
                reason = None
            elif any(m in err for m in DRIVER_MISSING):
                line = next(ln for ln in err.splitlines() if any(m in ln for m in DRIVER_MISSING))
                reason = f"the installed rootlesskit has no {net} driver ({line.strip()})"
            else:
                reason = f"rootlesskit --net={net} did not start its binary: {err.strip()[-300:]}"
    _probed[net] = reason
    return reason


def kill_group(proc: subprocess.Popen, timeout: float = 5) -> None:
    """End a process started with start_new_session=True, and everything it started."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout)


def write_script(path: str, body: str) -> str:
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def fastnet_argv(subcommand: str) -> list[str]:
    """The installed fastnet command (the tests' interpreter's console script)."""
    exe = pathlib.Path(sys.executable).parent / "fastnet"
    if exe.exists():
        return [str(exe), subcommand]
    return [sys.executable, "-m", "fastnet", subcommand]


def write_wrapper(path: str, target: list[str], log: str, extra: list[str] = ()) -> str:
    """A binary for ``--vpnkit-binary``/``--slirp4netns-binary``: records each command line it
    gets (one JSON list per line in `log`), then execs ``target + extra + "$@"``."""
    quoted = " ".join(_sh(a) for a in [*target, *extra])
    py = _sh(sys.executable)
    body = (f"{py} -c 'import json,sys; print(json.dumps(sys.argv[1:]))' \"$@\" >> {_sh(log)}\n"
            f"exec {quoted} \"$@\"\n")
    return write_script(path, body)


def read_wrapper_log(log: str) -> list[list[str]]:
    try:
        with open(log) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _sh(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def run_rootlesskit(net: str, binary: str, cmd: list[str], *, state_dir: str, extra: list[str] = (),
                    timeout: float = 60) -> subprocess.CompletedProcess:
    """``rootlesskit --net=NET --NET-binary=BINARY [extra] CMD`` with a bounded wait; the whole
    process group is killed on a timeout."""
    ensure_subids()
    argv = ["rootlesskit", f"--net={net}", f"--{net}-binary={binary}", "--state-dir", state_dir, *extra, *cmd]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(f"rootlesskit did not finish within {timeout}s: {err[-2000:]}") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


# -- rootlesskit's vpnkit driver, played where the installed rootlesskit lacks it ------------------

def _pdeathsig():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG, as exec.Cmd's SysProcAttr.Pdeathsig


def _ip_checksum(header: bytes) -> int:
    s = sum(struct.unpack(f"!{len(header) // 2}H", header))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class GoVmnetClient:
    """moby/vpnkit's Go vmnet client (go/pkg/vmnet) as rootlesskit uses it: New() negotiates,
    ConnectVif(uuid) sends the Ethernet command and learns the address by DHCP."""

    def __init__(self, path: str, deadline: float):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(max(0.1, deadline - time.monotonic()))
        self.sock.connect(path)
        self.sock.sendall(b"VMN3T" + struct.pack("<I", 22) + b"0123456789012345678901234567890123456789")
        self._recv(49)

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"vpnkit closed the connection after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def connect_vif(self, uuid: str) -> dict:
        self.sock.sendall(bytes([1]) + uuid.encode() + struct.pack("<I", 0))
        resp = self._recv(258)
        if resp[0] != 1:
            raise ConnectionError(resp[2:2 + resp[1]].decode("utf-8", "replace"))
        mtu, mps = struct.unpack_from("<HH", resp, 1)
        return {"mtu": mtu, "max_packet_size": mps, "mac": resp[5:11]}

    def dhcp(self, mac: bytes, timeout: float = 10) -> str:
        """The Go client's DHCP: a DISCOVER as it builds it, once a second, until an OFFER."""
        bootp = bytes([1, 1, 6, 0, 1, 0, 0, 0, 0, 0, 0x80, 0]) + bytes(16) + mac + bytes(202)
        dhcp = bootp + bytes([0x63, 0x82, 0x53, 0x63, 0x35, 0x01, 0x01, 0xFF])
        udp = struct.pack("!HHHH", 68, 67, 8 + len(dhcp), 0) + dhcp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0x7F61, 0, 0x40, 17, 0,
                         bytes(4), b"\xff" * 4) + udp   # header checksum 0: "as if offloaded"
        frame = b"\xff" * 6 + mac + b"\x08\x00" + ip
        deadline = time.monotonic() + timeout
        next_send = 0.0
        buf = b""
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_send:
                self.sock.sendall(struct.pack("<H", len(frame)) + frame)
                next_send = now + 1.0
            r, _, _ = select.select([self.sock], [], [], min(next_send, deadline) - time.monotonic())
            if not r:
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("vpnkit closed the connection during DHCP")
            buf += chunk
            while len(buf) >= 2:
                (n,) = struct.unpack_from("<H", buf)
                if len(buf) < 2 + n:
                    break
                f, buf = buf[2:2 + n], buf[2 + n:]
                if len(f) < 14 + 20 or f[12:14] != b"\x08\x00":
                    continue
                ihl = (f[14] & 0xF) * 4
                u = f[14 + ihl:]
                if len(u) < 8 or struct.unpack_from("!HH", u) != (67, 68):
                    continue
                d = u[8:]
                if len(d) < 243 or d[240:243] != b"\x35\x01\x02":   # option 53 first, OFFER
                    continue
                return socket.inet_ntoa(d[16:20])
        raise TimeoutError(f"no DHCP OFFER within {timeout}s (the Go client would wait forever)")

    def close(self) -> None:
        self.sock.close()


class VpnkitDriver:
    """rootlesskit --net=vpnkit's parent and child network set-up, in Python (see the module
    docstring). ``run(cmd)`` runs a command in the child's user and network namespaces."""

    def __init__(self, binary: str, state_dir: str, *, mtu: int = 1500, disable_host_loopback: bool = False,
                 ifname: str = "tap0", log_dir: str | None = None):
        self.binary = binary
        self.state_dir = state_dir
        self.mtu = mtu
        self.disable_host_loopback = disable_host_loopback
        self.ifname = ifname
        self.log_dir = log_dir or state_dir
        self.socket = os.path.join(state_dir, VPNKIT_SOCKET)
        self.uuid = str(uuidlib.uuid4())
        self.vpnkit: subprocess.Popen | None = None
        self.parent: GoVmnetClient | None = None
        self.child: subprocess.Popen | None = None
        self.relay: subprocess.Popen | None = None
        self.netns_name: str | None = None
        self.ip: str | None = None
        self.mac: str | None = None
        self._logs: list = []

    def argv(self) -> list[str]:
        """The command line rootlesskit's vpnkit driver gives the binary."""
        args = [self.binary, "--ethernet", self.socket, "--mtu", str(self.mtu)]
        if self.disable_host_loopback:
            args += ["--host-ip", "0.0.0.0"]
        return args

    def _log(self, name: str):
        f = open(os.path.join(self.log_dir, name), "w+")
        self._logs.append(f)
        return f

    def start(self) -> "VpnkitDriver":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        os.makedirs(self.state_dir, exist_ok=True)
        self.vpnkit = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=self._log("vpnkit.log"), preexec_fn=_pdeathsig)
        # waitForVPNKit: retry for 10 s.
        deadline = time.monotonic() + 10
        while True:
            try:
                self.parent = GoVmnetClient(self.socket, deadline)
                break
            except (OSError, EOFError) as e:
                if time.monotonic() > deadline or self.vpnkit.poll() is not None:
                    raise RuntimeError(f"connecting to {self.socket}: {e} (binary exit {self.vpnkit.poll()}): "
                                       f"{self.vpnkit_log()}") from None
                time.sleep(0.01)
        vif = self.parent.connect_vif(self.uuid)
        self.mac = ":".join(f"{b:02x}" for b in vif["mac"])
        self.ip = self.parent.dhcp(vif["mac"])
        # The child: rootlesskit re-executes itself in new user, mount and network namespaces.
        self.child = subprocess.Popen(["unshare", "--user", "--map-root-user", "--net", "--mount", "--",
                                       "sleep", "3600"], stdin=subprocess.DEVNULL, start_new_session=True)
        mine = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self.child.pid}/ns/net") == mine:
            if time.monotonic() > deadline or self.child.poll() is not None:
                raise RuntimeError("the child namespace did not come up")
            time.sleep(0.01)
        from tests.integration.netns import PREFIX

        self.netns_name = f"{PREFIX}rk{uuidlib.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "attach", self.netns_name, str(self.child.pid)], check=True,
                       capture_output=True, timeout=10)
        subprocess.run(["ip", "-n", self.netns_name, "link", "set", "lo", "up"], check=True, capture_output=True,
                       timeout=10)
        self.relay = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.relays", "vmnet", "--netns", f"/var/run/netns/{self.netns_name}",
             "--path", self.socket, "--uuid", self.uuid, "--addr", f"{self.ip}/{VPNKIT_PREFIX}",
             "--gateway", VPNKIT_GATEWAY, "--mtu", str(self.mtu)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self._log("relay.log"), text=True)
        r, _, _ = select.select([self.relay.stdout], [], [], 15)
        line = self.relay.stdout.readline() if r else ""
        got = json.loads(line) if line else {"ready": False, "error": "no answer within 15 s"}
        if not got.get("ready"):
            raise RuntimeError(f"the child's vmnet connection failed: {got}")
        if got["mac"] != self.mac:
            raise RuntimeError(f"the same UUID got another MAC: {got['mac']} != {self.mac}")

    def vpnkit_log(self) -> str:
        if not self._logs:
            return ""
        f = self._logs[0]
        f.flush()
        f.seek(0)
        return f.read()[-3000:]

    def cmd(self, *args: str) -> list[str]:
        """argv that runs args in the child's user and network namespaces (as its root)."""
        return ["nsenter", "--target", str(self.child.pid), "--user", "--net", "--preserve-credentials", "--", *args]

    def run(self, *args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.cmd(*args), timeout=timeout, **kw)

    def close(self) -> None:
        if self.relay is not None:
            if self.relay.poll() is None:
                self.relay.terminate()
                try:
                    self.relay.wait(5)
                except subprocess.TimeoutExpired:
                    self.relay.kill()
                    self.relay.wait(5)
            self.relay.stdout.close()
        if self.parent is not None:
            self.parent.close()
        if self.vpnkit is not None and self.vpnkit.poll() is None:
            self.vpnkit.kill()   # rootlesskit cancels the binary's context: SIGKILL
            self.vpnkit.wait(5)
        if self.netns_name:
            subprocess.run(["ip", "netns", "del", self.netns_name], capture_output=True, timeout=10)
        if self.child is not None:
            kill_group(self.child)
        for f in self._logs:
            f.close()
