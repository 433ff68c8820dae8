"""``fastnet run [options] -- CMD [ARGS...]``: run CMD in its own network namespace (and user
namespace when not root) whose network is served by fastnet, and exit with CMD's status.

The command sees a TAP device with the first guest address, a default route via the gateway,
the gateway as its DNS server (fastnet answers the host aliases there) and, as a fallback for
programs that never ask DNS, the aliases in its own /etc/hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile

from fastnet.aio import tap
from fastnet.aio.namespace import Sandbox
from fastnet.cli.common import add_network_options, setup_logging
from fastnet.cli.control import add_control_options, start_control
from fastnet.cli.serve import start_network
from fastnet.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a command in a new network namespace served by fastnet")
    p.add_argument("--tap-offload", action=argparse.BooleanOptionalAction, default=True,
                   help="TAP with TSO/checksum offload (default on)")
    add_network_options(p)
    add_control_options(p, state_by_default=False)
    p.add_argument("cmd", nargs="+", metavar="CMD", help="the command (after --)")
    p.set_defaults(run=run)


def run(args) -> int:
    setup_logging(args.verbose)
    if not args.cmd:
        raise ConfigError("no command given (fastnet run -- CMD ...)")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    network = start_network(args, loop)
    cfg = network.config
    lease = network.pool.allocate(uuid="fastnet-run")
    tmp = tempfile.TemporaryDirectory(prefix="fastnet-run-")
    resolv = os.path.join(tmp.name, "resolv.conf")
    with open(resolv, "w") as f:
        f.write(f"nameserver {cfg.dns_server}\n" + (f"search {' '.join(cfg.search)}\n" if cfg.search else ""))
    hosts = os.path.join(tmp.name, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
        if cfg.host_alias is not None:
            f.write(f"{cfg.host_alias} {' '.join(cfg.dns_service.host_names)}\n")
        f.write(f"{cfg.gateway} {' '.join(cfg.dns_service.gateway_names)}\n")
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    try:
        box = Sandbox(cmd, mtu=cfg.mtu, ip=str(lease.ip), prefix=cfg.subnet.prefixlen, gateway=str(cfg.gateway),
                      mac=lease.mac, offload=args.tap_offload, resolv_conf=resolv, hosts=hosts)
    except OSError as e:
        tmp.cleanup()
        raise OSError(e.errno, f"cannot create the namespace: {e.strerror or e}") from None
    network.attach(box.tap_fd, **tap.LINK_ARGS, framing=tap.VNET_HDR_LEN if args.tap_offload else 0,
                   offload=args.tap_offload, uuid="fastnet-run", lease=lease, name="run")
    try:
        control = start_control(args, network, loop, default_guest=lease.ip, state_by_default=False)[1]
    except BaseException:
        os.kill(box.pid, signal.SIGKILL)
        box.wait()
        tmp.cleanup()
        raise
    status = {"code": None}
    pidfd = os.pidfd_open(box.pid)

    def child_exited():
        loop.remove_reader(pidfd)
        status["code"] = box.wait()
        for close in control:
            close()
        network.shutdown()
        loop.call_later(0.05, loop.stop)

    loop.add_reader(pidfd, child_exited)
    box.start()

    def stop():
        # A signal to us goes on to the command; we exit when it does.
        try:
            os.kill(box.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    loop.run_forever()
    os.close(pidfd)
    loop.close()
    tmp.cleanup()
    err = box.exec_error()
    if err:
        print(err, file=sys.stderr)
    code = status["code"]
    if code is None:
        return 1
    # Killed by signal N (waitstatus_to_exitcode gives -N): exit 128 + N, as shells report it.
    return 128 - code if code < 0 else code
