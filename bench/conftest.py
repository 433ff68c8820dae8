"""Fixtures over the corpora in _corpus.py, and the hooks that make bench/ work.

Benchmarks record the work of one round in ``benchmark.extra_info`` (``bytes`` and/or
``frames``); the hooks below turn that into GB/s and frames/s, in the JSON export and in a
short table after pytest-benchmark's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _corpus import CORPUS_SIZE, PAYLOAD_SIZES, join_frames, mixed_frames, payload_buffer
from fastnet import wire

_BENCH_DIR = Path(__file__).parent


@pytest.fixture(scope="session")
def payload_buffers() -> dict[int, bytes]:
    return {n: payload_buffer(n) for n in PAYLOAD_SIZES}


def _check_stream(stream: bytes, prefix: int, byteorder: str) -> None:
    # A corpus that fails to classify would time the error path, not the parser.
    summaries, consumed = wire.classify_stream(stream, prefix=prefix, byteorder=byteorder)
    assert len(summaries) == CORPUS_SIZE and consumed == len(stream)
    assert (summaries["status"] == 0).all()


@pytest.fixture(scope="session")
def frame_corpus() -> list[bytes]:
    return mixed_frames()


@pytest.fixture(scope="session")
def stream_2le(frame_corpus) -> bytes:
    s = join_frames(frame_corpus, 2, "little")
    _check_stream(s, 2, "little")
    return s


@pytest.fixture(scope="session")
def stream_4be(frame_corpus) -> bytes:
    s = join_frames(frame_corpus, 4, "big")
    _check_stream(s, 4, "big")
    return s


@pytest.fixture(scope="session")
def frame_spans(frame_corpus):
    """(buffer, offsets, lengths): the corpus concatenated without prefixes, as a TAP read
    loop or recvmmsg into one arena would leave it. uint32 arrays, so classify_spans does
    not convert them on every call."""
    lengths = np.fromiter((len(f) for f in frame_corpus), dtype=np.uint32, count=len(frame_corpus))
    offsets = np.zeros_like(lengths)
    np.cumsum(lengths[:-1], out=offsets[1:])
    return b"".join(frame_corpus), offsets, lengths


# ---------------------------------------------------------------------------------------------
# collection: bench_*.py files

def pytest_collect_file(file_path, parent):
    # The project's python_files stays test_*.py (tests/); here bench_*.py is the test module
    # pattern. Files named on the command line are collected by pytest itself already.
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(items):
    # Calibration: pytest-benchmark times one call, and if that call alone takes longer than
    # min_time (5 us) it keeps 1 iteration per round. The first call here is always cold
    # (page faults, cache misses), so sub-microsecond targets ended up timed one call at a
    # time, with the ~40 ns of the timer's own call in every round (fastnet's 64-byte checksum
    # read 132 ns instead of ~55 ns). Warmup makes calibration use the fastest of many calls.
    # Options given in a test's own benchmark marker still win. This hook sees every item of
    # the session (`pytest tests bench`), so it leaves the ones outside bench/ alone.
    for item in items:
        if item.path.is_relative_to(_BENCH_DIR) and "benchmark" in getattr(item, "fixturenames", ()):
            mark = item.get_closest_marker("benchmark")
            item.add_marker(pytest.mark.benchmark(**{"warmup": True, **(mark.kwargs if mark else {})}),
                            append=False)


# ---------------------------------------------------------------------------------------------
# derived throughput

def derived(extra_info: dict, median: float) -> dict:
    """GB/s and frames/s for one round's recorded work at the median round time."""
    out = {}
    if median > 0:
        if "bytes" in extra_info:
            out["GB/s"] = extra_info["bytes"] / median / 1e9
        if "frames" in extra_info:
            out["frames/s"] = extra_info["frames"] / median
    return out


def _verdict(extra_info: dict, d: dict) -> str:
    for key in ("GB/s", "frames/s"):
        target = extra_info.get(f"target {key}")
        if target is not None and key in d:
            return f"target {target:,.0f} {key}: {'met' if d[key] >= target else 'MISSED'}"
    return ""


def pytest_benchmark_update_json(config, benchmarks, output_json):
    for b in output_json["benchmarks"]:
        b["extra_info"].update(derived(b["extra_info"], b["stats"]["median"]))


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    # pytest-benchmark keeps its session on config (a private name, but the one its own hooks
    # use); without it, or with --benchmark-disable, there is nothing to derive.
    bs = getattr(terminalreporter.config, "_benchmarksession", None)
    rows = []
    for b in getattr(bs, "benchmarks", ()):
        if not b or b.has_error:
            continue
        d = derived(b.extra_info, b.stats.median)
        if d:
            rate = "  ".join(f"{v:14,.3f} GB/s" if k == "GB/s" else f"{v:14,.0f} frames/s" for k, v in d.items())
            rows.append(f"{b.fullname.split('::')[-1]:58s} {b.stats.median * 1e6:12.3f} us  {rate}  "
                        f"{_verdict(b.extra_info, d)}".rstrip())
    if rows:
        terminalreporter.write_sep("-", "derived throughput (at the median)")
        for row in rows:
            terminalreporter.write_line(row)
