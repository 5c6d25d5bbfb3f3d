"""The tamper-evident audit trail: CloudTrail-shaped events, hash-chained and signed.

Every KMS call, allowed or denied, becomes one event (:func:`build_event`, which
scrubs away plaintext, ciphertext and key material) appended to an
:class:`AuditTrail` (written before ``append`` returns, fsynced in batches; see
:mod:`kmscore.audit.trail`). Several processes may append to one trail.
Records are hash-chained; Ed25519 checkpoints seal the chain; :func:`verify`
checks both and :func:`query` searches the records.
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
from kmscore.audit.sink import AuditSink
from kmscore.audit.trail import (
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_FSYNC_INTERVAL,
    DEFAULT_SEGMENT_BYTES,
    AuditTrail,
    SyncMode,
)

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "DEFAULT_CHECKPOINT_INTERVAL",
    "DEFAULT_FSYNC_INTERVAL",
    "DEFAULT_SEGMENT_BYTES",
    "EVENT_VERSION",
    "SECRET_FIELDS",
    "AuditEvent",
    "AuditSink",
    "AuditTrail",
    "Identity",
    "SyncMode",
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
