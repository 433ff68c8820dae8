"""Smoke test of the end-to-end comparison (compare.py) with the tiniest settings: fastnet alone,
MTU 1500, every test once, 1-second iperf3 runs. Checks that the harness runs, measures
something in every test, cleans up, and writes its outputs; the numbers themselves are noise
on a CI machine. Needs root (network namespaces, TAP devices) and iperf3; skipped otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and TAP devices"),
    pytest.mark.skipif(not (shutil.which("iperf3") and shutil.which("ip") and shutil.which("ping")),
                       reason="needs iperf3, iproute2 and ping"),
]


def _namespaces() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def test_compare_smoke(tmp_path):
    before = _namespaces()
    argv = [sys.executable, os.path.join(HERE, "compare.py"), "--quick", "--stacks", "fastnet", "--mtus", "1500",
            "--duration", "1", "--runs", "1", "--conns", "20", "--rr", "50", "--pings", "3",
            "--rr-max-seconds", "20", "--budget-s", "120", "--out", str(tmp_path)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "| fastnet | 1500 |" in r.stdout

    d = json.loads((tmp_path / "results.json").read_text())
    (res,) = d["results"]
    assert res["family"] == "fastnet" and res["mtu"] == 1500
    assert res["errors"] == [] and res["skipped"] == []
    t = res["tests"]
    assert set(t) == {"ping", "conn", "rr", "g2h", "h2g", "fwd", "fwd_conn"}
    assert t["ping"]["replies"] > 0
    for key in ("g2h", "h2g", "fwd"):
        assert t[key]["errors"] == [] and t[key]["gbps"] > 0, t[key]
        assert t[key]["cores"] is not None
    assert t["conn"]["conns_ok"] == 20 and t["conn"]["conn_per_s"] > 0
    assert t["fwd_conn"]["conns_ok"] == 20
    assert t["rr"]["rr_done"] == 50
    assert (tmp_path / "results.md").read_text().startswith("# fastnet end-to-end comparison")
    # namespaces gone (others' may come and go meanwhile: only ours are checked)
    assert not [n for n in _namespaces() - before if n.startswith("fnbe")]
