"""The stdio transport (gvproxy's -listen-stdio, used from WSL through gvforwarder): frames come
in on standard input and go out on standard output, each behind a 2-byte little-endian length
(HyperKit framing without the vmnet handshake).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

from fastnet import _io

log = logging.getLogger("fastnet.stdio")

KIND = "stdio"
LINK_ARGS = {"kind": KIND, "link_kind": _io.LINK_STREAM, "framing": -2}


def attach_stdio(on_attach: Callable[..., Any], *, stdin: int = 0, stdout: int = 1,
                 protect: bool | None = None):
    """Hand standard input and output to ``on_attach(fd, write_fd=..., info=...)`` as one link
    (run it as ``LINK_ARGS`` says; the link owns fd, write_fd stays open for the process's
    life). Both are made non-blocking: the C link reads and writes them in batches and must
    never stall the event loop.

    With ``protect`` (the default for fds 0 and 1) the link gets duplicates, and fd 1 is pointed
    at stderr and fd 0 at /dev/null: a stray print() or a library writing to stdout would
    otherwise corrupt the frame stream beyond recovery. Returns what on_attach returns."""
    if protect is None:
        protect = stdin == 0 and stdout == 1
    if protect:
        rfd, wfd = os.dup(stdin), os.dup(stdout)
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(devnull, stdin)
        finally:
            os.close(devnull)
        os.dup2(2, stdout)
    else:
        rfd, wfd = stdin, stdout
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    info = {"transport": KIND, "stdin": stdin, "stdout": stdout}
    log.info("stdio: serving a guest on standard input/output")
    return on_attach(rfd, write_fd=wfd, info=info)
