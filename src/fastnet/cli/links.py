"""Start the listeners named on the command line (vmnet, qemu, vfkit, stdio) on a network.

Each transport (fastnet.aio.*) hands a connected descriptor to ``on_attach``; its
``LINK_ARGS`` say how the network runs it. vmnet guests get their address and MAC from the
network's pool during the handshake (the same UUID gets the same ones again)."""

from __future__ import annotations

from fastnet.aio import listeners
from fastnet.errors import ConfigError


def start_listeners(args, network, loop) -> list:
    """Start every requested listener; returns their close callbacks."""
    closers: list = []

    def attach_as(kind):
        return lambda fd, **kw: network.attach(fd, **listeners.LINK_ARGS[kind], **kw)

    def allocate(uuid, preferred):  # an AddressError's text is the vmnet Disconnect reason
        return network.pool.allocate(uuid=uuid, preferred=preferred)

    try:
        for path in args.listen_vmnet:
            server = listeners.VmnetServer(path, allocate=allocate, on_attach=attach_as("vmnet"),
                                           mtu=network.config.mtu, loop=loop).start()
            closers.append(server.close)
        for address in args.listen_qemu:
            q = listeners.QemuListener(address, on_attach=attach_as("qemu"), loop=loop).start()
            closers.append(q.close)
        if args.listen_vfkit:
            v = listeners.VfkitListener(args.listen_vfkit, on_attach=attach_as("vfkit"), loop=loop).start()
            closers.append(v.close)
        if args.listen_stdio:
            listeners.attach_stdio(attach_as("stdio"))
    except listeners.SocketPathInUse as e:
        for close in closers:
            close()
        raise ConfigError(str(e)) from None
    except ValueError as e:  # a malformed --listen-qemu address
        for close in closers:
            close()
        raise ConfigError(str(e)) from None
    return closers
