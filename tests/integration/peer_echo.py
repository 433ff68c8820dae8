"""A server for the published-port tests, run inside the guest namespace: it tells each client
the address it sees the client at, then echoes.

    python peer_echo.py tcp ADDR:PORT   # "peer IP PORT\n" to each new connection, then echo
    python peer_echo.py udp ADDR:PORT   # each datagram answered with b"peer IP PORT " + datagram

Prints "ready" once listening; runs until killed.
"""

from __future__ import annotations

import socket
import sys
import threading


def serve_tcp(sock: socket.socket) -> None:
    def client(c: socket.socket, addr) -> None:
        with c:
            c.settimeout(60)  # a stuck test must not pin a thread forever
            try:
                c.sendall(f"peer {addr[0]} {addr[1]}\n".encode())
                while True:
                    data = c.recv(65536)
                    if not data:
                        return
                    c.sendall(data)
            except OSError:
                return

    while True:
        c, addr = sock.accept()
        threading.Thread(target=client, args=(c, addr), daemon=True).start()


def serve_udp(sock: socket.socket) -> None:
    while True:
        data, addr = sock.recvfrom(65535)
        sock.sendto(f"peer {addr[0]} {addr[1]} ".encode() + data, addr)


def main() -> int:
    proto, where = sys.argv[1], sys.argv[2]
    host, _, port = where.rpartition(":")
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    if proto == "tcp":
        sock.listen(128)
    print("ready", flush=True)
    (serve_tcp if proto == "tcp" else serve_udp)(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
