"""The VM link transports in one place (each lives in its own module).

Every listener hands a connected, non-blocking descriptor to an injected ``on_attach(fd,
**kw)`` and says, in its module's ``LINK_ARGS``, how the network must run it (link kind and
framing). Wiring one to a ``VirtualNetwork`` is therefore the same for all::

    on_attach = lambda fd, **kw: network.attach(fd, **qemu.LINK_ARGS, **kw)

=========  =========================================  ===================  ==================
transport  where                                      framing              on_attach keywords
=========  =========================================  ===================  ==================
vmnet      unix stream socket, many VMs, handshake    2-byte LE (-2)       uuid, lease, info
qemu       unix or TCP stream socket, many VMs        4-byte BE (4)        info
vfkit      unix datagram socket, one VM               one frame/datagram   info
stdio      standard input / standard output           2-byte LE (-2)       write_fd, info
tap        a TAP device (optionally in a namespace)   virtio header or 0   framing, offload, info
=========  =========================================  ===================  ==================
"""

from __future__ import annotations

from fastnet.aio import qemu, stdio, tap, vfkit, vmnet
from fastnet.aio.qemu import QemuListener, parse_address
from fastnet.aio.stdio import attach_stdio
from fastnet.aio.tap import TapDevice, attach_tap, open_tap
from fastnet.aio.unixsock import SocketPathInUse
from fastnet.aio.vfkit import VfkitListener
from fastnet.aio.vmnet import VmnetServer

LINK_ARGS = {m.KIND: m.LINK_ARGS for m in (vmnet, qemu, vfkit, stdio, tap)}

__all__ = ["LINK_ARGS", "QemuListener", "SocketPathInUse", "TapDevice", "VfkitListener", "VmnetServer",
           "attach_stdio", "attach_tap", "open_tap", "parse_address"]
