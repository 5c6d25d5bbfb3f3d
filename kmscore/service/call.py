"""One operation in progress, and the hooks that decide and record it.

A :class:`Call` is made by :func:`kmscore.operations.dispatch` for every
request. Handlers resolve keys and authorize through it; the auditor records
it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from kmscore.errors import KMSError, KMSInvalidStateException
from kmscore.model.arn import parse_key_ref
from kmscore.model.caller import Caller
from kmscore.model.key import KeyRecord
from kmscore.model.keystate import StateRule

if TYPE_CHECKING:
    from kmscore.service.key_service import KeyService

__all__ = ["Auditor", "Authorizer", "Call", "NullAuditor", "new_request_id"]

# Request ids are UUID-shaped: a random per-process prefix and a counter, so
# each id is unique without the ~1.5 us of uuid4 on every call.
_ID_PREFIX = os.urandom(10).hex()
_ID_PREFIX = f"{_ID_PREFIX[:8]}-{_ID_PREFIX[8:12]}-{_ID_PREFIX[12:16]}-{_ID_PREFIX[16:20]}-"
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A fresh request id, shaped like a UUID."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"


#: ``kms:<operation>`` by operation name, made once per name.
_ACTIONS: dict[str, str] = {}


def _action(operation: str) -> str:
    action = _ACTIONS[operation] = f"kms:{operation}"
    return action


@dataclass(slots=True)
class Call:
    """One operation in progress: who, what, and what it touched."""

    service: KeyService
    operation: str
    caller: Caller
    request_id: str
    resources: list[str]
    authorized: bool = False
    #: CloudTrail's ``readOnly``: the call changes nothing in the store.
    read_only: bool = False
    #: Grants named by the request's GrantTokens: they count at once, even
    #: before this process notices them in the store (AWS's eventual
    #: consistency of grants, and its remedy).
    token_grants: tuple[Any, ...] = ()
    #: ``kms:RequestAlias``: the alias name each key was named by in this
    #: request (key id -> ``alias/...``), when it was named by an alias.
    request_aliases: dict[str, str] | None = None
    #: CloudTrail's ``additionalEventData``, when the frontend has facts to
    #: add (the counts of a refusal summary, see :mod:`kmscore.service.refusals`).
    additional_event_data: Mapping[str, Any] | None = None
    #: The key states this operation may act in (its
    #: :class:`~kmscore.model.keystate.StateRule`); None for an operation that
    #: acts on no key.
    states: StateRule | None = None

    def key(self, ref: str, *, allow_alias: bool = True) -> KeyRecord:
        """The key ``ref`` names, checked to be in a state this operation may act in.

        The one way a handler gets a key: :meth:`resolve`, then
        :meth:`check_state`.

        Raises:
            NotFoundException: as :meth:`KeyService.resolve`.
            DisabledException: the key is disabled and the operation needs it
                enabled.
            KMSInvalidStateException: the key's state does not allow the
                operation.
        """
        key = self.resolve(ref, allow_alias=allow_alias)
        self.check_state(key)
        return key

    def check_state(self, key: KeyRecord) -> None:
        """Apply this operation's state rule to ``key`` (again, under a lock).

        Raises:
            DisabledException: as :meth:`key`.
            KMSInvalidStateException: as :meth:`key`, or the operation has no
                state rule.
        """
        states = self.states
        if states is None:
            raise KMSInvalidStateException(f"{self.operation} has no key state rule.")
        state = key.state if key.custom_key_store_id is None else self.service.key_state(key)
        if state not in states.allowed:
            states.check(key.arn, state)

    def resolve(self, ref: str, *, allow_alias: bool = True) -> KeyRecord:
        """Resolve a key reference (see :meth:`KeyService.resolve`) and note the key.

        The key's ARN goes into the call's resources at once, so the audit
        record names it even when a later check (state, usage) refuses.

        Raises:
            NotFoundException: as :meth:`KeyService.resolve`.
        """
        key = self.service.resolve(ref, allow_alias=allow_alias)
        if key.arn not in self.resources:
            self.resources.append(key.arn)
        if "alias/" in ref:
            alias = parse_key_ref(ref).alias_name
            if alias is not None:
                if self.request_aliases is None:
                    self.request_aliases = {}
                self.request_aliases[key.key_id] = alias
        return key

    def authorize(
        self,
        key: KeyRecord | None,
        action: str | None = None,
        conditions: Mapping[str, Any] | None = None,
        context_key: bytes | None = None,
    ) -> None:
        """Ask the service's authorizer whether the caller may act on ``key``.

        Args:
            key: The key acted on, or None for account-level actions.
            action: The IAM action; ``kms:<operation>`` by default.
            conditions: Condition key values of this request, by their policy
                names (``kms:EncryptionContext`` holds the whole context).
            context_key: The canonical encryption context bytes, when the
                conditions are just the context and the algorithm: a cheap,
                exact key for the decision cache.

        Raises:
            AccessDeniedException: the caller may not.
        """
        if key is not None and key.arn not in self.resources:
            self.resources.append(key.arn)
        if action is None:
            action = _ACTIONS.get(self.operation) or _action(self.operation)
        self.service.authorizer.authorize(self, action, key, conditions or {}, context_key)
        self.authorized = True


class Authorizer(Protocol):
    """Decides whether a call may proceed (policies and grants plug in here)."""

    def authorize(
        self,
        call: Call,
        action: str,
        key: KeyRecord | None,
        conditions: Mapping[str, Any],
        context_key: bytes | None = None,
    ) -> None:
        """Return to allow; raise AccessDeniedException to deny."""
        ...


class Auditor(Protocol):
    """Records every call, allowed or denied."""

    def record(
        self,
        call: Call,
        request: Mapping[str, Any],
        response: Mapping[str, Any] | None,
        error: KMSError | None,
    ) -> None:
        """Make the record durable, or raise KMSInternalException."""
        ...


class NullAuditor:
    """Records nothing; the audit trail plugs in here."""

    def record(
        self,
        call: Call,
        request: Mapping[str, Any],
        response: Mapping[str, Any] | None,
        error: KMSError | None,
    ) -> None:
        """See :class:`Auditor`."""
