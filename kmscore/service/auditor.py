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
from pathlib import Path
from typing import Any

from kmscore.audit import Identity, build_event
from kmscore.audit.setup import open_service_trail
from kmscore.audit.sink import AuditSink
from kmscore.errors import KMSError
from kmscore.model.caller import Caller
from kmscore.service.call import Call
from kmscore.wire.operations import KMS_EVENT_SOURCE, OPERATION_FACTS

__all__ = ["TrailAuditor"]


def _event_source(operation: str) -> str:
    facts = OPERATION_FACTS.get(operation)
    return facts.event_source if facts is not None else KMS_EVENT_SOURCE


class TrailAuditor:
    """Appends one scrubbed event per call to the data dir's audit trail."""

    def __init__(self, data_dir: Path, **trail_options: Any) -> None:
        """Open (or create) ``<data_dir>/audit``, signed and exported as set up.

        ``witness`` and ``export`` options are saved for every later open
        (:func:`~kmscore.audit.setup.open_service_trail`).

        Raises:
            KMSInternalException: the trail, its witness or its export cannot be opened.
        """
        self.trail: AuditSink = open_service_trail(data_dir, **trail_options)
        self._identities: dict[Caller, Identity] = {}

    def _identity(self, caller: Caller) -> Identity:
        identity = self._identities.get(caller)
        if identity is None:
            name = caller.arn.rsplit("/", 1)[-1] if caller.kind == "IAMUser" else None
            identity = Identity(
                type=caller.kind,
                principal_id=caller.principal_id,
                arn=caller.arn,
                account_id=caller.account,
                access_key_id=caller.access_key_id,
                user_name=name,
            )
            if len(self._identities) > 1024:
                self._identities.clear()
            self._identities[caller] = identity
        return identity

    def record(
        self,
        call: Call,
        request: Mapping[str, Any],
        response: Mapping[str, Any] | None,
        error: KMSError | None,
    ) -> None:
        """See :class:`~kmscore.service.Auditor`.

        Raises:
            KMSInternalException: the record could not be written.
        """
        svc = call.service
        extra = call.additional_event_data
        if extra is not None:
            pass
        elif call.operation == "GenerateDataKeys" and isinstance(request.get("Count"), int):
            extra = {"batchSize": request["Count"]}
        elif call.operation == "DecryptMany":
            blobs = request.get("CiphertextBlobs")
            if isinstance(blobs, list):
                extra = {"batchSize": len(blobs)}
        event = build_event(
            call.operation,
            region=svc.region,
            account_id=svc.account,
            identity=self._identity(call.caller),
            source_ip=call.caller.source,
            user_agent=call.caller.user_agent,
            request_parameters=request,
            response_elements=response if (response and not call.read_only) else None,
            resources=call.resources,
            read_only=call.read_only,
            error_code=error.code if error is not None else None,
            error_message=error.message if error is not None else None,
            request_id=call.request_id,
            additional_event_data=extra,
            event_source=_event_source(call.operation),
        )
        self.trail.append(event)

    def close(self) -> None:
        """Flush the trail and seal it with a checkpoint."""
        self.trail.close()
