"""Declares the native extension only; everything else is in pyproject.toml."""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

# `nox -s sanitize` builds with ASan/UBSan through this variable.
_extra_compile = ["-O2", "-Wall", "-Wno-unused-function"]
_extra_link: list[str] = []
if os.environ.get("KMSCORE_SANITIZE"):
    _flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    _extra_compile += _flags
    _extra_link += _flags

setup(
    ext_modules=cythonize(
        [
            Extension(
                "kmscore.engine._engine",
                sources=["kmscore/engine/_engine.pyx", "csrc/kms_aead.c"],
                include_dirs=["csrc"],
                libraries=["crypto"],
                extra_compile_args=_extra_compile,
                extra_link_args=_extra_link,
                define_macros=[("OPENSSL_API_COMPAT", "30000"), ("OPENSSL_NO_DEPRECATED", None)],
            ),
            Extension(
                "kmscore.engine._journal",
                sources=["kmscore/engine/_journal.pyx"],
                libraries=["crypto"],
                extra_compile_args=_extra_compile,
                extra_link_args=_extra_link,
                define_macros=[("OPENSSL_API_COMPAT", "30000"), ("OPENSSL_NO_DEPRECATED", None)],
            ),
        ],
        compiler_directives={"language_level": "3"},
    ),
)
