"""Echo server and connection-rate / request-response client for the end-to-end benchmark.

Run inside a namespace by compare.py (``ip netns exec NS python rr.py ...``); stdlib only, so it
runs with any Python 3.

    rr.py serve  --bind ADDR --port P [--max-seconds S]
        single-threaded selectors loop that echoes every byte back; exits after S seconds.
    rr.py client --host H --port P --conns N --rr M [--max-seconds S]
        N sequential connections (connect, 1 byte there and back, close), then M one-byte
        round trips on one TCP_NODELAY connection. One JSON line on stdout. Both loops stop at
        the count or at S seconds, whichever comes first. Besides the plain rates (count / total
        time), a robust rate is given for each: connections per second from the median time of a
        block of 100 connections, round trips per second from the median round trip, so that a
        burst of load from elsewhere on a shared machine moves them less.
    rr.py probe  --host H --port P [--timeout S]
        exit 0 as soon as one echo round trip works (readiness check).
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time


BLOCK = 100  # connections per block for the robust connection rate


def serve(a) -> int:
    sel = selectors.DefaultSelector()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.bind, a.port))
    ls.listen(4096)
    ls.setblocking(False)
    sel.register(ls, selectors.EVENT_READ)
    end = time.monotonic() + a.max_seconds
    while time.monotonic() < end:
        for key, _ in sel.select(1.0):
            s = key.fileobj
            if s is ls:
                try:
                    c, _ = ls.accept()
                except OSError:
                    continue
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                try:
                    s.sendall(data)  # small echoes: the socket buffer always has room
                    continue
                except OSError:
                    pass
            sel.unregister(s)
            s.close()
    return 0


def _once(host: str, port: int, timeout: float) -> None:
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise OSError("echo mismatch")
    finally:
        s.close()


def client(a) -> int:
    out: dict = {"conns_target": a.conns, "rr_target": a.rr}
    end = time.monotonic() + a.max_seconds
    ok = fail = 0
    errors: dict[str, int] = {}
    blocks: list[float] = []
    t0 = tb = time.perf_counter()
    for i in range(a.conns):
        if time.monotonic() > end:
            break
        try:
            _once(a.host, a.port, 5.0)
            ok += 1
        except OSError as e:
            fail += 1
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            if fail > 20:
                break
        if (i + 1) % BLOCK == 0:
            t = time.perf_counter()
            blocks.append(t - tb)
            tb = t
    dt = time.perf_counter() - t0
    blocks.sort()
    out.update(conns_ok=ok, conns_fail=fail, conn_errors=errors, conn_s=round(dt, 4),
               conn_per_s=round(ok / dt, 1) if ok and dt > 0 else 0.0,
               conn_per_s_robust=round(BLOCK / blocks[len(blocks) // 2], 1) if blocks and not fail else None)
    lat: list[float] = []
    dt = 0.0
    if a.rr:
        try:
            s = socket.create_connection((a.host, a.port), timeout=5.0)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t0 = time.perf_counter()
            for _ in range(a.rr):
                if time.monotonic() > end:
                    break
                t = time.perf_counter()
                s.sendall(b"x")
                if s.recv(1) != b"x":
                    break
                lat.append(time.perf_counter() - t)
            dt = time.perf_counter() - t0
            s.close()
        except OSError as e:
            out["rr_error"] = str(e)
    lat.sort()
    out.update(rr_done=len(lat), rr_s=round(dt, 4), rr_per_s=round(len(lat) / dt, 1) if lat and dt > 0 else 0.0,
               rr_p50_us=round(lat[len(lat) // 2] * 1e6, 1) if lat else None,
               rr_p99_us=round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e6, 1) if lat else None,
               rr_per_s_robust=round(1 / lat[len(lat) // 2], 1) if lat else None)
    print(json.dumps(out), flush=True)
    return 0


def probe(a) -> int:
    end = time.monotonic() + a.timeout
    err: Exception | None = None
    while time.monotonic() < end:
        try:
            _once(a.host, a.port, 2.0)
            return 0
        except OSError as e:
            err = e
            time.sleep(0.1)
    print(f"probe {a.host}:{a.port}: {err}", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", default="0.0.0.0")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--max-seconds", type=float, default=3600)
    c = sub.add_parser("client")
    c.add_argument("--host", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--conns", type=int, default=2000)
    c.add_argument("--rr", type=int, default=10000)
    c.add_argument("--max-seconds", type=float, default=60)
    q = sub.add_parser("probe")
    q.add_argument("--host", required=True)
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--timeout", type=float, default=10)
    a = p.parse_args(argv)
    return {"serve": serve, "client": client, "probe": probe}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
