"""Developer and CI sessions.

    nox -s tests               build the native engine, run every test in tests/
    nox -s tests_purepython    the same with KMSCORE_PUREPYTHON=1 (the twin engine)
    nox -s lint                ruff check, ruff format --check, tools/check_layers.py
    nox -s typecheck           mypy (strict) on kmscore and tools
    nox -s sanitize            C tests and engine tests under ASan/UBSan, in a copy
    nox -s bench               bench/bench_engine.py

Extra arguments after ``--`` go to pytest (or to the bench script), e.g.
``nox -s tests -- -k wycheproof -x``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nox
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")

nox.options.sessions = ["tests", "lint", "typecheck"]
# Venvs are kept between runs (fresh on a fresh clone); the project itself is
# rebuilt and reinstalled every time, because pip always reinstalls a local path.
nox.options.reuse_venv = "yes"

LINT_PATHS = ["kmscore", "tests", "bench", "tools", "noxfile.py"]

# The sanitizer build of csrc/ alone; -fno-sanitize-recover makes a UBSan
# report fatal, so it fails the run instead of scrolling by.
SANITIZE_CFLAGS = [
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-O1",
    "-g",
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=all",
]

# What a copy of the tree must not carry along: build output and caches, and
# above all the in-place (unsanitized) extension.
_NOT_COPIED = shutil.ignore_patterns(
    ".git",
    ".nox",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.so",
    "*.o",
    ".hypothesis",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".benchmarks",
    "_engine.c",
    "test_kms_aead",
    "_ceiling",
)


# The tests run against the installed wheel. Python processes the tests start
# (the daemon, the CLI, python -m kmscore) must not put the working directory,
# the source tree, ahead of it: its kmscore/ has no built engine.
_INSTALLED_ONLY = {"PYTHONSAFEPATH": "1"}


def _dev_requirement(name: str) -> str:
    """The requirement for one tool as pinned in the ``dev`` extra of pyproject.toml."""
    for spec in PYPROJECT["project"]["optional-dependencies"]["dev"]:
        if Requirement(spec).name == name:
            return str(spec)
    return name


def _check_packages_listed(session: nox.Session) -> None:
    """Fail early when a source package is missing from pyproject's ``packages``.

    The wheel holds only the listed packages; an unlisted one works in an
    editable install and is missing from every real install.
    """
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in ROOT.glob("kmscore/**/__init__.py")
    }
    missing = sorted(found - listed)
    if missing:
        session.error(f"add to [tool.setuptools] packages in pyproject.toml: {', '.join(missing)}")


def _vectors_dir() -> str:
    return os.environ.get("KMSCORE_VECTORS") or str(ROOT.parent / "shared" / "vectors")


@nox.session
def tests(session: nox.Session) -> None:
    """Build and install kmscore with its native engine; run all of tests/."""
    _check_packages_listed(session)
    session.install(".[test]")
    session.run("pytest", *session.posargs, env={"KMSCORE_PUREPYTHON": None, **_INSTALLED_ONLY})


@nox.session
def tests_purepython(session: nox.Session) -> None:
    """Run all of tests/ with kmscore.engine on the pure-Python twin."""
    _check_packages_listed(session)
    session.install(".[test]")
    session.run("pytest", *session.posargs, env={"KMSCORE_PUREPYTHON": "1", **_INSTALLED_ONLY})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check, and the layer check (imports go one way, no circles)."""
    session.install(_dev_requirement("ruff"))
    paths = [p for p in LINT_PATHS if (ROOT / p).exists()]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    session.run("python", str(ROOT / "tools" / "check_layers.py"))


