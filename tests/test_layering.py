"""No module imports (or cimports) a module of a higher layer.

Layers, lowest first (docs/design.md): csrc ← wire ← tcp engine ← I/O ← services ← control.
Every module of the package must be assigned a layer here, so a new module cannot slip in
without saying where it stands.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "src" / "fastnet"

# Longest prefix wins. A module's name is its dotted path under fastnet.
LAYERS: dict[str, int] = {
    # 0: the wire layer (and what everything may use: version, errors)
    "__init__": 0, "_version": 0, "errors": 0, "_csrc": 0, "_fields": 0, "_wire": 0, "wire": 0, "pcap": 0,
    # 1: the TCP engine (sans-IO, no sockets of its own beyond what it is handed)
    "_tcp": 1, "tcp": 1,
    # 2: I/O: links, transports, the event-loop glue
    "_io": 2, "aio": 2,
    # 3: services: NAT, DNS, DHCP, proxy, published ports
    "services": 3,
    # 4: control: API, CLI
    "api": 4, "cli": 4, "__main__": 4,
}

IMPORT_RE = re.compile(r"^\s*(?:from\s+(fastnet(?:\.[\w.]+)?)\s+c?import|c?import\s+(fastnet(?:\.[\w.]+)?))", re.M)


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer_of(name: str) -> int | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in LAYERS:
            return LAYERS[key]
    return None


def imports_of(path: pathlib.Path) -> set[str]:
    text = path.read_text()
    found: set[str] = set()
    if path.suffix == ".py":
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("fastnet"):
                found.add(node.module)
                for alias in node.names:  # "from fastnet import wire" imports fastnet.wire
                    found.add(f"{node.module}.{alias.name}")
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}: use absolute imports (relative import found)")
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("fastnet"))
    else:  # .pyx / .pxd: imports and cimports by regex
        for m in IMPORT_RE.finditer(text):
            found.add(m.group(1) or m.group(2))
    return {f[len("fastnet."):] if f != "fastnet" else "__init__" for f in found}


SOURCES = sorted(p for p in PKG.rglob("*") if p.suffix in (".py", ".pyx", ".pxd") and "__pycache__" not in p.parts)


def test_every_module_has_a_layer():
    missing = [module_name(p) for p in SOURCES if layer_of(module_name(p)) is None]
    assert not missing, f"assign these modules a layer in tests/test_layering.py: {missing}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_upward_import(path):
    me = module_name(path)
    mine = layer_of(me)
    for dep in imports_of(path):
        theirs = layer_of(dep)
        if theirs is None:  # a name imported from a module ("from fastnet.wire import X")
            continue
        assert theirs <= mine, f"{me} (layer {mine}) imports {dep} (layer {theirs})"


def test_the_checker_sees_an_upward_edge(tmp_path):
    fake = tmp_path / "probe.py"
    fake.write_text("from fastnet.cli import main\nimport fastnet.wire\n")
    deps = imports_of(fake)
    assert "cli" in deps and "wire" in deps
    assert layer_of("cli.inspect") == 4 and layer_of("_wire") == 0
