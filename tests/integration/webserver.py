"""A small web server for the proxy tests, run inside the namespace that plays the internet:
plain HTTP and HTTPS on the addresses given. Each answer names the request (method, path,
Host, the Via header a proxy adds, TLS or not) so a test can tell how it travelled.

    python webserver.py --cert C --key K 10.0.0.2:80 10.0.0.2:443:tls ...

Prints "ready" once every socket listens; runs until killed.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # a stuck client must not pin a thread forever

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _answer(self):
        body = (f"{self.command} {self.path} host={self.headers.get('Host', '-')} "
                f"via={self.headers.get('Via', '-')} tls={'yes' if self.server.tls else 'no'}\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _answer


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("listen", nargs="+", help="ADDR:PORT or ADDR:PORT:tls")
    args = p.parse_args()
    ctx = None
    if args.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
    threads = []
    for spec in args.listen:
        addr, port, *tls = spec.split(":")
        httpd = ThreadingHTTPServer((addr, int(port)), Handler)
        httpd.daemon_threads = True
        httpd.tls = bool(tls)
        if tls:
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        t = threading.Thread(target=httpd.serve_forever, daemon=True)
        t.start()
        threads.append(t)
    print("ready", flush=True)
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
