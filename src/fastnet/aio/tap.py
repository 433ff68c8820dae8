"""TAP devices as links: the guest is a network namespace (a container, or a test) whose
interface is a TAP device we hold the other end of.

With offloads the device is opened with a virtio_net_hdr and TSO/checksum offload on, so the
guest kernel hands over TCP super-frames of up to 64 KiB (the largest lever for throughput at
MTU 1500, see ENVIRONMENT.md); the link then needs framing 10 (the header's size) and the
network's engine must produce GSO frames: ``attach_tap`` passes both along.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from fastnet import _io

log = logging.getLogger("fastnet.tap")

KIND = "tap"
# framing (the virtio header's size) and offload depend on how the device was opened: they
# come with each attachment.
LINK_ARGS = {"kind": KIND, "link_kind": _io.LINK_TAP}
VNET_HDR_LEN = 10


@dataclass(frozen=True)
class TapDevice:
    fd: int
    ifname: str
    netns: str | None
    offload: bool

    @property
    def vnet_hdr(self) -> int:
        return VNET_HDR_LEN if self.offload else 0


def open_tap(name: str = "tap0", netns: str | None = None, *, offload: bool = False) -> TapDevice:
    """Open (creating it if absent) TAP ``name`` in the namespace at path ``netns`` (a
    /var/run/netns/NAME or /proc/PID/ns/net path; None: ours). The fd is non-blocking."""
    fd, ifname = _io.tap_open(name, netns, vnet_hdr=offload, offload=offload)
    return TapDevice(fd=fd, ifname=ifname, netns=netns, offload=offload)


def attach_tap(on_attach: Callable[..., Any], name: str = "tap0", netns: str | None = None, *,
               offload: bool = False):
    """Open a TAP and hand it to ``on_attach(fd, framing=, offload=, info=)`` (ownership of the
    fd passes with it; run it as ``LINK_ARGS`` says). Returns what on_attach returns."""
    dev = open_tap(name, netns, offload=offload)
    info = {"transport": KIND, "ifname": dev.ifname, "netns": netns, "offload": offload}
    log.info("tap: %s%s%s", dev.ifname, f" in {netns}" if netns else "", " with offloads" if offload else "")
    return on_attach(dev.fd, framing=dev.vnet_hdr, offload=offload, info=info)
