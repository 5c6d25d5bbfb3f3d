"""The service's auditor: every call, allowed or denied, into the audit trail.

:class:`TrailAuditor` is the :class:`~kmscore.service.Auditor` that turns each
call into one CloudTrail-shaped event (:func:`kmscore.audit.build_event`, which
scrubs plaintext, ciphertext and key material) and appends it to the data
dir's :class:`~kmscore.audit.AuditTrail` before the call returns. If the record
cannot be written, the call fails with KMSInternalException; the dispatcher
runs mutating operations inside a store transaction that then rolls back, so a
failed record means the call had no effect (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from kmscore.audit.event import build_event
from kmscore.audit.journal_format import DEFAULT_JOURNAL_BYTES
from kmscore.audit.journaled import JournaledTrail
from kmscore.audit.setup import open_service_trail
from kmscore.audit.sink import AuditSink
from kmscore.engine.journal import CallRecorder
from kmscore.errors import KMSError
from kmscore.service.call import Call

__all__ = ["TrailAuditor"]

_BATCHES: Final = frozenset({"GenerateDataKeys", "DecryptMany"})


def _batch_size(operation: str, request: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if operation == "GenerateDataKeys":
        count = request.get("Count")
        return {"batchSize": count} if isinstance(count, int) else None
    blobs = request.get("CiphertextBlobs")
    return {"batchSize": len(blobs)} if isinstance(blobs, list) else None


class TrailAuditor(CallRecorder):
    """Appends one scrubbed event per call to the data dir's audit trail.

    :meth:`record`, the per-call hot path, is the engine's
    :class:`~kmscore.engine.journal.CallRecorder` method: the call goes into
    the journal's current file in one native call, with no Python frame of
    the auditor's (stop 29 of issue 13 measured that frame and its lookups at
    a sixth of the record). It falls back to :meth:`_record_slowly` when the
    file is full or not made yet.
    """

    def __init__(self, data_dir: Path, **trail_options: Any) -> None:
        """Open (or create) ``<data_dir>/audit``, signed and exported as set up.

        ``witness`` and ``export`` options are saved for every later open
        (:func:`~kmscore.audit.setup.open_service_trail`).

        Raises:
            KMSInternalException: the trail, its witness or its export cannot be opened.
        """
        journal_bytes = trail_options.pop("journal_bytes", DEFAULT_JOURNAL_BYTES)
        chainer = trail_options.pop("chainer", True)
        trail = open_service_trail(data_dir, **trail_options)
        try:
            self.trail: JournaledTrail = JournaledTrail(
                data_dir, trail, journal_bytes=journal_bytes, chainer=chainer
            )
        except BaseException:
            trail.close()
            raise
        self._sink: AuditSink = self.trail
        self._journal = self.trail.journal
        super().__init__(self._journal, self._record_slowly, _BATCHES, _batch_size)

    def _record_slowly(
        self,
        call: Call,
        request: Mapping[str, Any],
        response: Mapping[str, Any] | None,
        error: KMSError | None,
        extra: Mapping[str, Any] | None,
    ) -> None:
        """Record through the sink, which makes or rolls the journal's file.

        Raises:
            KMSInternalException: the record could not be written.
        """
        self.trail.record_service_call(call, request, response, error, extra)

    def record_service_event(
        self,
        event_name: str,
        *,
        region: str,
        account: str,
        key_arn: str,
        when: datetime,
        additional_event_data: Mapping[str, Any] | None = None,
    ) -> None:
        """Record something the service did on its own, as CloudTrail's ``AwsServiceEvent``.

        For example ``DeleteExpiredKeyMaterial`` when imported material passes
        its ``ValidTo``: no caller, ``invokedBy`` and source ``kms.amazonaws.com``.

        Raises:
            KMSInternalException: the record could not be written.
        """
        service = "kms.amazonaws.com"
        event = dict(
            build_event(
                event_name,
                region=region,
                account_id=account,
                identity={"accountId": account, "invokedBy": service},
                source_ip=service,
                user_agent=service,
                request_parameters=None,
                resources=(key_arn,),
                read_only=False,
                additional_event_data=additional_event_data,
                event_time=when,
            )
        )
        event["eventType"] = "AwsServiceEvent"
        self.trail.append(event)

    def close(self) -> None:
        """Flush the trail and seal it with a checkpoint."""
        self.trail.close()