@nox.session
def typecheck(session: nox.Session) -> None:
    """Mypy, strict, on kmscore (the native engine through its .pyi) and the typing tests."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    session.install(
        _dev_requirement("mypy"),
        _dev_requirement("types-PyYAML"),
        *PYPROJECT["project"]["dependencies"],
        *optional["fast"],
        *optional["postgresql"],
        *optional["hsm"],
    )
    session.run("mypy", "kmscore", "tools")
    # The clients' typing tests: each marked line must be an error.
    session.run("mypy", "--strict", "--warn-unused-ignores", "tests/typing")


def _gcc_runtime(session: nox.Session, gcc: str, name: str) -> str:
    out = session.run(gcc, f"-print-file-name={name}", silent=True, external=True)
    path = Path(str(out).strip()).resolve()
    if not path.is_file():
        session.error(f"{name} not found by {gcc} (is gcc's sanitizer runtime installed?)")
    return str(path)


@nox.session
def sanitize(session: nox.Session) -> None:
    """csrc/ tests and the engine tests under AddressSanitizer and UBSan.

    Everything is built in a temporary copy of the tree: the sanitized extension
    must never replace the in-place build that other work imports.
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        session.error("gcc is required")
    libasan = _gcc_runtime(session, gcc, "libasan.so")
    libubsan = _gcc_runtime(session, gcc, "libubsan.so")
    vectors = _vectors_dir()

    with tempfile.TemporaryDirectory(prefix="kmscore-sanitize-") as tmp:
        # Not named kmscore: a directory of that name beside the current one
        # could be imported as a namespace package.
        tree = Path(tmp) / "src"
        shutil.copytree(ROOT, tree, ignore=_NOT_COPIED, symlinks=True)

        # 1. The C engine alone, with leak checking: no interpreter to blur it.
        exe = Path(tmp) / "test_kms_aead"
        with session.chdir(tree):
            session.run(
                gcc,
                *SANITIZE_CFLAGS,
                "-Icsrc",
                "csrc/kms_aead.c",
                "csrc/test_kms_aead.c",
                "-lcrypto",
                "-pthread",
                "-o",
                str(exe),
                external=True,
            )
        session.run(
            str(exe),
            external=True,
            env={
                "ASAN_OPTIONS": "detect_leaks=1:strict_string_checks=1",
                "UBSAN_OPTIONS": "print_stacktrace=1",
            },
        )

        # 2. The extension built with KMSCORE_SANITIZE=1 (see setup.py), installed
        #    into this session's venv from the copy.
        session.install(f"{tree}[test]", env={"KMSCORE_SANITIZE": "1"})
        # -P: without the current directory on sys.path, so this finds what
        # pytest will import, the venv's copy.
        origin = session.run(
            "python",
            "-P",
            "-c",
            # The extension's file, found without importing kmscore.engine (which
            # would load the ASan-linked library before its runtime is preloaded).
            "import importlib.util as u, pathlib; "
            "d = pathlib.Path(u.find_spec('kmscore').origin).parent / 'engine'; "
            "print(next(d.glob('_engine.*.so')))",
            silent=True,
        )
        so = str(origin).strip().splitlines()[-1]
        venv = Path(session.virtualenv.location).resolve()
        if not Path(so).resolve().is_relative_to(venv):
            session.error(f"pytest would import {so}, not the sanitized build in {venv}")
        linked = str(session.run("ldd", so, silent=True, external=True))
        if "libasan" not in linked:
            session.error(f"{so} is not linked with ASan; the sanitized build did not happen")
        session.log(f"sanitized engine: {so}")

        # CPython itself is not instrumented, so its runtime goes first via
        # LD_PRELOAD; PYTHONMALLOC=malloc lets ASan see Python's buffers too,
        # which is where the engine writes. Leaks are left to the C run above:
        # the interpreter keeps memory until exit on purpose.
        env = {
            "LD_PRELOAD": f"{libasan} {libubsan}",
            "ASAN_OPTIONS": "detect_leaks=0",
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
            "PYTHONMALLOC": "malloc",
            "KMSCORE_VECTORS": vectors,
            "KMSCORE_PUREPYTHON": None,
        }
        engine_tests = sorted(str(p.relative_to(tree)) for p in tree.glob("tests/test_engine*.py"))
        with session.chdir(tree):
            # --capture=sys: a sanitizer report is written to file descriptor 2
            # just before the process dies; pytest's default fd capture would
            # swallow it with the process.
            session.run(
                "pytest",
                "--capture=sys",
                "-p",
                "no:cacheprovider",
                "--hypothesis-profile=sanitize",
                *engine_tests,
                *session.posargs,
                env=env,
            )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the engine benchmark (bench/bench_engine.py)."""
    session.install(".[bench]")
    session.run("python", "bench/bench_engine.py", *session.posargs)
