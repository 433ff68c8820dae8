"""The installed ``fastnet`` command, run as a user would run it."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import fastnet

BIN = pathlib.Path(sys.executable).parent


def fastnet_cmd() -> str:
    exe = BIN / "fastnet"
    if exe.exists():
        return str(exe)
    found = shutil.which("fastnet")
    if found is None:
        pytest.skip("the fastnet console script is not installed")
    return found


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([fastnet_cmd(), *args], capture_output=True, text=True, timeout=60, **kw)


def test_version_prints_the_package_version():
    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"fastnet {fastnet.__version__}"
    assert fastnet.__version__ and fastnet.__version__ != "0.0.0+unknown"


def test_python_dash_m_runs_the_same_command():
    proc = subprocess.run([sys.executable, "-m", "fastnet", "--version"], capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"fastnet {fastnet.__version__}"


def test_help_lists_every_subcommand():
    from fastnet.cli import SUBCOMMANDS, build_parser

    proc = run("--help")
    assert proc.returncode == 0
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    names = sorted(sub.choices)
    assert len(names) == len(SUBCOMMANDS) >= 1
    for name in names:
        assert name in proc.stdout


@pytest.mark.parametrize("argv", [["--no-such-flag"], ["inspect", "--bogus"], ["no-such-command"]])
def test_bad_command_line_is_one_line_and_exit_2(argv):
    proc = run(*argv)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fastnet")
    assert "error" in lines[0]


def test_no_command_shows_help_and_exit_2():
    proc = run()
    assert proc.returncode == 2
    assert "COMMAND" in proc.stdout


def test_inspect_builtin_sample_summarises_every_frame():
    proc = run("inspect")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "built-in sample: 10 frames" in out
    assert "malformed: bad IPv4 total length" in out
    assert "malformed: bad TCP data offset" in out
    assert "mss=1460 wscale=7 sackOK ts" in out
    assert "malformed: 2, bad checksums: 0" in out
    assert "batch classify: 10 frames, 8 valid" in out


def test_inspect_reads_a_written_capture(tmp_path):
    path = tmp_path / "sample.pcap"
    first = run("inspect", "--write-sample", str(path))
    assert first.returncode == 0 and path.stat().st_size > 24
    second = run("inspect", str(path))
    assert second.returncode == 0
    assert second.stdout.splitlines()[1:] == first.stdout.splitlines()[1:]


def test_inspect_reports_a_bad_file_in_one_line(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    for target in (str(bad), str(tmp_path / "missing.pcap")):
        proc = run("inspect", target)
        assert proc.returncode == 1
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_inspect_counts_bad_checksums(tmp_path):
    from fastnet import pcap
    from fastnet.cli.inspect import sample_frames

    frames = [bytearray(f) for f in sample_frames()[:3]]
    frames[2][-1] ^= 0xFF  # payload byte of a TCP segment: its checksum no longer matches
    path = tmp_path / "corrupt.pcap"
    with pcap.PcapWriter(path) as w:
        for f in frames:
            w.write(f, ts=0.0)
    proc = run("inspect", str(path))
    assert proc.returncode == 0
    assert "checksum BAD" in proc.stdout
    assert "bad checksums: 1" in proc.stdout


def test_installed_package_is_compiled_not_source():
    import fastnet._wire as w

    assert pathlib.Path(w.__file__).suffix in (".so", ".pyd")
    pkg = pathlib.Path(fastnet.__file__).parent
    assert not list(pkg.glob("*.pyx")) or os.environ.get("FASTNET_EDITABLE"), "wheel must not ship .pyx"
    assert not list(pkg.glob("*.c")) or os.environ.get("FASTNET_EDITABLE"), "wheel must not ship .c"
