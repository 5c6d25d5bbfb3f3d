"""The one table of operations, by AWS name, and the dispatcher over it.

Every frontend (in-process client, socket daemon, HTTP endpoint, CLI) calls
:func:`dispatch`, which validates the request against the operation's shape,
runs its handler, makes sure the handler authorized the call, and hands the
outcome to the auditor, allowed or denied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

from kmscore.errors import (
    InvalidGrantTokenException,
    KMSError,
    KMSInternalException,
    UnknownOperationException,
    UnsupportedOperationException,
)
from kmscore.model.keystate import StateRule, state_rule
from kmscore.model.validation import Shape, validator
from kmscore.service import Call, Caller, KeyService, new_request_id
from kmscore.service.maintenance import maintain_if_due
from kmscore.service.xks_client import CURRENT_CALL
from kmscore.wire.operations import AWS_OPERATIONS, OPERATION_FACTS, OperationFacts

__all__ = ["OPERATIONS", "Handler", "Operation", "dispatch", "operation"]

Handler = Callable[[Call, dict[str, Any]], dict[str, Any]]
#: Slow work of a mutating operation that needs no store lock (making an RSA
#: key): it runs before the store transaction and returns the request the
#: handler then gets.
Prepare = Callable[[Call, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Operation:
    """An operation: its AWS name, request shape, handler and facts.

    Attributes:
        name: The AWS operation name.
        shape: The request shape the dispatcher validates against.
        handler: The handler.
        facts: What the static table in :mod:`kmscore.wire.operations` knows
            of it (read-only, inline, batch).
        states: The key states it may act in, for an operation that acts on
            a key (:data:`kmscore.model.keystate.STATE_RULES`).
        prepare: Slow work to do before the store transaction, if any.
        read_only: The operation changes nothing in the store (from
            ``facts``; a field, not a property, because every call reads it).
        validator: The request's checker, made once from ``shape``
            (:func:`kmscore.model.validation.validator`).
    """

    name: str
    shape: Shape
    handler: Handler
    facts: OperationFacts
    states: StateRule | None = None
    prepare: Prepare | None = None
    read_only: bool = field(init=False)
    validator: Callable[[Mapping[str, Any]], dict[str, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "read_only", self.facts.read_only)
        object.__setattr__(self, "validator", validator(self.shape))


OPERATIONS: dict[str, Operation] = {}


def operation(
    name: str, shape: Shape, *, prepare: Prepare | None = None
) -> Callable[[Handler], Handler]:
    """Register a handler under its AWS operation name.

    Args:
        name: The operation name; one the table of
            :mod:`kmscore.wire.operations` lists as served.
        shape: The request shape.
        prepare: For a mutating operation, slow work to do before the store
            transaction opens (the transaction holds the store's lock, which
            every other caller in the process needs).

    Raises:
        ValueError: the name is registered already, or the table does not
            list it as served.
    """
    facts = OPERATION_FACTS.get(name)
    if facts is None or not facts.served:
        raise ValueError(f"operation {name} is not a served operation of kmscore.wire.operations")

    def register(handler: Handler) -> Handler:
        if name in OPERATIONS:
            raise ValueError(f"operation {name} is registered twice")
        OPERATIONS[name] = Operation(name, shape, handler, facts, state_rule(name), prepare)
        return handler

    return register


def check_grant_tokens(service: KeyService, tokens: list[str]) -> tuple[Any, ...]:
    """Grant tokens must name grants this service issued.

    Returns:
        The grants, which then count for this call at once.

    Raises:
        InvalidGrantTokenException: a token names no grant.
    """
    grants = []
    for token in tokens:
        grant = service.store.get_grant_by_token(token)
        if grant is None:
            raise InvalidGrantTokenException("A grant token is not valid.")
        grants.append(grant)
    return tuple(grants)


def dispatch(
    service: KeyService,
    name: str,
    request: Mapping[str, Any],
    caller: Caller,
    *,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Run one operation for a caller.

    Args:
        service: The key service.
        name: The AWS operation name, e.g. ``"GenerateDataKey"``.
        request: The request members, with AWS names.
        caller: Who is calling.
        request_id: The request id the frontend already gave the caller (the
            HTTP endpoint's ``x-amzn-RequestId``), so the audit record carries
            the same one; a new one by default.

    Returns:
        The response members, with AWS names.

    Raises:
        KMSError: the AWS error the operation answers with.
    """
    op = OPERATIONS.get(name)
    call = Call(service, name, caller, request_id or new_request_id(), [])
    if op is None:
        # An AWS KMS operation kmscore does not serve is refused as the HTTP
        # endpoint refuses it; any other name is unknown.
        error: KMSError = (
            UnsupportedOperationException(f"{name} is not supported by this service.")
            if name in AWS_OPERATIONS
            else UnknownOperationException(f"Unknown operation {name!r}.")
        )
        service.auditor.record(call, {}, None, error)
        raise error
    read_only = call.read_only = op.read_only
    call.states = op.states
    if monotonic() >= service.maintenance_deadline:
        maintain_if_due(service)
    recorded = False
    try:
        req = op.validator(request)
        if req.get("GrantTokens"):
            call.token_grants = check_grant_tokens(service, req["GrantTokens"])
        if read_only:
            response = _run(op, call, req)
            recorded = True
            service.auditor.record(call, request, response, None)
        else:
            if op.prepare is not None:
                req = op.prepare(call, req)
            # A change and its audit record commit together: if the record
            # cannot be written, the change rolls back (fail closed).
            with service.store.transaction():
                response = _run(op, call, req)
                recorded = True
                service.auditor.record(call, request, response, None)
    except KMSError as exc:
        if not recorded:
            service.auditor.record(call, request, None, exc)
        raise
    finally:
        if service.replication_due:
            service.replicate_due()  # multi-Region keys changed: their replicas follow
    return response


def _run(op: Operation, call: Call, req: dict[str, Any]) -> dict[str, Any]:
    # An external key store's proxy requests name the caller and request id.
    token = CURRENT_CALL.set(call)
    try:
        response = op.handler(call, req)
    finally:
        CURRENT_CALL.reset(token)
    if not call.authorized:
        raise KMSInternalException(f"{op.name} did not authorize the call.")
    return response
