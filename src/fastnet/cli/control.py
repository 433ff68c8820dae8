"""Published ports and the control API from the command line.

The daemons (``serve``, ``run``) take ``--api [PATH]``, ``--ports-state FILE`` and
``-p/--publish SPEC`` (``start_control``). The client commands talk to a running daemon's API:

- ``fastnet expose [--udp] [HOSTADDR:]HOSTPORT:GUESTADDR:GUESTPORT`` (or ``/PATH:GUESTADDR:GUESTPORT``
  for a unix socket; ``HOSTPORT:GUESTPORT`` for the only guest; HOSTPORT 0 picks a free port);
- ``fastnet unexpose [--udp] [--close-connections] [HOSTADDR:]HOSTPORT[:...] | --id N``;
- ``fastnet ports``, ``fastnet flows``, ``fastnet stats``.

Each takes ``--api PATH`` (default: fastnet.api.client.default_api_path()) and prints a table,
or the API's JSON with ``--json``.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from fastnet.api.client import ApiClient, ApiClientError, default_api_path
from fastnet.errors import ConfigError
from fastnet.services.ports import PortError, PublishedPorts, parse_publish

log = logging.getLogger("fastnet.control")


# -- the daemons' side -------------------------------------------------------------------------

def add_control_options(p, *, state_by_default: bool = True) -> None:
    g = p.add_argument_group("control API and published ports")
    g.add_argument("--api", metavar="PATH", nargs="?", const=default_api_path(),
                   help="serve the control API (HTTP/JSON, gvproxy's routes too) on this unix socket, mode 0600; "
                        f"without PATH: {default_api_path()} ($FASTNET_API, else /run/fastnet/api.sock for root, "
                        "$XDG_RUNTIME_DIR/fastnet/api.sock, /tmp/fastnet-UID/api.sock)")
    g.add_argument("--ports-state", metavar="FILE",
                   help="keep the published ports in FILE and publish them again at start" +
                        (" (default with --api: the API path with .ports.json for its extension)" if state_by_default
                         else "") + "; 'none' for no file")
    g.add_argument("-p", "--publish", metavar="SPEC", action="append", default=[],
                   help="publish a TCP port: [HOSTADDR:]HOSTPORT:GUESTADDR:GUESTPORT, HOSTPORT:GUESTPORT for the "
                        "only guest, /PATH:GUESTADDR:GUESTPORT for a unix socket (repeatable)")
    g.add_argument("--publish-udp", metavar="SPEC", action="append", default=[],
                   help="publish a UDP port, same syntax (repeatable)")


def state_file_for(args, state_by_default: bool) -> str | None:
    state = args.ports_state
    if state is None and args.api and state_by_default:
        state = os.path.splitext(args.api)[0] + ".ports.json"
    return None if state in (None, "", "none") else state


def start_control(args, network, loop, *, proxy_source=None, default_guest=None,
                  state_by_default: bool = True) -> tuple[PublishedPorts, list]:
    """Published ports (restored from the state file, then -p/--publish) and the API server;
    returns the ports and their close callbacks. Call before the loop runs."""
    from fastnet.api.http import SocketPathInUse
    from fastnet.api.routes import serve_api

    ports = PublishedPorts(network, state_file=state_file_for(args, state_by_default), default_guest=default_guest)
    closers = [ports.close]
    for problem in ports.restore():
        log.warning("%s", problem)
    try:
        for proto, specs in (("tcp", args.publish), ("udp", args.publish_udp)):
            for text in specs:
                ports.add(parse_publish(text, proto), origin="command line")
        if args.api:
            server = serve_api(args.api, network, ports, loop, proxy_source=proxy_source)
            closers.insert(0, server.close)
    except PortError as e:
        ports.close()
        raise ConfigError(str(e)) from None
    except SocketPathInUse as e:
        ports.close()
        raise ConfigError(f"--api {args.api}: {e.strerror}") from None
    except FileExistsError:
        ports.close()
        raise ConfigError(f"--api {args.api}: exists and is not a socket") from None
    return ports, closers


# -- the client commands -----------------------------------------------------------------------

def _client(args) -> ApiClient:
    return ApiClient(args.api)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def table(rows: list[list], header: list[str]) -> str:
    cells = [[str(c) for c in header]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def _fmt_port(p: dict) -> list:
    conns = p["connections"]
    target = f"{p['guest_addr'] or '(default)'}:{p['guest_port']}"
    host = ", ".join(p["listening"]) if p["listening"] else p["local"]
    return [p["id"], p["proto"], host, target, f"{conns['active']}/{conns['accepted']}", p["origin"]]


PORT_HEADER = ["ID", "PROTO", "HOST", "GUEST", "ACTIVE/TOTAL", "ORIGIN"]


class Command:
    """One client subcommand; ``SUBCOMMANDS`` in fastnet.cli holds these like modules."""

    def __init__(self, name: str, help_text: str, setup, action):
        self.name = name
        self.help = help_text
        self.setup = setup
        self.action = action

    def add_parser(self, sub) -> None:
        p = sub.add_parser(self.name, help=self.help, description=self.help)
        p.add_argument("--api", metavar="PATH", default=default_api_path(),
                       help=f"the daemon's API socket (default {default_api_path()})")
        p.add_argument("--json", action="store_true", help="print the API's JSON answer")
        self.setup(p)
        p.set_defaults(run=self.run)

    def run(self, args) -> int:
        try:
            return self.action(args) or 0
        except ApiClientError as e:
            print(f"fastnet {self.name}: error: {e}", file=sys.stderr)
            return 1


def _setup_expose(p) -> None:
    p.add_argument("spec", metavar="[HOSTADDR:]HOSTPORT:GUESTADDR:GUESTPORT",
                   help="HOSTADDR defaults to 127.0.0.1 (and [::1]); HOSTPORT 0 picks a free port; "
                        "/PATH:GUESTADDR:GUESTPORT publishes a unix socket")
    p.add_argument("--udp", action="store_true", help="a UDP port (default TCP)")


def _expose(args) -> int:
    try:
        parse_publish(args.spec, "udp" if args.udp else "tcp")  # a typo is reported before any request
    except PortError as e:
        raise ConfigError(str(e)) from None
    port = _client(args).call("POST", "/v1/ports", {"spec": args.spec, "proto": "udp" if args.udp else "tcp"})
    if args.json:
        _print_json(port)
    else:
        print(table([_fmt_port(port)], PORT_HEADER))
    return 0


def _setup_unexpose(p) -> None:
    p.add_argument("spec", nargs="?", metavar="[HOSTADDR:]HOSTPORT[:GUESTADDR:GUESTPORT]",
                   help="the forward's host side (or the whole spec it was exposed with, or its socket path)")
    p.add_argument("--id", type=int, help="the forward's id (fastnet ports lists them)")
    p.add_argument("--udp", action="store_true", help="a UDP port (default TCP)")
    p.add_argument("--close-connections", action="store_true",
                   help="also reset its open connections (default: they run to their end)")


def _unexpose(args) -> int:
    if (args.spec is None) == (args.id is None):
        raise ConfigError("give the forward's host side or --id N")
    body: dict = {"close_connections": args.close_connections}
    if args.id is not None:
        body["id"] = args.id
    else:
        body.update(spec=args.spec, proto="udp" if args.udp else "tcp")
    port = _client(args).call("POST", "/v1/ports/remove", body)
    if args.json:
        _print_json(port)
    else:
        print(f"removed {port['proto']} forward {port['id']} ({', '.join(port['listening']) or port['local']})")
    return 0


def _ports(args) -> int:
    ports = _client(args).call("GET", "/v1/ports")
    if args.json:
        _print_json(ports)
    elif ports:
        print(table([_fmt_port(p) for p in ports], PORT_HEADER))
    else:
        print("no published ports")
    return 0


def _setup_flows(p) -> None:
    p.add_argument("--proto", choices=("tcp", "udp", "icmp"), help="only flows of this protocol")
    p.add_argument("--published", action="store_true", help="only flows opened through published ports")


def _human(n: int) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def _flows(args) -> int:
    flows = _client(args).call("GET", "/v1/flows")
    flows = [f for f in flows if (not args.proto or f["proto"] == args.proto)
             and (not args.published or f["forward"] is not None)]
    if args.json:
        _print_json(flows)
        return 0
    rows = [[f["proto"], f["state"], f["link"], f["guest"], f["remote"], f["direction"], f["forward"],
             _human(f["bytes_to_guest"]), _human(f["bytes_from_guest"]),
             f"{f['rtt_ms']:.2f}ms" if "rtt_ms" in f else None] for f in flows]
    if rows:
        print(table(rows, ["PROTO", "STATE", "LINK", "GUEST", "REMOTE", "DIR", "FWD", "TO-GUEST", "FROM-GUEST", "RTT"]))
    else:
        print("no flows")
    return 0


def _stats(args) -> int:
    st = _client(args).call("GET", "/v1/stats")
    if args.json:
        _print_json(st)
        return 0
    rows = []
    for p in st["network"]["ports"]:
        link, tcp, udp = p["link"], p["tcp"], p["udp"]
        rows.append([p["name"], p["kind"], link.get("rx_frames"), link.get("tx_frames"), _human(link.get("rx_bytes", 0)),
                     _human(link.get("tx_bytes", 0)), tcp.get("flows_active"), tcp.get("flows_opened"),
                     udp.get("flows_active"), tcp.get("rexmits")])
    print(f"fastnet {st['version']}, up {st['uptime_s']:.0f} s")
    if rows:
        print(table(rows, ["LINK", "KIND", "FRAMES-IN", "FRAMES-OUT", "BYTES-IN", "BYTES-OUT", "TCP", "TCP-TOTAL",
                           "UDP", "REXMITS"]))
    else:
        print("no links attached")
    dns = st["network"].get("dns")
    if dns:
        print(f"dns: {dns.get('queries', 0)} queries, rcodes {dns.get('rcodes', {})}")
    pub = st.get("published", [])
    print(f"published ports: {len(pub)}, connections accepted {sum(p['connections']['accepted'] for p in pub)}, "
          f"open {sum(p['connections']['active'] for p in pub)}")
    return 0


COMMANDS = [
    Command("expose", "publish a port of a guest on the host (through a running daemon's API)", _setup_expose, _expose),
    Command("unexpose", "stop publishing a port", _setup_unexpose, _unexpose),
    Command("ports", "list the published ports", lambda p: None, _ports),
    Command("flows", "list the flows, like ss", _setup_flows, _flows),
    Command("stats", "show the daemon's counters", lambda p: None, _stats),
]
