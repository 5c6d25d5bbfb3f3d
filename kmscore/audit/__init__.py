"""The tamper-evident audit trail: CloudTrail-shaped events, hash-chained and signed.

Every KMS call, allowed or denied, becomes one event (:func:`build_event`, which
scrubs away plaintext, ciphertext and key material) appended durably to an
:class:`AuditTrail`. Records are hash-chained; Ed25519 checkpoints seal the
chain; :func:`verify` checks both and :func:`query` searches the records.
"""

from kmscore.audit._query import query
from kmscore.audit._verify import VerifyError, VerifyReport, verify
from kmscore.audit.event import (
    EVENT_VERSION,
    SECRET_FIELDS,
    AuditEvent,
    Identity,
    build_event,
    scrub_event,
    scrub_parameters,
)
from kmscore.audit.keys import load_or_create_signing_key, load_public_key
from kmscore.audit.trail import (
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_SEGMENT_BYTES,
    AuditTrail,
)

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "DEFAULT_CHECKPOINT_INTERVAL",
    "DEFAULT_SEGMENT_BYTES",
    "EVENT_VERSION",
    "SECRET_FIELDS",
    "AuditEvent",
    "AuditTrail",
    "Identity",
    "VerifyError",
    "VerifyReport",
    "build_event",
    "load_or_create_signing_key",
    "load_public_key",
    "query",
    "scrub_event",
    "scrub_parameters",
    "verify",
]
