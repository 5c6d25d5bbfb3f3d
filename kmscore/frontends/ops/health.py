"""Liveness and readiness.

*Live* means the process answers at all: whoever serves ``/health`` has run.
*Ready* means a request would be served now: the store answers a read, and
the audit journal's directory takes a new file (a call that cannot be
audited is refused, so a full or read-only audit disk is not ready).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kmscore.audit.journal_format import DEFAULT_JOURNAL_BYTES, journal_dir
from kmscore.service import KeyService

__all__ = ["PROBE_FILE", "Readiness", "audit_writable", "readiness", "store_reachable"]

#: The file the audit check creates and removes in the journal directory.
PROBE_FILE: Final = ".ready-probe"


@dataclass(slots=True)
class Readiness:
    """The outcome of the readiness checks: each check's name, whether it passed, why not."""

    checks: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """Whether every check passed."""
        return all(value == "ok" for value in self.checks.values())

    def as_json(self) -> dict[str, Any]:
        """The ``/ready`` body."""
        return {"status": "ready" if self.ready else "not ready", "checks": dict(self.checks)}


def store_reachable(service: KeyService) -> str:
    """``ok``, or why the store did not answer a read."""
    try:
        service.store.get_setting("region")
    except Exception as exc:
        return f"store unreachable: {type(exc).__name__}: {exc}"[:300]
    return "ok"


def audit_writable(service: KeyService) -> str:
    """``ok``, or why the audit journal's directory cannot take a new journal file.

    Creates and removes a probe file there (a read-only or failed disk fails
    that), and wants room for one more journal file.
    """
    if getattr(service.auditor, "trail", None) is None:
        return "ok"  # auditing is off in this process
    directory = journal_dir(Path(service.data_dir))
    if not directory.is_dir():
        directory = directory.parent  # no journal yet: its parent is where it will be made
    probe = directory / f"{PROBE_FILE}.{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"\0")
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)
        stats = os.statvfs(directory)
    except OSError as exc:
        return f"audit journal not writable: {exc.strerror or exc}"
    free = stats.f_bavail * stats.f_frsize
    if free < DEFAULT_JOURNAL_BYTES:
        return (
            f"audit disk nearly full: {free} bytes free, "
            f"a journal file needs {DEFAULT_JOURNAL_BYTES}"
        )
    return "ok"


def readiness(service: KeyService) -> Readiness:
    """Run every readiness check (it reads the store: call it off the event loop)."""
    result = Readiness()
    result.checks["store"] = store_reachable(service)
    result.checks["audit"] = audit_writable(service)
    return result
