#!/usr/bin/env python3
"""Move N seeded random bytes over one TCP connection and check every byte.

  serve   --port P --role recv|send --bytes N --seed S --timeout T --ready FILE
  connect --host H --port P --role send|recv --bytes N --seed S --timeout T

The receiver compares what arrives with the expected stream, then replies "OK <count>
<sha256>" after EOF; the sender reads that reply. Each side prints one JSON object: bytes,
sha256, seconds, gbps, max_stall_s (longest gap without progress, from the first byte on),
reset, timeout, error.
Standalone (stdlib only), so it runs inside a guest namespace with the system python.
"""

import argparse
import errno
import hashlib
import json
import os
import random
import socket
import sys
import time

CHUNK = 1 << 20
RESETS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}


def data_for(n, seed):
    r = random.Random(seed)
    return b"".join(r.randbytes(min(CHUNK, n - i)) for i in range(0, n, CHUNK))


def send_side(sock, data, deadline):
    out = {"role": "send", "bytes": 0, "reset": False, "timeout": False, "error": None}
    view = memoryview(data)
    sock.settimeout(1.0)
    t0 = last = time.monotonic()
    stall = 0.0
    try:
        while out["bytes"] < len(data):
            if time.monotonic() > deadline:
                out["timeout"] = True
                break
            try:
                n = sock.send(view[out["bytes"]:out["bytes"] + CHUNK])
            except socket.timeout:
                continue
            now = time.monotonic()
            stall = max(stall, now - last)
            last = now
            out["bytes"] += n
        out["seconds"] = time.monotonic() - t0
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(256)
            except socket.timeout:
                continue
            if not chunk:
                break
            reply += chunk
        out["reply"] = reply.decode(errors="replace").strip()
    except OSError as e:
        out["reset"] = e.errno in RESETS
        out["error"] = str(e)
    out["max_stall_s"] = stall
    out["sha256"] = hashlib.sha256(data).hexdigest()
    return out


def recv_side(sock, expected, deadline):
    out = {"role": "recv", "bytes": 0, "bad_bytes": 0, "reset": False, "timeout": False, "error": None}
    h = hashlib.sha256()
    sock.settimeout(0.5)
    t0 = last = time.monotonic()
    stall = 0.0
    started = False  # stalls count from the first byte: the handshake is not the transfer
    buf = bytearray(CHUNK)
    try:
        while True:
            if time.monotonic() > deadline:
                out["timeout"] = True
                break
            try:
                n = sock.recv_into(buf)
            except socket.timeout:
                continue
            now = time.monotonic()
            if started:
                stall = max(stall, now - last)
            else:
                t0 = now
            started = True
            last = now
            if n == 0:
                break
            got = bytes(buf[:n])
            pos = out["bytes"]
            want = expected[pos:pos + n]
            if got != want:
                out["bad_bytes"] += sum(a != b for a, b in zip(got, want)) + max(0, n - len(want))
            h.update(got)
            out["bytes"] += n
        out["seconds"] = last - t0
        out["sha256"] = h.hexdigest()
        sock.sendall(f"OK {out['bytes']} {out['sha256']}\n".encode())
        sock.close()
    except OSError as e:
        out["reset"] = e.errno in RESETS
        out["error"] = str(e)
    out["max_stall_s"] = stall
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["serve", "connect"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--role", choices=["send", "recv"], required=True)
    p.add_argument("--bytes", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--ready")
    a = p.parse_args()
    data = data_for(a.bytes, a.seed)
    if a.mode == "serve":
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((a.host, a.port))
        ls.listen(1)
        if a.ready:
            with open(a.ready, "w") as f:
                f.write("ready")
        ls.settimeout(a.timeout)
        sock, _ = ls.accept()
    else:
        sock = socket.create_connection((a.host, a.port), timeout=a.timeout)
    deadline = time.monotonic() + a.timeout
    out = send_side(sock, data, deadline) if a.role == "send" else recv_side(sock, data, deadline)
    if out.get("seconds"):
        out["gbps"] = out["bytes"] * 8 / out["seconds"] / 1e9
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
