"""csrc under AddressSanitizer and UndefinedBehaviorSanitizer, with no Python in between.

The parser's contract is "never an out-of-bounds read": this builds csrc and a C driver with
the sanitizers and feeds it every sample frame truncated at every length, thousands of seeded
mutations of each, random byte strings and random streams (fuzz_parse.c).
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from fastnet.cli.inspect import sample_frames

ROOT = pathlib.Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
SOURCES = ["fn_checksum.c", "fn_wire.c", "fn_build.c"]


def _golden_frames() -> list[bytes]:
    frames = list(sample_frames())
    import importlib  # noqa: PLC0415

    for name in ("tests.data.frames", "data.frames"):  # the richer golden corpus, when present
        try:
            golden = importlib.import_module(name)
            break
        except ImportError:
            continue
    else:
        return frames
    frames += [v for k, v in vars(golden).items() if k.isupper() and isinstance(v, bytes)]
    return frames


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> pathlib.Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("csan") / "fuzz_parse"
    cmd = [cc, "-std=c99", "-D_GNU_SOURCE", "-O1", "-g", "-fno-omit-frame-pointer",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-Wall", "-Wextra",
           "-Wno-unused-parameter", "-Werror", f"-I{CSRC}", str(pathlib.Path(__file__).with_name("fuzz_parse.c")),
           *[str(CSRC / s) for s in SOURCES], "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "sanitize" in proc.stderr and "cannot find" in proc.stderr:
        pytest.skip("the compiler has no sanitizer runtime")
    assert proc.returncode == 0, proc.stderr
    return out


def test_csrc_never_reads_out_of_bounds(driver, tmp_path):
    corpus = tmp_path / "frames.bin"
    corpus.write_bytes(b"".join(len(f).to_bytes(4, "big") + f for f in _golden_frames()))
    proc = subprocess.run([str(driver), str(corpus)], capture_output=True, text=True, timeout=300,
                          env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1", "UBSAN_OPTIONS": "halt_on_error=1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok frames=")


def test_csrc_compiles_warning_free_as_c99_pedantic(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    for src in SOURCES:
        proc = subprocess.run([cc, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Wno-unused-parameter",
                               "-Werror", "-c", str(CSRC / src), "-o", str(tmp_path / (src + ".o"))],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_csrc_has_no_python_header():
    for path in CSRC.glob("*.[ch]"):
        text = path.read_text()
        assert "#include <Python.h>" not in text and '#include "Python.h"' not in text, path


@pytest.mark.parametrize("log_max", [8, 2048], ids=["merging", "exact"])
def test_transmission_log_keeps_its_invariants(tmp_path, log_max):
    """fn_txlog against a shadow model (check_txlog.c): random sends, retransmissions, ACKs,
    SACKs, reneging and loss marks across the sequence wrap; with room for 8 entries it must
    merge and stay coherent, with the real size its send times, SACK and loss marks must be
    exact."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    out = tmp_path / "check_txlog"
    cmd = [cc, "-std=c99", "-D_GNU_SOURCE", "-O1", "-g", "-fno-omit-frame-pointer", f"-DFN_TXLOG_MAX={log_max}",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-Wall", "-Wextra",
           "-Wno-unused-parameter", "-Werror", f"-I{CSRC}", str(pathlib.Path(__file__).with_name("check_txlog.c")),
           str(CSRC / "fn_txlog.c"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "sanitize" in proc.stderr and "cannot find" in proc.stderr:
        pytest.skip("the compiler has no sanitizer runtime")
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([str(out)], capture_output=True, text=True, timeout=300,
                          env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1", "UBSAN_OPTIONS": "halt_on_error=1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"ok txlog max={log_max}")
