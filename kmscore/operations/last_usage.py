"""GetKeyLastUsage: the last successful cryptographic operation with a key.

kmscore keeps no separate usage counter: the answer is derived from the audit
trail, which already records every call durably and in order (the same
records ``kms audit`` reads). The handler scans the trail for the newest
successful record of a cryptographic operation that names the key, so the
call costs a read of the trail: it is meant for the occasional "is this key
still used?" question, not for a hot path. Batch extensions count as the
operation they batch (``GenerateDataKeys`` as GenerateDataKey, ``DecryptMany``
as Decrypt). ``TrackingStartDate`` is the key's creation date: the trail
starts with the data dir, before any key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from kmscore.audit import query
from kmscore.audit._format import AUDIT_DIR
from kmscore.operations.common import KEY_ID
from kmscore.operations.registry import operation
from kmscore.service import Call

#: The operations GetKeyLastUsage reports, by the name it reports them under.
_CRYPTO: Final = {
    **{
        name: name
        for name in (
            "Decapsulate",
            "Decrypt",
            "DeriveSharedSecret",
            "Encapsulate",
            "Encrypt",
            "GenerateDataKey",
            "GenerateDataKeyPair",
            "GenerateDataKeyPairWithoutPlaintext",
            "GenerateDataKeyWithoutPlaintext",
            "GenerateMac",
            "ReEncrypt",
            "Sign",
            "Verify",
            "VerifyMac",
        )
    },
    "GenerateDataKeys": "GenerateDataKey",
    "DecryptMany": "Decrypt",
}


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@operation("GetKeyLastUsage", {"KeyId": KEY_ID})
def get_key_last_usage(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """GetKeyLastUsage, from the audit trail (see the module docstring)."""
    svc = call.service
    key = call.key(req["KeyId"], allow_alias=False)
    call.authorize(key)
    last: dict[str, Any] | None = None
    if (svc.data_dir / AUDIT_DIR).is_dir():
        for record in query(svc.data_dir, key_id=key.arn, error_code=False):
            if record.get("eventName") in _CRYPTO:
                last = record
    out: dict[str, Any] = {
        "KeyId": key.arn,
        "KeyCreationDate": key.creation_date,
        "TrackingStartDate": key.creation_date,
        "KeyLastUsage": {},
    }
    if last is not None:
        usage: dict[str, Any] = {"Operation": _CRYPTO[last["eventName"]]}
        when = _time(last.get("eventTime"))
        if when is not None:
            usage["Timestamp"] = when
        if isinstance(last.get("eventID"), str):
            usage["CloudTrailEventId"] = last["eventID"]
        if isinstance(last.get("requestID"), str):
            usage["KmsRequestId"] = last["requestID"]
        out["KeyLastUsage"] = usage
    return out
