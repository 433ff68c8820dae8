"""Faults on a real guest link: loss 1 %, uncorrelated reorder 5 %, duplication 1 % and
corruption 0.1 % in both directions (fastnet's own seeded fault injector: this kernel has no
netem). 256 MiB each way must arrive byte-identical, with no reset, no stall over 1 s and at
least a quarter of the clean-link rate measured in the same run."""

from __future__ import annotations

import pytest

from tests.integration.netns import Netns, requires_netns
from tests.integration.test_engine_kernel import _transfer

pytestmark = [requires_netns, pytest.mark.netns]

FAULTS = {"drop": 0.01, "reorder": 0.05, "duplicate": 0.01, "corrupt": 0.001}


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["g2h", "h2g"])
def test_faulty_link_256mib_arrives_intact(free_port, direction):
    """Loss 1 %, uncorrelated reorder 5 %, duplication 1 % and corruption 0.1 % on both
    directions of the link: 256 MiB arrive byte-identical, with no reset, no stall over 1 s,
    and at least a quarter of the clean-link rate measured in the same run."""
    nbytes = 256 << 20
    results = {}
    for name, faults in (("clean", None), ("faulty", {"in": FAULTS, "out": FAULTS})):
        ns = Netns("f")
        try:
            guest, host, stats = _transfer(ns, {"faults": faults}, free_port(), direction, nbytes, seed=7)
        finally:
            ns.delete()
        recv, send = (host, guest) if direction == "g2h" else (guest, host)
        assert recv.get("error") is None and send.get("error") is None, (recv, send)
        assert recv["bytes"] == nbytes and recv["bad_bytes"] == 0, recv
        assert recv["sha256"] == send["sha256"], (recv, send)
        assert not recv["reset"] and not send["reset"]
        assert send["reply"].startswith(f"OK {nbytes} {send['sha256']}"), send
        results[name] = (recv, stats)
    faulty, fstats = results["faulty"]
    clean, _ = results["clean"]
    # The data direction carries ~200 000 frames, so 0.1 % corrupts some; the ACK direction
    # may carry too few for one.
    data_dir = "in" if direction == "g2h" else "out"
    assert fstats["faults"][data_dir]["corrupted"] > 0, fstats["faults"]
    assert fstats["engine"]["bad_csum"] > 0  # corrupted frames were caught, not delivered
    assert faulty["max_stall_s"] < 1.0, faulty
    assert faulty["gbps"] >= clean["gbps"] / 4, (faulty["gbps"], clean["gbps"])
