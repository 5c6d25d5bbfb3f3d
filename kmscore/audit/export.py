"""Copies of each checkpoint, made as it is written, outside the data directory.

Whoever can write the data directory can cut the records and the checkpoints
file together, and the shortened trail verifies. A copy of every checkpoint
kept elsewhere, as it is made, shows the cut: ``kms audit verify --exported``
checks that the trail still holds every exported checkpoint.

Sinks: ``file:<path>`` appends each checkpoint line to a file (created 0600,
never through a symlink; fsynced per checkpoint, so once a checkpoint is in the
trail it is in the copy), and ``syslog`` sends it to the system log (journald
on most systems) as ``kmscore-audit-checkpoint {...}``, facility AUTH, which
``journalctl -t kmscore-audit -o cat`` reads back. A sink that fails is logged
and the trail goes on: the checkpoint itself is durable.
"""

from __future__ import annotations

import logging
import os
import syslog
import threading
from pathlib import Path
from typing import Final

__all__ = ["SYSLOG_IDENT", "SYSLOG_PREFIX", "CheckpointExport", "parse_export"]

SYSLOG_IDENT: Final = "kmscore-audit"
SYSLOG_PREFIX: Final = "kmscore-audit-checkpoint "
_log = logging.getLogger("kmscore.audit")


class CheckpointExport:
    """One export sink (see the module docstring)."""

    def __init__(
        self, *, path: str | os.PathLike[str] | None = None, use_syslog: bool = False
    ) -> None:
        """Export to a file, to syslog, or both.

        Raises:
            OSError: The file cannot be opened for appending safely.
            ValueError: Neither sink was named.
        """
        if path is None and not use_syslog:
            raise ValueError("name a file or syslog to export checkpoints to")
        self.path = Path(path) if path is not None else None
        self._syslog = use_syslog
        self._lock = threading.Lock()
        self._fd = -1
        if self.path is not None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            self._fd = os.open(self.path, flags, 0o600)
        if use_syslog:
            syslog.openlog(SYSLOG_IDENT, syslog.LOG_PID, syslog.LOG_AUTH)

    def write(self, line: bytes) -> None:
        """Export one checkpoint line (with its newline); failures are logged only."""
        with self._lock:
            if self._fd >= 0:
                try:
                    view = memoryview(line)
                    while view:
                        view = view[os.write(self._fd, view) :]
                    os.fsync(self._fd)
                except OSError as exc:
                    _log.warning("audit checkpoint export to %s failed: %s", self.path, exc)
            if self._syslog:
                syslog.syslog(syslog.LOG_NOTICE, SYSLOG_PREFIX + line.decode("ascii").rstrip())

    def close(self) -> None:
        """Release the file."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def parse_export(spec: str) -> CheckpointExport:
    """A sink from its name: ``file:<path>`` or ``syslog`` (comma-separated for both).

    Raises:
        ValueError: An unknown sink.
        OSError: The file cannot be opened.
    """
    path: str | None = None
    use_syslog = False
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if part == "syslog":
            use_syslog = True
        elif part.startswith("file:") and len(part) > 5:
            path = part[5:]
        else:
            raise ValueError(f"unknown checkpoint export {part!r}: use file:<path> or syslog")
    return CheckpointExport(path=path, use_syslog=use_syslog)
