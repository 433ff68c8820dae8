"""Fixtures shared by every test directory. Layer-specific ones live in that layer's conftest."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Deterministic by default: the same examples on every run and every machine (no example
# database, seed derived from each test), and no deadline, because `make test` runs the
# suite again on a -O0 debug build. HYPOTHESIS_PROFILE=explore searches afresh.
settings.register_profile(
    "fastnet",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fastnet"))

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True


@pytest.fixture
def pcap_on_failure(request, tmp_path_factory):
    """Call it with each frame a test handles; if the test fails, the frames are written to a
    .pcap (path printed in the report) for a look in tshark or Wireshark."""
    frames: list[bytes] = []
    yield lambda frame: frames.append(bytes(frame))
    if frames and request.node.stash.get(_FAILED, False):
        from fastnet.pcap import PcapWriter

        path = tmp_path_factory.mktemp("failed") / f"{request.node.name[:60]}.pcap"
        with PcapWriter(path) as w:
            for i, frame in enumerate(frames):
                w.write(frame, ts=float(i))
        print(f"frames of the failed test: {path}")
