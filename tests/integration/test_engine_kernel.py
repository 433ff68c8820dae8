"""The TCP engine with the Linux kernel as its peer: a TAP device in a guest namespace, real
programs (curl, nc, iperf3, a byte-checking transfer) on the guest side, servers on the host's
loopback. The guest reaches them through the host alias 192.168.65.2 → 127.0.0.1."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.harness import HOST_ALIAS, TapForwarder
from tests.integration.netns import need, requires_netns

pytestmark = [requires_netns, pytest.mark.netns]

TRANSFER = str(pathlib.Path(__file__).with_name("transfer.py"))


def http_server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=os.path.dirname(TRANSFER))
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("http.server did not start")


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "tso"])
def test_curl_fetches_from_host_loopback(guest_ns, free_port, offload):
    need("curl")
    port = free_port()
    srv = http_server(port)
    try:
        with TapForwarder(guest_ns, offload=offload) as fw:
            r = guest_ns.run("curl", "-sS", "-m", "10", f"http://{HOST_ALIAS}:{port}/transfer.py")
            assert r.returncode == 0, r.stderr
            assert r.stdout == pathlib.Path(TRANSFER).read_text()
            st = fw.stats()
            assert st["stack"]["arp_replies"] >= 1
            assert st["engine"]["bad_csum"] == 0
    finally:
        srv.kill()


def test_refused_port_gives_rst_and_curl_fails_fast(guest_ns, free_port):
    need("curl")
    port = free_port()  # nothing listens there
    with TapForwarder(guest_ns) as fw:
        t0 = time.monotonic()
        r = guest_ns.run("curl", "-sS", "-m", "10", f"http://{HOST_ALIAS}:{port}/")
        assert r.returncode == 7, r.stderr  # "Failed to connect": a RST, not a timeout
        assert time.monotonic() - t0 < 3
        assert fw.stats()["engine"]["rst_out"] >= 1


def test_unlisted_destination_is_unreachable(guest_ns):
    need("curl")
    with TapForwarder(guest_ns):
        r = guest_ns.run("curl", "-sS", "-m", "10", "http://192.0.2.10:80/")
        # ICMP net unreachable: curl reports "Network is unreachable" / couldn't connect at once.
        assert r.returncode == 7, r.stderr
        assert "unreachable" in r.stderr.lower() or "couldn't connect" in r.stderr.lower()


def _half_close_server(port: int, result: dict, mode: str):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(1)
    ls.settimeout(20)
    c, _ = ls.accept()
    c.settimeout(20)
    if mode == "guest-closes-first":
        data = b""
        while chunk := c.recv(65536):
            data += chunk
        result["got"] = data  # read to EOF: the guest's FIN arrived as our EOF
        c.sendall(b"reply after your FIN:" + data[::-1])
        c.close()
    else:
        c.sendall(b"server speaks first")
        c.shutdown(socket.SHUT_WR)  # our FIN; keep reading what the guest still sends
        data = b""
        while chunk := c.recv(65536):
            data += chunk
        result["got"] = data
        c.close()


def test_nc_half_close_guest_first(guest_ns, free_port):
    need("nc")
    port = free_port()
    result: dict = {}
    th = threading.Thread(target=_half_close_server, args=(port, result, "guest-closes-first"))
    th.start()
    time.sleep(0.2)
    with TapForwarder(guest_ns):
        # nc -N: shutdown(SHUT_WR) on stdin EOF, then keep reading until the server closes.
        r = guest_ns.run("nc", "-N", "-w", "10", HOST_ALIAS, str(port), input="hello from the guest", timeout=20)
        th.join(20)
    assert result["got"] == b"hello from the guest"
    assert r.stdout == "reply after your FIN:" + "hello from the guest"[::-1]


def test_host_half_close_guest_keeps_sending(guest_ns, free_port):
    port = free_port()
    result: dict = {}
    th = threading.Thread(target=_half_close_server, args=(port, result, "host-closes-first"))
    th.start()
    time.sleep(0.2)
    script = (
        "import socket,sys\n"
        f"s=socket.create_connection(('{HOST_ALIAS}',{port}),timeout=10)\n"
        "d=b''\n"
        "while True:\n"
        "    c=s.recv(100)\n"
        "    if not c: break\n"
        "    d+=c\n"
        "s.sendall(b'after your FIN: '+d)\n"
        "s.shutdown(socket.SHUT_WR)\n"
        "print(d.decode())\n"
    )
    with TapForwarder(guest_ns):
        r = guest_ns.run(sys.executable, "-c", script, timeout=20)
        th.join(20)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "server speaks first"
    assert result["got"] == b"after your FIN: server speaks first"


@pytest.mark.parametrize("reverse", [False, True], ids=["guest-to-host", "host-to-guest"])
@pytest.mark.parametrize("mtu,offload", [(1500, False), (1500, True), (65520, False)], ids=["1500", "1500-tso", "65520"])
def test_iperf3_single_stream(guest_ns, free_port, reverse, mtu, offload):
    need("iperf3")
    port = free_port()
    srv = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        with TapForwarder(guest_ns, mtu=mtu, offload=offload) as fw:
            r = guest_ns.run("iperf3", "-c", HOST_ALIAS, "-p", str(port), "-t", "2", "-J",
                             *(["-R"] if reverse else []), timeout=30)
            assert r.returncode == 0, r.stdout[-2000:] + r.stderr
            res = json.loads(r.stdout)["end"]
            received = res["sum_received"]["bytes"]
            assert received > 10 * 2**20  # moved real volume; rates are measured in bench/
            st = fw.stats()
            # (iperf3's server aborts the data connection at the end, so the guest's segments
            # still in flight meet no flow and are answered with RSTs: that is correct.)
            assert st["engine"]["bad_csum"] == 0
            assert st["engine"]["timeouts"] == 0
    finally:
        srv.kill()
        srv.wait()


def _transfer(ns, fw_kwargs, port, direction, nbytes, seed, timeout=180):
    """One connection opened by the guest; `direction` says which side sends. Returns both
    sides' JSON reports and the forwarder's stats."""
    ready = f"/tmp/fastnet-transfer-ready-{port}"
    if os.path.exists(ready):
        os.unlink(ready)
    host_role, guest_role = ("recv", "send") if direction == "g2h" else ("send", "recv")
    host = subprocess.Popen([sys.executable, TRANSFER, "serve", "--port", str(port), "--role", host_role,
                             "--bytes", str(nbytes), "--seed", str(seed), "--timeout", str(timeout),
                             "--ready", ready], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        with TapForwarder(ns, **fw_kwargs) as fw:
            g = ns.run(sys.executable, TRANSFER, "connect", "--host", HOST_ALIAS, "--port", str(port),
                       "--role", guest_role, "--bytes", str(nbytes), "--seed", str(seed),
                       "--timeout", str(timeout), timeout=timeout + 30)
            h_out, _ = host.communicate(timeout=timeout + 30)
            stats = fw.stats()
        guest = json.loads(g.stdout) if g.stdout.strip() else {"error": g.stderr}
        hostr = json.loads(h_out) if h_out.strip() else {"error": "no output"}
        return guest, hostr, stats
    finally:
        host.kill()
        if os.path.exists(ready):
            os.unlink(ready)
