"""End-to-end benchmark: fastnet beside slirp4netns and pasta, each serving a guest network
namespace through a TAP device, measured with iperf3 (single stream) and a small echo client.

    sudo .venv/bin/python -m bench.e2e.compare [--quick] [--stacks fastnet,pasta] [--mtus 1500]
                                               [--only g2h,h2g] [--duration 5] [--runs 3] [--out DIR]

Topology, created fresh for every stack configuration and deleted afterwards:

    guest netns  "fnbe<pid>-g"                    host netns  "fnbe<pid>-h"
    +-----------------------------+   TAP tap0    +------------------------------------+
    | iperf3 -c / -s, rr.py       |<=============>| the stack (fastnet, slirp4netns,   |
    | its only link is tap0       |               |  pasta), iperf3 -s and rr.py serve |
    +-----------------------------+               |  on 127.0.0.1; lo + a blackhole    |
                                                  |  ifb holding 192.0.2.1/24 and the  |
                                                  |  default route (pasta needs one)   |
                                                  +------------------------------------+

The host namespace has no link to anything, so no packet leaves the machine. Each stack maps
an address in the guest's subnet to the host namespace's 127.0.0.1 (fastnet: host alias
192.168.65.2; slirp4netns and pasta: 10.0.2.2), and publishes host 127.0.0.1:5301 -> guest
:5201 (iperf3) and :5302 -> guest :7777 (echo).

Tests (``--only`` takes these keys):
  ping      guest pings the stack's gateway (pasta: 192.0.2.1, see notes), RTT median and min
  conn      guest -> host: sequential connections per second (connect, 1 byte echo, close)
  rr        guest -> host: 1-byte request/response round trips per second on one connection
  g2h       iperf3 guest -> host, single stream
  h2g       iperf3 -R: host -> guest on a connection the guest opened
  fwd       iperf3 host -> guest through the published port (pasta: from 192.0.2.1, its TAP
            path; fwd_splice: from 127.0.0.1, which pasta splices without the TAP)
  fwd_conn  host -> guest connections per second through the published port
Every iperf3 run and client is bounded in time; every process started is stopped by PID (and
gets SIGKILL through PR_SET_PDEATHSIG if this script dies); namespaces are deleted on exit.
Stack CPU is utime+stime from /proc/PID/stat (all threads, live descendants) over each run.

Outputs in --out (default bench/e2e/out/): results.json (every run), results.md (the table,
the targets, every run, exact commands), results.png (the plot). The table goes to stdout.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")

IPERF_PORT = 5201
ECHO_PORT = 7777
FWD_PORT = 5301        # host 127.0.0.1:5301 -> guest :5201
FWD_ECHO_PORT = 5302   # host 127.0.0.1:5302 -> guest :7777
NULL_IF, NULL_ADDR, NULL_GW = "fnbe-null0", "192.0.2.1", "192.0.2.254"
TAP = "tap0"
NS_PREFIX = "fnbe"

ALL_TESTS = ["ping", "conn", "rr", "g2h", "h2g", "fwd", "fwd_conn"]
FAMILIES = ["fastnet", "fastnet-plain", "slirp4netns", "pasta", "veth"]
DEFAULT_FAMILIES = ["fastnet", "fastnet-plain", "slirp4netns", "pasta"]
LABEL = {"fastnet": "fastnet", "fastnet-plain": "fastnet --no-tap-offload", "slirp4netns": "slirp4netns",
         "pasta": "pasta", "veth": "veth (kernel)"}


class Skip(Exception):
    pass


# ------------------------------------------------------------------------------------------------
# processes

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    # Die with us (SIGKILL when this process exits, however it exits); PR_SET_PDEATHSIG
    # survives the exec of `ip netns exec` and of the command it runs.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.setsid()


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def descendants(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


class Runner:
    """Runs commands (logged for the report), spawns and stops background processes by PID."""

    def __init__(self, workdir: str, verbose: bool = False):
        self.workdir = workdir
        self.verbose = verbose
        self.procs: list[tuple[subprocess.Popen, str]] = []
        self.cmdlog: list[str] = []
        self.prefix = ""   # log file names: one set per configuration and pass

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def note(self, cmd) -> None:
        s = cmd if isinstance(cmd, str) else shlex.join(cmd)
        if s not in self.cmdlog:
            self.cmdlog.append(s)
        if self.verbose:
            self.log("$ " + s)

    def run(self, argv, timeout: float = 30, check: bool = True, quiet: bool = False):
        if not quiet:
            self.note(argv)
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=timeout, preexec_fn=_child_setup)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"timed out after {timeout:g} s: {shlex.join(argv)}") from e
        if check and r.returncode != 0:
            raise RuntimeError(f"exit {r.returncode}: {shlex.join(argv)}: {r.stderr.strip()[-400:]}")
        return r

    def spawn(self, argv, label: str) -> subprocess.Popen:
        self.note(argv)
        with open(os.path.join(self.workdir, f"{self.prefix}{label}.log"), "ab") as logf:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                 preexec_fn=_child_setup)
        self.procs.append((p, label))
        return p

    def tail(self, label: str, n: int = 600) -> str:
        """The end of a process's log, on one line (for error messages and the report)."""
        try:
            with open(os.path.join(self.workdir, f"{self.prefix}{label}.log"), "rb") as f:
                lines = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " ⏎ ".join(x.strip() for x in lines if x.strip() and set(x.strip()) != {"^"})[-n:]

    def stop(self, p: subprocess.Popen, grace: float = 3.0) -> None:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)   # this PID only
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            except ProcessLookupError:
                pass
        self.procs = [(q, lab) for q, lab in self.procs if q is not p]

    def stop_all(self) -> None:
        for p, _ in reversed(list(self.procs)):
            try:
                self.stop(p)
            except Exception as e:  # noqa: BLE001
                self.log(f"warning: stopping pid {p.pid}: {e}")

    def wait_for(self, pred, timeout: float, what: str, proc=None, label=None) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{label} exited ({proc.returncode}) while waiting for {what}: {self.tail(label)}")
            time.sleep(0.05)
        raise RuntimeError(f"timed out ({timeout:g} s) waiting for {what}")


# ------------------------------------------------------------------------------------------------
# namespaces

