"""The audit journal's writer: native (Cython) or its pure-Python twin.

``JournalWriter(mapping, offset, seq, digest, count_at, classify, scrub, drop,
describe)`` appends chained entries to a writable journal mapping from
``offset`` on; :mod:`kmscore.audit.journal` owns the file, its format and its
readers. The twin is chosen exactly when the engine's is
(``KMSCORE_PUREPYTHON=1``).
"""

from __future__ import annotations

from kmscore.engine import BACKEND
from kmscore.engine._journal_base import JournalFull

__all__ = ["JournalFull", "JournalWriter"]

if BACKEND == "python":
    from kmscore.engine._journal_py import JournalWriter
else:
    # mypy types this module by the twin imported above; both share one interface.
    from kmscore.engine._journal import JournalWriter  # type: ignore[assignment]
