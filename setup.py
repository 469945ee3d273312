"""Build the Cython hot paths in cython_src/ into mmshm._native.* and ship procs/ as mmshm.procs.

Every ``cython_src/<name>.pyx`` becomes the extension ``mmshm._native.<name>``; nothing
has to be registered here by hand, so adding a hot loop is adding a .pyx/.pxd pair.
For development, ``MMSHM_NATIVE_ONLY=ring,book python setup.py build_ext --inplace``
rebuilds just the named modules.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent
SRC = HERE / "cython_src"


#: system libraries a module links (wsorder: OpenSSL's SHA-256 for the order signatures)
LIBRARIES = {"wsorder": ["crypto"]}


def native_extensions() -> list[Extension]:
    """One extension per .pyx; all see cython_src/ (atomics.h, .pxd) and numpy's headers."""
    only = {n for n in os.environ.get("MMSHM_NATIVE_ONLY", "").split(",") if n}
    exts = []
    for pyx in sorted(SRC.glob("*.pyx")):
        if only and pyx.stem not in only:
            continue
        exts.append(
            Extension(
                f"mmshm._native.{pyx.stem}",
                [str(pyx.relative_to(HERE))],
                include_dirs=[str(SRC), numpy.get_include()],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                extra_compile_args=["-O3", "-std=gnu11", "-fno-strict-aliasing"],
                libraries=LIBRARIES.get(pyx.stem, []),
            )
        )
    return exts


setup(
    packages=find_packages(include=["mmshm", "mmshm.*"]) + ["mmshm.procs"],
    package_dir={"mmshm.procs": "procs"},
    ext_modules=cythonize(
        native_extensions(),
        language_level=3,
        include_path=[str(SRC)],
        compiler_directives={"embedsignature": True},
    ),
    zip_safe=False,
)
