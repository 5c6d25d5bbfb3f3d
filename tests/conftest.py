"""Shared fixtures: both engine backends in one run, and Hypothesis profiles.

The native engine (``kmscore.engine._engine``) and its pure-Python twin
(``kmscore.engine._engine_py``) are imported directly, so every engine test runs on both
whatever ``KMSCORE_PUREPYTHON`` says; that variable only picks what
``kmscore.engine`` re-exports for the rest of the service.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

#: Fixtures shared by the access tests (data_dir, admin, as_user).
pytest_plugins = ["service_helpers.access", "service_helpers.postgres"]

PUREPYTHON = os.environ.get("KMSCORE_PUREPYTHON") == "1"

BACKEND_MODULES = {
    "native": "kmscore.engine._engine",
    "python": "kmscore.engine._engine_py",
}

# Select with `pytest --hypothesis-profile=NAME`. "dev" is the default, random
# each run; "ci" (chosen when CI is set, as Hypothesis itself does) replays the
# same examples so that CI does not fail by chance on a change that did not
# cause it; the sanitizer run uses "sanitize" because ASan slows each example.
_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow],
    "print_blob": True,
}
settings.register_profile("dev", max_examples=150, **_COMMON)
settings.register_profile("ci", max_examples=150, derandomize=True, database=None, **_COMMON)
settings.register_profile("sanitize", max_examples=30, **_COMMON)
settings.register_profile("thorough", max_examples=2000, **_COMMON)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def load_backend(name: str) -> ModuleType:
    """Import one engine backend by name ("native" or "python").

    A native engine that fails to import is an error in a normal run. Only when
    the run asked for the twin (KMSCORE_PUREPYTHON=1) may it be absent, and then
    its tests are skipped with the reason.
    """
    try:
        return importlib.import_module(BACKEND_MODULES[name])
    except ImportError as exc:
        if name == "native" and PUREPYTHON:
            pytest.skip(f"native engine not built (KMSCORE_PUREPYTHON=1): {exc}")
        raise


@pytest.fixture(scope="session", params=sorted(BACKEND_MODULES))
def engine(request: pytest.FixtureRequest) -> ModuleType:
    """Each engine backend in turn: the test runs once per backend."""
    return load_backend(request.param)


@pytest.fixture(scope="session")
def native() -> ModuleType:
    """The native engine."""
    return load_backend("native")


@pytest.fixture(scope="session")
def python_twin() -> ModuleType:
    """The pure-Python twin."""
    return load_backend("python")


@pytest.fixture(scope="session", params=["native->python", "python->native"])
def engine_pair(request: pytest.FixtureRequest) -> tuple[ModuleType, ModuleType]:
    """(sealer, opener): one backend's output is opened by the other."""
    first, second = request.param.split("->")
    return load_backend(first), load_backend(second)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which engine builds are under test, so a log shows what ran."""
    lines = []
    for name, module in [*sorted(BACKEND_MODULES.items()), ("public", "kmscore.engine")]:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            lines.append(f"kmscore engine {name}: not importable ({exc})")
            continue
        if name == "public":
            lines.append(f"kmscore.engine.BACKEND: {mod.BACKEND}")
        else:
            lines.append(f"kmscore engine {name}: {mod.__file__} ({mod.openssl_version()})")
    return lines
