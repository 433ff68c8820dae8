"""rootlesskit ``--net=slirp4netns --port-driver=slirp4netns`` with fastnet as the slirp4netns
binary (a wrapper script that records its command line and execs ``fastnet slirp4netns "$@"``).

Inside rootlesskit's namespaces a web server listens on port 80 of the child and the host
fetches it through ``-p 127.0.0.1:PORT:80/tcp`` (rootlesskit's port driver calls fastnet's
API socket with add_hostfwd); the child also fetches a page from the host's loopback through
the gateway 10.0.2.2. rootlesskit helpers: tests/integration/rootless.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from tests.integration.netns import need, requires_netns
from tests.integration.rootless import (driver_unavailable, ensure_subids, fastnet_argv, kill_group,
                                        read_wrapper_log, rootlesskit_missing, write_wrapper)

pytestmark = [requires_netns, pytest.mark.netns]

CHILD = r'''
import http.server, os, sys, threading, time, urllib.request
os.chdir(sys.argv[1])
srv = http.server.ThreadingHTTPServer(("0.0.0.0", 80), http.server.SimpleHTTPRequestHandler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
# The host's loopback, through the gateway (slirp4netns's host loopback).
for _ in range(100):
    try:
        print("host says:", urllib.request.urlopen(f"http://10.0.2.2:{sys.argv[2]}/host.txt", timeout=5).read().decode().strip(), flush=True)
        break
    except OSError as e:
        err = e
        time.sleep(0.1)
else:
    print("host unreachable:", err, flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(sys.argv[3]) and time.monotonic() < deadline:
    time.sleep(0.05)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rootlesskit_slirp4netns_with_the_slirp4netns_port_driver():
    reason = rootlesskit_missing() or driver_unavailable("slirp4netns")
    if reason:
        pytest.skip(reason)
    need("curl")
    ensure_subids()
    work = tempfile.mkdtemp(prefix="fnrks")
    web = proc = None
    try:
        www = os.path.join(work, "www")
        os.makedirs(www)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write("served inside rootlesskit\n")
        with open(os.path.join(work, "host.txt"), "w") as f:
            f.write("from the host's loopback\n")
        wport = free_port()
        web = subprocess.Popen([sys.executable, "-m", "http.server", str(wport), "--bind", "127.0.0.1", "--directory",
                                work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = os.path.join(work, "argv.log")
        binary = write_wrapper(os.path.join(work, "slirp4netns"), fastnet_argv("slirp4netns"), log)
        hport = free_port()
        done = os.path.join(work, "done")
        state = os.path.join(work, "state")
        argv = ["rootlesskit", "--net=slirp4netns", f"--slirp4netns-binary={binary}", "--port-driver=slirp4netns",
                "-p", f"127.0.0.1:{hport}:80/tcp", "--state-dir", state,
                sys.executable, "-c", CHILD, www, str(wport), done]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            r = subprocess.run(["curl", "-sS", "-m", "5", f"http://127.0.0.1:{hport}/"], capture_output=True,
                               text=True, timeout=15)
            if r.returncode == 0 and r.stdout:
                body = r.stdout
                break
            time.sleep(0.2)
        open(done, "w").close()
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            out, err = proc.communicate()
        assert body == "served inside rootlesskit\n", (body, proc.returncode, err[-3000:])
        assert proc.returncode == 0, err[-3000:]
        assert "host says: from the host's loopback" in out, (out, err[-3000:])
        calls = read_wrapper_log(log)
        serve = [c for c in calls if c != ["--help"]]
        assert len(serve) == 1, calls
        # rootlesskit's command line: --mtu 65520 -r 3 --api-socket STATE/.s4nn.sock PID tap0.
        args = serve[0]
        assert args[:4] == ["--mtu", "65520", "-r", "3"] and args[-1] == "tap0" and "--api-socket" in args, args
        print(f"rootlesskit ran {binary} {' '.join(args)}; child said: {out.strip()}")
    finally:
        if proc is not None:
            kill_group(proc)
        if web is not None:
            web.kill()
            web.wait(5)
        subprocess.run(["rm", "-rf", work])