class Netns:
    def __init__(self, r: Runner):
        self.r = r
        self.host = f"{NS_PREFIX}{os.getpid()}-h"
        self.guest = f"{NS_PREFIX}{os.getpid()}-g"

    @property
    def guest_path(self) -> str:
        return f"/run/netns/{self.guest}"

    def exec_(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def create(self) -> None:
        self.destroy()
        for ns in (self.host, self.guest):
            self.r.run(["ip", "netns", "add", ns])
            self.r.run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # ping sockets for the stacks (ICMP echo forwarding) in the host ns
        self.r.run(self.exec_(self.host) + ["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])
        # A blackhole device holding 192.0.2.1 and the default route: pasta wants a template
        # interface with a default route; nothing routed into it goes anywhere (no dummy here).
        for kind in ("dummy", "ifb"):
            argv = ["ip", "-n", self.host, "link", "add", NULL_IF, "type", kind]
            if self.r.run(argv, check=False, quiet=True).returncode == 0:
                self.r.note(argv)
                break
        else:
            raise RuntimeError("neither a dummy nor an ifb device can be created in the host namespace")
        self.r.run(["ip", "-n", self.host, "addr", "add", f"{NULL_ADDR}/24", "dev", NULL_IF])
        self.r.run(["ip", "-n", self.host, "link", "set", NULL_IF, "up"])
        self.r.run(["ip", "-n", self.host, "route", "add", "default", "via", NULL_GW, "dev", NULL_IF])

    def destroy(self) -> None:
        for ns in (self.guest, self.host):
            if os.path.exists(f"/run/netns/{ns}"):
                self.r.run(["ip", "netns", "del", ns], check=False, quiet=True)

    def guest_link_exists(self) -> bool:
        return self.r.run(["ip", "-n", self.guest, "link", "show", TAP], check=False, quiet=True).returncode == 0

    def guest_has_default_route(self) -> bool:
        return "default" in self.r.run(["ip", "-n", self.guest, "route", "show", "default"], check=False,
                                       quiet=True).stdout

    def configure_guest(self, dev: str, addr: str, prefix: int, gw: str, mtu: int) -> None:
        g = ["ip", "-n", self.guest]
        self.r.run(g + ["link", "set", dev, "mtu", str(mtu)])
        self.r.run(g + ["addr", "add", f"{addr}/{prefix}", "dev", dev])
        self.r.run(g + ["link", "set", dev, "up"])
        self.r.run(g + ["route", "add", "default", "via", gw, "dev", dev])


def cleanup_stale_namespaces(r: Runner) -> None:
    """Namespaces of an earlier run of this script that was killed (its PID is gone)."""
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return
    for n in names:
        m = re.fullmatch(rf"{NS_PREFIX}(\d+)-[hg]", n)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            r.log(f"deleting stale namespace {n}")
            r.run(["ip", "netns", "del", n], check=False, quiet=True)


# ------------------------------------------------------------------------------------------------
# stacks

class Stack:
    family = "?"
    userspace = True
    dev = TAP
    guest_addr, prefix, gateway = "10.0.2.100", 24, "10.0.2.2"
    host_addr = "10.0.2.2"        # guest -> this address reaches the host ns' 127.0.0.1
    server_bind = "127.0.0.1"
    ping_target: str | None = None
    ping_note = ""
    publish_note = ""

    def __init__(self, mtu: int):
        self.mtu = mtu
        self.proc: subprocess.Popen | None = None
        self.log_label = self.family

    @property
    def name(self) -> str:
        return f"{self.family}-{self.mtu}"

    @property
    def label(self) -> str:
        return f"{LABEL[self.family]} mtu{self.mtu}"

    def phases(self, tests: list[str]) -> list[tuple[str, list[str]]]:
        """(phase, tests): the stack is started once per phase."""
        return [("all", tests)]

    def start(self, r: Runner, ns: Netns, phase: str) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def fwd_targets(self) -> list[tuple[str, str, int, int]]:
        """(test key, host-ns address, iperf3 port, echo port) for the published-port tests."""
        return [("fwd", "127.0.0.1", FWD_PORT, FWD_ECHO_PORT)]

    def stop(self, r: Runner) -> None:
        if self.proc is not None:
            r.stop(self.proc)
            self.proc = None


def _fastnet_cmd(args) -> list[str]:
    return [args.python, "-m", "fastnet"]


class Fastnet(Stack):
    guest_addr, prefix, gateway, host_addr = "192.168.65.3", 24, "192.168.65.1", "192.168.65.2"

    def __init__(self, mtu: int, offload: bool, args):
        super().__init__(mtu)
        self.offload = offload
        self.family = "fastnet" if offload else "fastnet-plain"
        self.args = args
        self.api = None
        self.ping_note = "fastnet answers the gateway's echo itself"
        self.publish_note = "`fastnet serve --api` + `fastnet expose`"

    def phases(self, tests):
        return [("all", tests)]

    def start(self, r, ns, phase):
        tap = ["--tap", TAP, "--netns", ns.guest_path, "--mtu", str(self.mtu),
               "--tap-offload" if self.offload else "--no-tap-offload"]
        self.api = os.path.join(r.workdir, "fastnet.api")
        # no state file: a restarted daemon must not publish the ports again by itself
        argv = ns.exec_(ns.host) + _fastnet_cmd(self.args) + ["serve"] + tap + [
            "--disable-proxy", "--api", self.api, "--ports-state", "none"]
        label = "fastnet"
        self.log_label = label
        self.proc = r.spawn(argv, label)
        r.wait_for(ns.guest_link_exists, 15, f"fastnet to create {TAP}", self.proc, label)
        ns.configure_guest(TAP, self.guest_addr, self.prefix, self.gateway, self.mtu)
        r.wait_for(lambda: os.path.exists(self.api), 10, "the fastnet API socket", self.proc, label)
        for hp, gp in ((FWD_PORT, IPERF_PORT), (FWD_ECHO_PORT, ECHO_PORT)):
            r.run(ns.exec_(ns.host) + _fastnet_cmd(self.args) + ["expose", "--api", self.api,
                                                                 f"127.0.0.1:{hp}:{self.guest_addr}:{gp}"])


def slirp_api(path: str, req: dict, timeout: float = 5) -> dict:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(json.dumps(req).encode())
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    finally:
        s.close()
    return json.loads(data or b"{}")


class Slirp(Stack):
    family = "slirp4netns"
    ping_note = "slirp4netns answers the gateway's echo itself"
    publish_note = "slirp4netns API add_hostfwd"

    def start(self, r, ns, phase):
        api = os.path.join(r.workdir, "slirp4netns.api")
        if os.path.exists(api):
            os.unlink(api)
        argv = ns.exec_(ns.host) + ["slirp4netns", "--configure", f"--mtu={self.mtu}", "--disable-dns",
                                    "--api-socket", api, "--netns-type=path", ns.guest_path, TAP]
        self.proc = r.spawn(argv, "slirp4netns")
        r.wait_for(lambda: os.path.exists(api) and ns.guest_has_default_route(), 15,
                   "slirp4netns to configure the guest", self.proc, "slirp4netns")
        for hp, gp in ((FWD_PORT, IPERF_PORT), (FWD_ECHO_PORT, ECHO_PORT)):
            req = {"execute": "add_hostfwd",
                   "arguments": {"proto": "tcp", "host_addr": "127.0.0.1", "host_port": hp, "guest_port": gp}}
            r.note(f"echo '{json.dumps(req)}' | nc -U {api}   # (sent from Python)")
            resp = slirp_api(api, req)
            if "return" not in resp:
                raise RuntimeError(f"slirp4netns add_hostfwd: {resp}")


class Pasta(Stack):
    family = "pasta"
    ping_target = NULL_ADDR
    ping_note = ("this pasta build does not map ICMP to the gateway: the guest pings 192.0.2.1, a host-ns "
                 "address, through pasta's ICMP socket")
    publish_note = ("pasta -t; `fwd` connects from 192.0.2.1 (pasta's TAP path), `fwd_splice` from 127.0.0.1 "
                    "(spliced into the guest's loopback, no TAP)")

    def fwd_targets(self):
        return [("fwd", NULL_ADDR, FWD_PORT, FWD_ECHO_PORT), ("fwd_splice", "127.0.0.1", FWD_PORT, FWD_ECHO_PORT)]

    def start(self, r, ns, phase):
        argv = ns.exec_(ns.host) + ["pasta", "-f", "-q", "--runas", "0:0", "--config-net", "-I", TAP,
                                    "--netns", ns.guest, "-4", "-a", self.guest_addr, "-n", str(self.prefix),
                                    "-g", self.gateway, "-m", str(self.mtu),
                                    "-t", f"{FWD_PORT}:{IPERF_PORT}", "-t", f"{FWD_ECHO_PORT}:{ECHO_PORT}",
                                    "-u", "none", "-T", "none", "-U", "none"]
        self.proc = r.spawn(argv, "pasta")
        r.wait_for(ns.guest_has_default_route, 15, "pasta to configure the guest", self.proc, "pasta")
        out = r.run(["ip", "-n", ns.guest, "-o", "link", "show", TAP], quiet=True).stdout
        m = re.search(r"mtu (\d+)", out)
        if m and int(m.group(1)) != self.mtu:
            raise RuntimeError(f"pasta left {TAP} at mtu {m.group(1)}, not {self.mtu}")


class Veth(Stack):
    family = "veth"
    userspace = False
    dev = "fnbe-vg"
    guest_addr, prefix, gateway, host_addr = "10.0.3.100", 24, "10.0.3.1", "10.0.3.1"
    server_bind = "10.0.3.1"
    publish_note = "no publishing: the host connects to the guest's address (routed)"

    def fwd_targets(self):
        return [("fwd", self.guest_addr, IPERF_PORT, ECHO_PORT)]

    def start(self, r, ns, phase):
        r.run(["ip", "-n", ns.host, "link", "add", "fnbe-vh", "mtu", str(self.mtu), "type", "veth", "peer", "name",
               self.dev, "netns", ns.guest, "mtu", str(self.mtu)])
        r.run(["ip", "-n", ns.host, "addr", "add", f"{self.gateway}/24", "dev", "fnbe-vh"])
        r.run(["ip", "-n", ns.host, "link", "set", "fnbe-vh", "up"])
        ns.configure_guest(self.dev, self.guest_addr, self.prefix, self.gateway, self.mtu)


def available(family: str) -> str | None:
    """None when the stack can run here, else why not."""
    need = {"slirp4netns": "slirp4netns", "pasta": "pasta"}.get(family)
    if need and not shutil.which(need):
        return f"{need} is not installed"
    return None


def make_stack(family: str, mtu: int, args) -> Stack:
    if family in ("fastnet", "fastnet-plain"):
        return Fastnet(mtu, family == "fastnet", args)
    return {"slirp4netns": Slirp, "pasta": Pasta, "veth": Veth}[family](mtu)


# ------------------------------------------------------------------------------------------------
# measurements

def stack_cpu(stack: Stack) -> float:
    return sum(cpu_seconds(p) for root in stack.pids() for p in descendants(root))


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def iperf_once(r: Runner, stack: Stack, ns_argv: list[str], args: list[str], duration: float) -> dict:
    argv = ns_argv + ["iperf3", "-J", "--connect-timeout", "5000"] + args
    c0, t0 = stack_cpu(stack), time.monotonic()
    res = r.run(argv, timeout=duration + 25, check=False)
    wall = time.monotonic() - t0
    cpu = stack_cpu(stack) - c0
    try:
        d = json.loads(res.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"iperf3 gave no JSON (exit {res.returncode}): {res.stderr.strip()[-300:]}") from None
    if d.get("error"):
        raise RuntimeError(f"iperf3: {d['error']}")
    end = d.get("end", {})
    rcv = end.get("sum_received") or end.get("sum") or {}
    iv = [i["sum"]["bits_per_second"] for i in d.get("intervals", []) if i["sum"].get("seconds", 0) > 0.5]
    out = {"gbps": rcv.get("bits_per_second", 0) / 1e9, "seconds": rcv.get("seconds"),
           "retransmits": (end.get("sum_sent") or {}).get("retransmits"), "wall_s": round(wall, 2),
           "stack_cpu_s": round(cpu, 3), "cores": round(cpu / wall, 3) if wall > 0 else None,
           "intervals_gbps": [round(x / 1e9, 3) for x in iv],
           # stalled: 1-s intervals carrying < 5 % of the run's best interval (or nothing at all)
           "stalled_s": sum(1 for x in iv if x < 0.05 * max(iv)) if iv and max(iv) > 0 else len(iv)}
    return out


def summarize_iperf(runs: list[dict], errors: list[str], userspace: bool) -> dict:
    t = {"runs": runs, "errors": errors}
    if runs:
        g = med([x["gbps"] for x in runs])
        cores = med([x["cores"] for x in runs]) if userspace else None
        t.update(gbps=g, cores=cores, gbps_per_core=(g / cores) if cores else None,
                 stalled_s=max(x["stalled_s"] for x in runs), retransmits=med([x["retransmits"] for x in runs]))
    return t


def combine_passes(passes: list[dict]) -> dict:
    """One result per configuration from its interleaved passes: iperf3 runs pooled (median of
    all), conn/s and RR/s the median over passes, ping the median of medians and the min of mins."""
    if len(passes) == 1:
        return passes[0]
    out = dict(passes[0])
    out["errors"] = [f"pass {i + 1}: {e}" for i, p in enumerate(passes) for e in p["errors"]]
    out["skipped"] = sorted({e for p in passes for e in p["skipped"]})
    out["elapsed_s"] = round(sum(p["elapsed_s"] for p in passes), 1)
    out["loadavg"] = [p.get("loadavg") for p in passes]
    out["tests"] = {}
    keys = []
    for p in passes:
        keys += [k for k in p["tests"] if k not in keys]
    for key in keys:
        ts = [p["tests"][key] for p in passes if key in p["tests"]]
        errs = [f"pass {i + 1}: {e}" for i, t in enumerate(ts) for e in t.get("errors", [])]
        if any("runs" in t for t in ts):
            out["tests"][key] = summarize_iperf([r for t in ts for r in t.get("runs", [])], errs, out["userspace"])
        elif key == "ping":
            ok = [t for t in ts if t.get("replies")]
            out["tests"][key] = {**ts[0], "replies": sum(t["replies"] for t in ts), "sent": sum(t["sent"] for t in ts),
                                 "median_us": med([t["median_us"] for t in ok]),
                                 "min_us": min((t["min_us"] for t in ok), default=None),
                                 "per_pass_median_us": [t.get("median_us") for t in ts], "errors": errs}
        else:
            c = {"passes": ts, "errors": errs}
            for f in ("conns_target", "conns_ok", "conns_fail", "rr_target", "rr_done", "stack_cpu_s"):
                c[f] = sum(t.get(f) or 0 for t in ts)
            for f in ("conn_per_s", "rr_per_s", "rr_p50_us", "rr_p99_us", "conn_per_s_robust", "rr_per_s_robust"):
                c[f] = med([t.get(f) for t in ts if t.get(f)])
            out["tests"][key] = c
    return out


class Session:
    def __init__(self, args, r: Runner):
        self.a = args
        self.r = r
        self.deadline = time.monotonic() + args.budget_s
        self.runs_per_pass = 1 if args.interleave else args.runs
        self.npass: dict[str, int] = {}

    def check_budget(self) -> None:
        if time.monotonic() > self.deadline:
            raise Skip("time budget (--budget-s) exhausted")

    # every test records into res["tests"][key]

    def iperf_series(self, res, key, stack, ns_argv, iargs, restart) -> None:
        runs, errors = [], []
        for i in range(self.runs_per_pass):
            self.check_budget()
            try:
                runs.append(iperf_once(self.r, stack, ns_argv, iargs + ["-t", str(self.a.duration)], self.a.duration))
            except RuntimeError as e:
                errors.append(f"run {i + 1}: {e}")
                self.r.log(f"  {key} run {i + 1} failed: {e}")
                restart()   # an iperf3 server left mid-test may refuse the next client for a while
        t = summarize_iperf(runs, errors, stack.userspace)
        if runs:
            self.r.log(f"  {key}: {t['gbps']:.2f} Gbit/s" + (f", stack {t['cores']:.2f} cores" if t["cores"] is not None else "")
                       + (f", STALLED {t['stalled_s']} s" if t["stalled_s"] else ""))
        res["tests"][key] = t

    def rr_client(self, res, key, stack, ns_argv, host, port, conns, rr) -> None:
        self.check_budget()
        argv = ns_argv + [self.a.guest_python, os.path.join(HERE, "rr.py"), "client", "--host", host, "--port", str(port),
                          "--conns", str(conns), "--rr", str(rr), "--max-seconds", str(self.a.rr_max_seconds)]
        c0, t0 = stack_cpu(stack), time.monotonic()
        out = self.r.run(argv, timeout=2 * self.a.rr_max_seconds + 30, check=False)
        wall = time.monotonic() - t0
        try:
            d = json.loads(out.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            res["tests"][key] = {"errors": [f"rr.py client exit {out.returncode}: {out.stderr.strip()[-300:]}"]}
            return
        d["stack_cpu_s"] = round(stack_cpu(stack) - c0, 3)
        d["wall_s"] = round(wall, 2)
        d["errors"] = []
        if d.get("conns_fail"):
            d["errors"].append(f"{d['conns_fail']} of {conns} connections failed: {d.get('conn_errors')}")
        if d.get("rr_error"):
            d["errors"].append(f"rr: {d['rr_error']}")
        res["tests"][key] = d
        self.r.log(f"  {key}: " + ", ".join(([f"{d.get('conn_per_s')} conn/s"] if conns else [])
                                           + ([f"{d.get('rr_per_s')} RR/s"] if rr else [])))

    def ping(self, res, stack, ns) -> None:
        self.check_budget()
        target = stack.ping_target or stack.gateway
        n = self.a.pings
        out = self.r.run(ns.exec_(ns.guest) + ["ping", "-n", "-c", str(n), "-i", "0.005", "-W", "1", "-w", "15", target],
                         timeout=30, check=False)
        times = [float(x) * 1000 for x in re.findall(r"time=([\d.]+) ms", out.stdout)]
        m = re.search(r"(\d+(?:\.\d+)?)% packet loss", out.stdout)
        res["tests"]["ping"] = {"target": target, "replies": len(times), "sent": n,
                                "loss_pct": float(m.group(1)) if m else None,
                                "median_us": med(times), "min_us": min(times) if times else None,
                                "note": stack.ping_note,
                                "errors": [] if times else [f"no replies: {out.stdout.strip()[-200:]}"]}
        self.r.log(f"  ping {target}: median {med(times)} us")


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def run_config(sess: Session, stack: Stack, tests: list[str]) -> dict:
    r, a = sess.r, sess.a
    res = {"name": stack.name, "label": stack.label, "family": stack.family, "mtu": stack.mtu,
           "userspace": stack.userspace, "tests": {}, "errors": [], "skipped": [], "phases": [],
           "publish_via": stack.publish_note, "loadavg": loadavg()}
    r.cmdlog = []
    sess.npass[stack.name] = sess.npass.get(stack.name, 0) + 1
    r.prefix = f"{stack.name}-p{sess.npass[stack.name]}-"
    t_start = time.monotonic()
    r.log(f"== {stack.label}")
    for phase, ptests in stack.phases(tests):
        ns = Netns(r)
        try:
            ns.create()
            try:
                stack.start(r, ns, phase)
            except Exception as e:
                if stack.proc is not None:
                    try:
                        stack.proc.wait(timeout=1)   # a stack that is dying: say so, not what failed after it
                    except subprocess.TimeoutExpired:
                        pass
                if stack.userspace and stack.proc is not None and stack.proc.poll() is not None:
                    raise RuntimeError(f"the stack exited ({stack.proc.returncode}): "
                                       f"{r.tail(stack.log_label, 300)}") from e
                raise
            res["phases"].append({"phase": phase, "tests": ptests, "pids": stack.pids()})
            H, G = ns.exec_(ns.host), ns.exec_(ns.guest)
            py = a.guest_python
            servers = {}

            def start_iperf_servers():
                for key, argv in (("iperf3-host", H + ["iperf3", "-s", "-B", stack.server_bind, "-p", str(IPERF_PORT)]),
                                  ("iperf3-guest", G + ["iperf3", "-s", "-p", str(IPERF_PORT)])):
                    if key in servers:
                        r.stop(servers[key])
                    servers[key] = r.spawn(argv, key)
                time.sleep(0.3)

            start_iperf_servers()
            r.spawn(H + [py, os.path.join(HERE, "rr.py"), "serve", "--bind", stack.server_bind, "--port",
                         str(ECHO_PORT), "--max-seconds", "3600"], "echo-host")
            r.spawn(G + [py, os.path.join(HERE, "rr.py"), "serve", "--port", str(ECHO_PORT), "--max-seconds", "3600"],
                    "echo-guest")
            probe = G + [py, os.path.join(HERE, "rr.py"), "probe", "--host", stack.host_addr, "--port", str(ECHO_PORT),
                         "--timeout", "15"]
            pr = r.run(probe, timeout=30, check=False)
            if stack.userspace and not stack.pids():
                raise RuntimeError(f"the stack exited: {r.tail(stack.log_label)}")
            if pr.returncode != 0:
                raise RuntimeError(f"the guest cannot reach the host's echo server at {stack.host_addr}: "
                                   f"{pr.stderr.strip()}")
            gw = stack.host_addr
            for key in ptests:
                try:
                    if key == "ping":
                        sess.ping(res, stack, ns)
                    elif key == "conn":
                        sess.rr_client(res, "conn", stack, G, gw, ECHO_PORT, a.conns, 0)
                    elif key == "rr":
                        sess.rr_client(res, "rr", stack, G, gw, ECHO_PORT, 0, a.rr)
                    elif key == "g2h":
                        sess.iperf_series(res, "g2h", stack, G, ["-c", gw, "-p", str(IPERF_PORT)], start_iperf_servers)
                    elif key == "h2g":
                        sess.iperf_series(res, "h2g", stack, G, ["-c", gw, "-p", str(IPERF_PORT), "-R"],
                                          start_iperf_servers)
                    elif key in ("fwd", "fwd_conn"):
                        for tkey, addr, iport, eport in stack.fwd_targets():
                            if key == "fwd":
                                sess.iperf_series(res, tkey, stack, H, ["-c", addr, "-p", str(iport)],
                                                  start_iperf_servers)
                            else:
                                sess.rr_client(res, tkey + "_conn" if tkey != "fwd" else "fwd_conn", stack, H, addr,
                                               eport, a.conns, 0)
                except Skip as e:
                    res["skipped"].append(f"{key}: {e}")
                    r.log(f"  skip {key}: {e}")
                if stack.userspace and not stack.pids():
                    raise RuntimeError(f"the stack exited during {key}: {r.tail(stack.log_label)}")
        except Exception as e:  # noqa: BLE001  (recorded; the next configuration still runs)
            res["errors"].append(f"{phase}: {type(e).__name__}: {e}")
            r.log(f"  ERROR ({phase}) {e}")
        finally:
            try:
                stack.stop(r)
            finally:
                r.stop_all()
                ns.destroy()
    res["commands"] = list(r.cmdlog)
    res["elapsed_s"] = round(time.monotonic() - t_start, 1)
    return res


# ------------------------------------------------------------------------------------------------
# report

def fmt(x, nd=2) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def md_table(head, rows) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


HEAD = ["stack", "MTU", "g→h Gbit/s", "cores", "Gbit/s per core", "h→g (-R) Gbit/s", "cores",
        "h→g published port Gbit/s", "cores", "conn/s g→h", "conn/s published", "RR/s", "ping µs median (min)",
        "stalled s"]


def _t(res, key):
    return res["tests"].get(key) or {}


def gbps_cell(t) -> str:
    if not t.get("runs"):
        return "failed" if t.get("errors") else "—"
    s = fmt(t.get("gbps"))
    return s + ("²" if t.get("stalled_s") else "")


def summary_rows(results) -> list[list[str]]:
    rows = []
    for res in results:
        g2h, h2g, fwd = _t(res, "g2h"), _t(res, "h2g"), _t(res, "fwd")
        ping, conn, rr, fconn = _t(res, "ping"), _t(res, "conn"), _t(res, "rr"), _t(res, "fwd_conn")
        splice = _t(res, "fwd_splice")
        fwd_s = gbps_cell(fwd) + (f" (splice from 127.0.0.1: {gbps_cell(splice)})" if splice else "")
        stalls = sum(_t(res, k).get("stalled_s") or 0 for k in ("g2h", "h2g", "fwd"))
        pcell = f"{fmt(ping.get('median_us'), 0)} ({fmt(ping.get('min_us'), 0)})" if ping else "—"
        if ping.get("note") and res["family"] == "pasta":
            pcell += "¹"
        rows.append([res["label"].rsplit(" mtu", 1)[0], str(res["mtu"]),
                     gbps_cell(g2h), fmt(g2h.get("cores")),
                     "n/m²" if g2h.get("stalled_s") else fmt(g2h.get("gbps_per_core")),
                     gbps_cell(h2g), fmt(h2g.get("cores")),
                     fwd_s, fmt(fwd.get("cores")),
                     fmt(conn.get("conn_per_s_robust"), 0), fmt(fconn.get("conn_per_s_robust"), 0),
                     fmt(rr.get("rr_per_s_robust"), 0),
                     pcell, str(stalls) if any(k in res["tests"] for k in ("g2h", "h2g", "fwd")) else "—"])
    return rows


def _find(results, family, mtu):
    for res in results:
        if res["family"] == family and res["mtu"] == mtu:
            return res
    return None


def targets(results) -> list[list[str]]:
    """The issue targets (4: forwarder, 6: published ports), each fastnet row against the anchors
    of the same MTU in the same run."""
    rows = []

    def val(res, key, field):
        return (_t(res, key) or {}).get(field) if res else None

    def add(res, what, v, ref, ref_label, ok):
        verdict = "—" if ok is None else ("met" if ok else "**missed**")
        rows.append([res["label"], what, fmt(v) if isinstance(v, float) else str(v if v is not None else "—"),
                     ref_label + (f" {fmt(ref) if isinstance(ref, float) else ref}" if ref is not None else ""), verdict])

    for res in results:
        if not res["family"].startswith("fastnet"):
            continue
        mtu = res["mtu"]
        slirp, pasta = _find(results, "slirp4netns", mtu), _find(results, "pasta", mtu)
        g2h, h2g = val(res, "g2h", "gbps"), val(res, "h2g", "gbps")
        if mtu >= 65520:
            add(res, "g→h ≥ 15 Gbit/s", g2h, 15.0, "target", None if g2h is None else g2h >= 15)
            for key, what in (("g2h", "g→h"), ("h2g", "h→g (-R)")):
                v, p = val(res, key, "gbps"), val(pasta, key, "gbps")
                stalled = bool(val(pasta, key, "stalled_s"))
                add(res, f"{what} ≥ pasta", v, p, "pasta" + (" (stalled)" if stalled else ""),
                    None if v is None or p is None else v >= p)
        if mtu <= 1500:
            for key, what in (("g2h", "g→h"), ("h2g", "h→g (-R)")):
                v, s = val(res, key, "gbps"), val(slirp, key, "gbps")
                add(res, f"{what} ≥ 3× slirp4netns", v, None if s is None else 3 * s, "3 × slirp4netns =",
                    None if v is None or s is None else v >= 3 * s)
        stalls = sum((val(res, k, "stalled_s") or 0) for k in ("g2h", "h2g", "fwd"))
        ran = any(k in res["tests"] for k in ("g2h", "h2g", "fwd"))
        add(res, "no stall (1-s intervals < 5 % of the best)", f"{stalls} s stalled" if ran else None, None, "",
            None if not ran else stalls == 0)
        c, sc = val(res, "conn", "conn_per_s_robust"), val(slirp, "conn", "conn_per_s_robust")
        add(res, "conn/s g→h ≥ slirp4netns", c, sc, "slirp4netns", None if c is None or sc is None else c >= sc)
        f, pf = val(res, "fwd", "gbps"), val(pasta, "fwd", "gbps")
        add(res, "published port h→g ≥ pasta's TAP path (issue 6)", f, pf, "pasta fwd from 192.0.2.1",
            None if f is None or pf is None else f >= pf)
        fc, sfc = val(res, "fwd_conn", "conn_per_s_robust"), val(slirp, "fwd_conn", "conn_per_s_robust")
        add(res, "published port conn/s ≥ slirp4netns (issue 6)", fc, sfc, "slirp4netns",
            None if fc is None or sfc is None else fc >= sfc)
    return rows


def detail_rows(results) -> list[list[str]]:
    rows = []
    for res in results:
        for key, t in res["tests"].items():
            if "runs" in t:
                rows.append([res["label"], key, fmt(t.get("gbps"), 3),
                             " / ".join(fmt(x["gbps"], 3) for x in t["runs"]) or "—",
                             " / ".join(fmt(x["stack_cpu_s"]) for x in t["runs"]) or "—",
                             fmt(t.get("cores")),
                             " / ".join(f"{x['retransmits']}" + (f" ({x['stalled_s']} s stalled)" if x["stalled_s"] else "")
                                        for x in t["runs"]) or "—",
                             "; ".join(t.get("errors", []))])
            elif key == "ping":
                rows.append([res["label"], f"ping {t['target']}", "—",
                             f"{t['replies']}/{t['sent']} replies, median {fmt(t['median_us'], 0)} µs, "
                             f"min {fmt(t['min_us'], 0)} µs", "—", "—", "—", "; ".join(t.get("errors", []))])
            else:
                parts = []
                ps = t.get("passes") or [t]
                if t.get("conns_target"):
                    parts.append(f"{t.get('conns_ok')}/{t['conns_target']} connections; conn/s per pass "
                                 + " / ".join(fmt(x.get("conn_per_s_robust"), 0) for x in ps) + " (block median), "
                                 + " / ".join(fmt(x.get("conn_per_s"), 0) for x in ps) + " (overall)")
                if t.get("rr_target"):
                    parts.append(f"{t.get('rr_done')}/{t['rr_target']} round trips; RR/s per pass "
                                 + " / ".join(fmt(x.get("rr_per_s_robust"), 0) for x in ps) + " (1 / median RTT), "
                                 + " / ".join(fmt(x.get("rr_per_s"), 0) for x in ps) + " (overall)"
                                 + f"; p50 {fmt(t.get('rr_p50_us'), 1)} µs, p99 {fmt(t.get('rr_p99_us'), 1)} µs")
                rows.append([res["label"], key, "—", "; ".join(parts) or "—",
                             " / ".join(fmt(x.get("stack_cpu_s")) for x in ps), "—", "—",
                             "; ".join(t.get("errors", []))])
    return rows


def versions(args) -> dict:
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "n/a"

    cpu = "?"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    fn_ver = out([args.python, "-m", "fastnet", "--version"])
    fn_file = out([args.python, "-c", "import fastnet._tcp as t; print(t.__file__)"])
    h = hashlib.sha256()
    for so in sorted(os.listdir(os.path.dirname(fn_file))) if os.path.isfile(fn_file) else []:
        if so.endswith(".so"):
            with open(os.path.join(os.path.dirname(fn_file), so), "rb") as f:
                h.update(f.read())
    git = out(["git", "-C", REPO, "describe", "--always", "--dirty"])
    return {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "kernel": platform.release(), "cpu": cpu, "nproc": os.cpu_count(),
            "fastnet": f"{fn_ver} ({fn_file}; compiled modules sha256 {h.hexdigest()[:12]}; repo {git})",
            "fastnet published ports via": "fastnet expose",
            "slirp4netns": (out(["slirp4netns", "--version"]).splitlines() or ["n/a"])[0],
            "passt/pasta": "deb " + out(["dpkg-query", "-W", "-f", "${Version}", "passt"]),
            "iperf3": (out(["iperf3", "--version"]).splitlines() or ["n/a"])[0],
            "python": platform.python_version()}


NOTES = """\
¹ pasta: the guest pings 192.0.2.1 (a host-ns address, through pasta's ICMP socket); this pasta build
  does not answer the gateway. fastnet and slirp4netns answer their gateway's echo themselves.
² stalled: at least one 1-s iperf3 interval carried < 5 % of the run's best interval.

* Single-stream iperf3, default windows, no omit period; the median of the runs is shown; "cores" is
  the stack's CPU seconds (utime+stime, all threads and descendants) over each run's wall time, median;
  "Gbit/s per core" = median Gbit/s / median cores. The iperf3 client, server and the stack share the
  machine's cores: a single-threaded stack at ~1.0 core is at its own limit.
* h→g (-R): the guest opens the connection to the host and the host sends (iperf3 -R). Published
  port: a host-namespace iperf3 client connects to 127.0.0.1:5301, forwarded to the guest's iperf3
  server (fastnet: active open into the guest; slirp4netns: add_hostfwd; pasta: -t, from 192.0.2.1 so
  the TAP is used — from 127.0.0.1 pasta splices into the guest's loopback and never touches the TAP).
* conn/s: sequential connect + 1-byte echo + close from a Python client to a Python echo server,
  from the median time of a block of 100 connections (robust to bursts of load from elsewhere);
  RR/s: 1-byte round trips on one TCP_NODELAY connection, 1 / the median round trip. The overall
  rates (count / total time) are in "Every run". Both are dominated by Python on the fast paths;
  compare stacks with each other, not with other tools.
"""


def write_outputs(outdir, results, args, vers, total_s, write_json=True) -> tuple[str, str, str]:
    os.makedirs(outdir, exist_ok=True)
    jpath, mpath, ppath = (os.path.join(outdir, n) for n in ("results.json", "results.md", "results.png"))
    with open(jpath, "w") if write_json else open(os.devnull, "w") as f:
        json.dump({"versions": vers, "args": {k: v for k, v in vars(args).items()}, "total_s": round(total_s, 1),
                   "results": results}, f, indent=1, default=str)
    cmd = "python -m bench.e2e.compare " + " ".join(shlex.quote(x) for x in args.argv)
    lines = [f"# fastnet end-to-end comparison", "",
             f"`{cmd.strip()}` on {vers['date_utc']}, {total_s / 60:.1f} min. iperf3 {args.duration} s × "
             f"{args.runs} runs (median), {args.conns} sequential connections, {args.rr} round trips, "
             f"{args.pings} pings" + (f"; {args.runs} interleaved passes over all configurations (each test "
                                      "once per pass, the stack restarted each pass), medians over the passes"
                                      if args.interleave and args.runs > 1 else "") + ".", "", "## Machine", ""]
    lines += [f"* {k}: {v}" for k, v in vers.items()]
    lines += ["", "## Results (medians)", "", md_table(HEAD, summary_rows(results)), "", NOTES, "## Targets", "",
              md_table(["fastnet", "target", "value", "reference", "verdict"], targets(results)) or "(no fastnet rows)",
              "", "## Every run", "",
              md_table(["stack", "test", "median Gbit/s", "runs (Gbit/s or counts)", "stack CPU s per run",
                        "cores", "retransmits per run", "errors"], detail_rows(results)), "",
              "## Failures and skips", ""]
    errs = [f"* {res['label']}: {e}" for res in results for e in res["errors"] + res["skipped"]]
    errs += [f"* {res['label']} {k}: {e}" for res in results for k, t in res["tests"].items() for e in t.get("errors", [])]
    errs = [" ".join(e.split()) for e in errs]
    lines += errs or ["* none"]
    lines += ["", "## Published ports", ""] + [f"* {res['label']}: {res['publish_via']}" for res in results]
    lines += ["", "## Machine load (1/5/15-min load average when each configuration started, per pass)", ""]
    lines += [f"* {res['label']}: " + " | ".join(x or "?" for x in (res["loadavg"] if isinstance(res.get("loadavg"), list)
                                                                    else [res.get("loadavg")])) for res in results]
    lines += ["", "## Exact commands", ""]
    for res in results:
        lines += [f"### {res['label']} ({res['elapsed_s']} s)", "", "```"] + res.get("commands", []) + ["```", ""]
    with open(mpath, "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        plot(results, ppath, vers)
    except Exception as e:  # noqa: BLE001  (matplotlib missing or broken: the numbers still stand)
        print(f"warning: no plot: {e}", file=sys.stderr)
        ppath = None
    return jpath, mpath, ppath


def plot(results, path, vers) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mtus = sorted({r["mtu"] for r in results})
    fams = [f for f in FAMILIES if any(r["family"] == f for r in results)]
    colors = {"fastnet": "#1f77b4", "fastnet-plain": "#17becf", "slirp4netns": "#ff7f0e", "pasta": "#2ca02c",
              "veth": "#7f7f7f"}
    keys = [("g2h", "guest→host"), ("h2g", "host→guest (-R)"), ("fwd", "published port")]
    fig, axes = plt.subplots(1, len(mtus) + 1, figsize=(4.2 * (len(mtus) + 1), 3.4),
                             gridspec_kw={"width_ratios": [3] * len(mtus) + [2]})
    axes = list(axes) if len(mtus) + 1 > 1 else [axes]
    w = 0.8 / max(1, len(fams))
    for ax, mtu in zip(axes, mtus):
        for j, fam in enumerate(fams):
            res = _find(results, fam, mtu)
            vals = [(_t(res, k).get("gbps") or 0) if res else 0 for k, _ in keys]
            xs = [i + (j - (len(fams) - 1) / 2) * w for i in range(len(keys))]
            bars = ax.bar(xs, vals, w, label=LABEL[fam], color=colors.get(fam))
            for b, k in zip(bars, keys):
                t = _t(res, k[0]) if res else {}
                note = "stall" if t.get("stalled_s") else ("failed" if res and not t.get("gbps") else "")
                if note:
                    ax.annotate(note, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                                fontsize=6, color="red", rotation=90 if note == "failed" else 0)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([k[1] for k in keys], fontsize=8)
        ax.set_title(f"iperf3 single stream, MTU {mtu}", fontsize=9)
        ax.set_ylabel("Gbit/s (median)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    ax = axes[-1]
    cfgs = [r for r in results if r["tests"].get("conn") or r["tests"].get("fwd_conn")]
    ys = range(len(cfgs))
    ax.barh([y - 0.2 for y in ys], [_t(r, "conn").get("conn_per_s_robust") or 0 for r in cfgs], 0.4,
            label="guest→host", color="#9467bd")
    ax.barh([y + 0.2 for y in ys], [_t(r, "fwd_conn").get("conn_per_s_robust") or 0 for r in cfgs], 0.4,
            label="published port", color="#c5b0d5")
    ax.set_yticks(list(ys))
    ax.set_yticklabels([r["label"].replace("fastnet --no-tap-offload", "fastnet plain") for r in cfgs], fontsize=7)
    ax.invert_yaxis()
    ax.set_title("connections per second", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7, frameon=False)
    fig.suptitle(f"fastnet vs slirp4netns vs pasta through a TAP — {vers['date_utc']}, {vers['nproc']} cores",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.e2e.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stacks", default=",".join(DEFAULT_FAMILIES),
                   help=f"comma list of {', '.join(FAMILIES)}, or FAMILY-MTU names (default: %(default)s; "
                        "uninstalled anchors are skipped)")
    p.add_argument("--mtus", default="1500,65520", help="MTUs for the families in --stacks (default: %(default)s)")
    p.add_argument("--only", default="", help=f"comma list of tests: {', '.join(ALL_TESTS)} (default: all)")
    p.add_argument("--duration", type=int, help="seconds per iperf3 run (default 5; --quick 2)")
    p.add_argument("--runs", type=int, help="iperf3 runs per test, the median is reported (default 3; --quick 1)")
    p.add_argument("--conns", type=int, help="sequential connections per conn/s test (default 2000; --quick 200)")
    p.add_argument("--rr", type=int, help="round trips in the RR test (default 10000; --quick 1000)")
    p.add_argument("--pings", type=int, help="echo requests, 5 ms apart (default 200; --quick 20)")
    p.add_argument("--rr-max-seconds", type=float, default=30, help="bound on each conn/RR client")
    p.add_argument("--no-interleave", dest="interleave", action="store_false",
                   help="run each configuration's iperf3 runs back to back instead of one pass over all "
                        "configurations per run (the default, fairer on a machine whose load drifts)")
    p.add_argument("--budget-s", type=float, default=3600, help="skip the remaining tests after this many seconds")
    p.add_argument("--quick", action="store_true",
                   help="smoke settings: 2 s x 1 run, 200 connections, 1000 RR, 20 pings (explicit options still win)")
    p.add_argument("--out", default=os.path.join(HERE, "out"), help="output directory (default: bench/e2e/out)")
    p.add_argument("--python", default=sys.executable,
                   help="the Python whose fastnet package is measured (default: this one)")
    p.add_argument("--guest-python", default=sys.executable, help="Python for rr.py (stdlib only)")
    p.add_argument("--render", metavar="RESULTS.json",
                   help="measure nothing: write results.md and results.png into --out again from an earlier results.json")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    a.argv = list(argv)
    defaults = dict(duration=2, runs=1, conns=200, rr=1000, pings=20) if a.quick else \
        dict(duration=5, runs=3, conns=2000, rr=10000, pings=200)
    for k, v in defaults.items():  # explicit options win over --quick
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.only = [t for t in a.only.split(",") if t] or list(ALL_TESTS)
    bad = [t for t in a.only if t not in ALL_TESTS]
    if bad:
        p.error(f"unknown tests {bad}; known: {', '.join(ALL_TESTS)}")
    return a


def configs(a) -> list[tuple[str, int]]:
    mtus = [int(m) for m in a.mtus.split(",") if m]
    out = []
    for s in [s for s in a.stacks.split(",") if s]:
        m = re.fullmatch(r"(.+)-(\d+)", s)
        if m and m.group(1) in FAMILIES:
            out.append((m.group(1), int(m.group(2))))
        elif s in FAMILIES:
            out += [(s, mtu) for mtu in mtus]
        else:
            raise SystemExit(f"unknown stack {s!r}; known: {', '.join(FAMILIES)} (optionally -MTU)")
    # same MTU together, so each fastnet row sits beside its anchors
    return sorted(out, key=lambda c: (c[1], FAMILIES.index(c[0])))


def render(a) -> int:
    with open(a.render) as f:
        d = json.load(f)
    ra = argparse.Namespace(**d["args"])
    ra.out = a.out
    jpath, mpath, ppath = write_outputs(a.out, d["results"], ra, d["versions"], d["total_s"],
                                        write_json=os.path.abspath(a.render) != os.path.abspath(
                                            os.path.join(a.out, "results.json")))
    print(md_table(HEAD, summary_rows(d["results"])))
    print(f"\n{mpath}, {ppath or 'no plot'}")
    return 0


def main(argv=None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.render:
        return render(a)
    if os.geteuid() != 0:
        print("needs root (network namespaces, TAP devices)", file=sys.stderr)
        return 2
    for tool in ("ip", "iperf3", "ping"):
        if not shutil.which(tool):
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    workdir = tempfile.mkdtemp(prefix="fnbe.")
    r = Runner(workdir, a.verbose)
    cleanup_stale_namespaces(r)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    t0 = time.monotonic()
    vers = versions(a)
    sess = Session(a, r)
    cfgs = configs(a)
    passes: dict[tuple[str, int], list[dict]] = {c: [] for c in cfgs}
    npass = a.runs if a.interleave else 1
    try:
        for i in range(npass):
            # Interleaved: every configuration once per pass (the order reversed on every other
            # pass), so the load of a shared machine drifting over the run hits all stacks alike.
            order = cfgs if i % 2 == 0 else list(reversed(cfgs))
            if npass > 1:
                r.log(f"=== pass {i + 1} of {npass}")
            for fam, mtu in order:
                why = available(fam)
                if why:
                    if i == 0:
                        r.log(f"skipping {fam} mtu{mtu}: {why}")
                        passes[(fam, mtu)].append({
                            "name": f"{fam}-{mtu}", "label": f"{LABEL[fam]} mtu{mtu}", "family": fam, "mtu": mtu,
                            "userspace": True, "tests": {}, "errors": [], "skipped": [why], "phases": [],
                            "publish_via": "", "commands": [], "elapsed_s": 0, "loadavg": None})
                    continue
                passes[(fam, mtu)].append(run_config(sess, make_stack(fam, mtu, a), a.only))
    except KeyboardInterrupt as e:
        r.log(f"interrupted ({e}); cleaning up")
    finally:
        r.stop_all()
        Netns(r).destroy()
    results = [combine_passes(passes[c]) for c in cfgs if passes[c]]
    total = time.monotonic() - t0
    jpath, mpath, ppath = write_outputs(a.out, results, a, vers, total)
    print(md_table(HEAD, summary_rows(results)))
    trows = targets(results)
    if trows:
        print()
        print(md_table(["fastnet", "target", "value", "reference", "verdict"], trows))
    for res in results:
        for e in res["errors"] + res["skipped"]:
            print(f"! {res['label']}: {e}")
    print(f"\n{len(results)} configurations in {total / 60:.1f} min: {mpath}, {jpath}, {ppath or 'no plot'}; "
          f"process logs in {workdir}")
    return 1 if any(res["errors"] for res in results) else 0


if __name__ == "__main__":
    sys.exit(main())
