"""The contract of an audit sink: what the service may rely on when it records a call.

The service's auditor (:class:`kmscore.service.auditor.TrailAuditor`) writes
through this interface only, so another writer (a memory-mapped journal, a
remote collector) can replace :class:`~kmscore.audit.trail.AuditTrail` if it
keeps the same promises:

1. **Durable on return.** When :meth:`AuditSink.append` returns, the record
   survives ``kill -9`` of the process: it is in the kernel (a ``write`` done,
   or a shared memory mapping of a file), never only in a user-space buffer.
   Surviving a power loss may lag by a bounded interval, and
   :meth:`AuditSink.flush` closes it.
2. **Fail closed, leaving no trace.** If the record cannot be made durable,
   ``append`` raises :class:`~kmscore.errors.KMSInternalException` and the sink
   holds nothing of it, not even part of it; the dispatcher then rolls the
   call's changes back. A sink that cannot guarantee later records refuses
   every later append until it is reopened.
3. **Append-only and ordered.** Records are never changed or removed once
   acknowledged; a reader sees them in acknowledgement order per writer.
   :meth:`AuditSink.append_many` writes its records consecutively, all or none.
4. **Tamper-evident.** Records are chained, and :meth:`AuditSink.checkpoint`
   seals everything acknowledged so far with a signature; ``kms audit verify``
   detects a changed, removed, reordered or cut record.
5. **Scrubbed.** Whatever mapping it is given, the sink writes only what
   :func:`kmscore.audit.scrub.scrub_event` keeps (or the sealed JSON that
   :func:`kmscore.audit.build_event` made by the same rule): no plaintext,
   ciphertext or key material reaches a record.
6. **Safe to share.** Thread-safe; several processes may append to the sink
   of one data dir at once. A process that forks with a sink open must open
   it again in the child.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

__all__ = ["AuditSink"]


class AuditSink(Protocol):
    """A writer of audit records that keeps the module's contract."""

    def append(self, event: Mapping[str, Any]) -> None:
        """Record one event, durably against ``kill -9`` before returning.

        Raises:
            TypeError: ``event`` is not a mapping.
            KMSInternalException: it could not be made durable (nothing of it
                is kept), or the sink is closed or failed.
        """
        ...

    def append_many(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Record several events consecutively, all or none.

        Raises:
            TypeError: an event is not a mapping.
            KMSInternalException: as :meth:`append`; none of them is kept.
        """
        ...

    def flush(self) -> None:
        """Return once every event appended before is durable against power loss.

        Raises:
            KMSInternalException: it could not be (the sink fails), or the sink
                is closed or failed.
        """
        ...

    def checkpoint(self) -> None:
        """Seal every record acknowledged so far with a signed checkpoint.

        Raises:
            KMSInternalException: the checkpoint could not be made durable.
        """
        ...

    def close(self) -> None:
        """Seal, flush and release the sink; idempotent.

        Raises:
            KMSInternalException: the final checkpoint could not be written.
        """
        ...
