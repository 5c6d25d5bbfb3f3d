"""The audit journal's writer: native (Cython) or its pure-Python twin.

``JournalWriter(mapping, offset, seq, digest, count_at, classify, scrub, drop,
describe)`` appends chained entries to a writable journal mapping from
``offset`` on; :mod:`kmscore.audit.journal` owns the file, its format and its
readers. ``CallRecorder`` is the auditor's hot path into the current writer,
and ``prefault_writable`` faults a new file's pages in ahead of the writer.
The twin is chosen exactly when the engine's is
(``KMSCORE_PUREPYTHON=1``).
"""

from __future__ import annotations

from kmscore.engine import BACKEND
from kmscore.engine._journal_base import JournalFull

__all__ = ["CallRecorder", "JournalFull", "JournalWriter", "prefault_writable"]

if BACKEND == "python":
    from kmscore.engine._journal_py import CallRecorder, JournalWriter, prefault_writable
else:
    # mypy types this module by the twin imported above; both share one interface.
    from kmscore.engine._journal import (  # type: ignore[assignment]
        CallRecorder,
        JournalWriter,
        prefault_writable,
    )
