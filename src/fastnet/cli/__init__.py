"""The ``fastnet`` command: argparse subcommands, each in its own module.

Every subcommand module defines ``add_parser(subparsers)`` and a ``run(args) -> int``. Errors
in the command line print one line and exit with status 2 (argparse's convention).
"""

from __future__ import annotations

import argparse
import sys

from fastnet import __version__
from fastnet.cli import control as _control
from fastnet.cli import inspect as _inspect
from fastnet.cli import proxyenv as _proxyenv
from fastnet.cli import run as _run
from fastnet.cli import serve as _serve
from fastnet.cli import slirp4netns as _slirp4netns
from fastnet.cli import vpnkit as _vpnkit

SUBCOMMANDS = [_serve, _run, _inspect, _proxyenv, _vpnkit, *_control.COMMANDS, _slirp4netns]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in exactly one line."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fastnet", description="User-space network stack for VMs and containers.")
    p.add_argument("--version", action="version", version=f"fastnet {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in SUBCOMMANDS:
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except (OSError, ValueError) as e:
        msg = e.strerror if isinstance(e, OSError) and e.strerror and not e.filename else str(e)
        print(f"fastnet {args.command}: error: {msg}", file=sys.stderr)
        return 1
