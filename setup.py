"""Extension modules only; everything declarative lives in pyproject.toml.

Environment knobs:
  FASTNET_DEBUG=1     -O0 -g, Cython bounds checks, -DFN_DEBUG=1 (invariant checks in csrc)
  FASTNET_ANNOTATE=1  write Cython's HTML annotation next to each .pyx
  FASTNET_CFLAGS      extra compiler flags, appended last
"""

import os
import shlex

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTNET_DEBUG", "") not in ("", "0")
CSRC = "csrc"

# -O3 without -march=native: wheels must run on any x86-64/aarch64 of the same ABI.
cflags = ["-std=c99", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Wno-missing-field-initializers", "-fno-strict-aliasing"]
if DEBUG:
    cflags += ["-O0", "-g3", "-DFN_DEBUG=1"]
else:
    cflags += ["-O3", "-DNDEBUG"]
cflags += shlex.split(os.environ.get("FASTNET_CFLAGS", ""))


def ext(name, csources=(), numpy_api=False):
    include_dirs = [CSRC]
    if numpy_api:
        include_dirs.append(numpy.get_include())
    return Extension(
        f"fastnet.{name}",
        sources=[f"src/fastnet/{name}.pyx"] + [f"{CSRC}/{c}" for c in csources],
        include_dirs=include_dirs,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")] if numpy_api else [],
        extra_compile_args=cflags,
    )


WIRE_C = ["fn_checksum.c", "fn_wire.c", "fn_build.c"]
TCP_C = WIRE_C + ["fn_assembler.c", "fn_flowtab.c", "fn_txq.c", "fn_txlog.c", "fn_tcp.c", "fn_hostsys.c", "fn_memhost.c"]

IO_C = TCP_C + ["fn_fault.c", "fn_link.c", "fn_frag.c", "fn_dgram.c", "fn_stack.c"]

extensions = [
    ext("_wire", WIRE_C, numpy_api=True),
    ext("_tcp", TCP_C),
    ext("_io", IO_C),
]

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": DEBUG,
    "embedsignature": True,
}
if DEBUG:
    directives["linetrace"] = True

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=os.environ.get("FASTNET_ANNOTATE", "") not in ("", "0"),
    ),
)
