"""Authorization of every call: key policies, identity policies and grants.

:class:`PolicyAuthorizer` is the service's :class:`~kmscore.service.Authorizer`.
For a call on a key it evaluates, as AWS KMS does (:mod:`kmscore.policy`):
an explicit Deny anywhere wins; otherwise an Allow from the key policy, or from
the caller's identity policy when the key policy delegates to the account, or
from a grant; otherwise AccessDeniedException. Calls on no key (CreateKey,
ListKeys, GenerateRandom...) are decided by the identity policy alone.

Speed: parsed policies are cached per policy text, grants per key, and
decisions per (caller, action, key revision, conditions) for at most
:data:`DECISION_TTL` seconds (so time conditions stay within that of exact).
Every policy, grant or principal change bumps the service's access epoch,
which empties these caches; so does noticing another process's change.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from kmscore.errors import AccessDeniedException, KMSError
from kmscore.model.grant import Grant, derived_grant_allowed, grant_allows
from kmscore.model.key import KeyRecord
from kmscore.policy import (
    Effect,
    PolicyDocument,
    RequestContext,
    authorize,
    encryption_context_values,
    parse_policy,
)
from kmscore.policy import (
    PolicyKind as _Kind,
)

if TYPE_CHECKING:
    from kmscore.model.caller import Caller
    from kmscore.model.principal import Principal
    from kmscore.service.call import Call
    from kmscore.service.key_service import KeyService

__all__ = ["DECISION_TTL", "GRANT_CONSTRAINTS", "UNMAPPED", "PolicyAuthorizer"]

DECISION_TTL: Final = 1.0
#: ``Caller.kind`` of a caller the frontend could not map to a principal.
UNMAPPED: Final = "Unmapped"
#: A CreateGrant request's constraints, passed with its conditions: the
#: authorizer checks them against the parent grant's; no policy sees them
#: (policies see ``kms:GrantConstraintType`` and ``kms:EncryptionContext:``).
GRANT_CONSTRAINTS: Final = "kmscore:GrantConstraints"
_CACHE_MAX: Final = 8192
#: AWS evaluates kms:ResourceAliases over at most 100 of a key's aliases
#: (a key has at most 50 here).
_MAX_RESOURCE_ALIASES: Final = 100
_PRINCIPAL_TYPES: Final = {"IAMUser": "User", "Root": "Account"}


def _source_ip(source: str) -> str | None:
    """``aws:SourceIp``: the caller's address, for callers over the network."""
    try:
        return str(ipaddress.ip_address(source))
    except ValueError:
        return None  # a Unix-socket or in-process caller: no address


#: Actions an unmapped caller may still take (it reveals nothing about keys).
_ANONYMOUS_ACTIONS: Final = frozenset({"kms:GenerateRandom"})


def _principal(svc: KeyService, caller: Caller) -> Principal | None:
    """The calling user, in its own account (which may be another than the key's)."""
    principals = svc.principals_for(caller.account)
    return principals.by_arn(caller.arn) if principals is not None else None


def _hashable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), str(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(value)
    return value


class PolicyAuthorizer:
    """Decides each call from key policies, identity policies and grants."""

    def __init__(self) -> None:
        """Create an authorizer with empty caches."""
        self._lock = threading.Lock()
        self._policies: dict[tuple[str, str], PolicyDocument] = {}
        self._grants: dict[str, tuple[Grant, ...]] = {}
        self._resource_values: dict[str, dict[str, Any]] = {}
        self._decisions: dict[tuple[Any, ...], tuple[float, str | None]] = {}
        self._context_readers: dict[tuple[str, str, int], bool] = {}
        self._epoch = -1

    # --- caches --------------------------------------------------------------

    def _sync(self, svc: KeyService) -> None:
        if svc.access_epoch != self._epoch:
            with self._lock:
                self._policies.clear()
                self._grants.clear()
                self._resource_values.clear()
                self._decisions.clear()
                self._context_readers.clear()
                self._epoch = svc.access_epoch

    def policy(self, text: str, kind: str) -> PolicyDocument:
        """A parsed policy, cached by its text.

        Raises:
            MalformedPolicyDocumentException: the stored text does not parse.
        """
        doc = self._policies.get((kind, text))
        if doc is None:
            doc = parse_policy(text, kind=_Kind(kind))
            if len(self._policies) >= _CACHE_MAX:
                self._policies.clear()
            self._policies[(kind, text)] = doc
        return doc

    def key_grants(self, svc: KeyService, key_id: str) -> tuple[Grant, ...]:
        """The grants on a key, cached until the access epoch moves."""
        grants = self._grants.get(key_id)
        if grants is None:
            grants = tuple(svc.store.key_grants(key_id))
            self._grants[key_id] = grants
        return grants

    def resource_values(self, svc: KeyService, key: KeyRecord) -> dict[str, Any]:
        """A key's ``aws:ResourceTag/<k>`` and ``kms:ResourceAliases`` values.

        Cached until the access epoch moves (every tag or alias change here
        moves it, and so does noticing another process's change), so ABAC sees
        a change at once rather than AWS's "up to five minutes".
        """
        values = self._resource_values.get(key.key_id)
        if values is None:
            values = {f"aws:ResourceTag/{k}": v for k, v in svc.store.list_tags(key.key_id)}
            aliases = svc.store.list_aliases(key.key_id, None, _MAX_RESOURCE_ALIASES)
            if aliases:
                values["kms:ResourceAliases"] = tuple(a.alias_name for a in aliases)
            self._resource_values[key.key_id] = values
        return values

    # --- the decision ----------------------------------------------------------

    def request_context(
        self, call: Call, action: str, key: KeyRecord | None, conditions: Mapping[str, Any]
    ) -> RequestContext:
        """The policy language's view of this request.

        Global keys: ``aws:PrincipalArn``/``Account``/``Type``/``Tag/*``,
        ``aws:userid``, ``aws:username``, ``aws:SourceIp`` (network callers),
        ``aws:SecureTransport``, ``aws:CurrentTime``/``EpochTime``,
        ``aws:RequestedRegion``, ``aws:UserAgent``, ``aws:ResourceTag/*``,
        ``aws:ViaAWSService`` and ``aws:PrincipalIsAWSService`` (always false);
        ``aws:RequestTag/*`` and ``aws:TagKeys`` come with the operation's
        conditions. KMS keys: ``kms:CallerAccount``, ``kms:KeySpec``/``Usage``/
        ``Origin``, ``kms:MultiRegion``, ``kms:RequestAlias``,
        ``kms:ResourceAliases`` and the operation's own (see docs/access.md).
        """
        svc = call.service
        caller = call.caller
        values: dict[str, Any] = {
            "kms:CallerAccount": caller.account,
            "aws:SecureTransport": caller.secure_transport,
            "aws:RequestedRegion": svc.region,
            "aws:UserAgent": caller.user_agent,
            "aws:userid": caller.principal_id,
            "aws:ViaAWSService": False,
            "aws:PrincipalIsAWSService": False,
        }
        principal_type = _PRINCIPAL_TYPES.get(caller.kind)
        if principal_type is not None:
            values["aws:PrincipalType"] = principal_type
        source_ip = _source_ip(caller.source)
        if source_ip is not None:
            values["aws:SourceIp"] = source_ip
        if caller.kind == "IAMUser":
            principal = _principal(svc, caller)
            if principal is not None:
                for k, v in principal.tags.items():
                    values[f"aws:PrincipalTag/{k}"] = v
        for name, value in conditions.items():
            if name == "kms:EncryptionContext":
                if value:
                    values.update(encryption_context_values(value))
            elif name == GRANT_CONSTRAINTS:
                continue
            elif value is not None:
                values[name] = value
        if key is not None:
            values.setdefault("kms:KeySpec", key.key_spec)
            values.setdefault("kms:KeyUsage", key.key_usage)
            values.setdefault("kms:KeyOrigin", key.origin)
            values.setdefault("kms:MultiRegion", key.multi_region)
            if key.multi_region:
                values.setdefault(
                    "kms:MultiRegionKeyType", "REPLICA" if key.is_replica else "PRIMARY"
                )
            values.update(self.resource_values(svc, key))
            if call.request_aliases is not None:
                alias = call.request_aliases.get(key.key_id)
                if alias is not None:
                    values["kms:RequestAlias"] = alias
        return RequestContext(
            action=action,
            principal_arn=caller.arn,
            principal_account=caller.account,
            resource_arn=key.arn if key is not None else None,
            condition_values=values,
        )

    def authorize(
        self,
        call: Call,
        action: str,
        key: KeyRecord | None,
        conditions: Mapping[str, Any],
        context_key: bytes | None = None,
    ) -> None:
        """See :class:`~kmscore.service.Authorizer`.

        Raises:
            AccessDeniedException: the call is not allowed.
        """
        svc = call.service
        caller = call.caller
        if caller.kind == UNMAPPED:
            if action in _ANONYMOUS_ACTIONS:
                return
            raise AccessDeniedException(
                f"{caller.arn} is not mapped to a principal of this KMS; "
                f"it may not perform: {action}"
            )
        if key is None:
            # A call on no key resolves no key, so nothing has looked for
            # another process's changes yet (an identity policy, a removed
            # user): look now, at most every 50 ms as resolving does.
            svc.recheck()
        self._sync(svc)
        cache_key: tuple[Any, ...] | None
        if call.token_grants:
            cache_key = None  # decided with extra grants: not reusable
        elif context_key is not None and key is not None:
            # The hot path: the conditions are the context and the algorithm.
            # A decision no policy or grant of this caller and key can base on
            # the context is cached for every context at once.
            if not self._reads_context(svc, call, key):
                context_key = None
            cache_key = (
                caller.arn,
                caller.secure_transport,
                caller.source,
                caller.user_agent,
                action,
                key.key_id,
                key.revision,
                context_key,
                conditions.get("kms:EncryptionAlgorithm"),
                call.request_aliases and call.request_aliases.get(key.key_id),
            )
        else:
            try:
                cache_key = (
                    caller.arn,
                    caller.secure_transport,
                    caller.source,
                    caller.user_agent,
                    action,
                    key.key_id if key is not None else None,
                    key.revision if key is not None else None,
                    tuple((k, _hashable(v)) for k, v in conditions.items()),
                    call.request_aliases and key and call.request_aliases.get(key.key_id),
                )
                hash(cache_key)
            except TypeError:
                cache_key = None
        now = time.monotonic()
        if cache_key is not None:
            hit = self._decisions.get(cache_key)
            if hit is not None and now - hit[0] < DECISION_TTL:
                if hit[1] is not None:
                    raise AccessDeniedException(hit[1])
                return
        denial: str | None = None
        try:
            self._decide(svc, call, action, key, conditions)
        except AccessDeniedException as exc:
            denial = exc.message
        if cache_key is not None:
            if len(self._decisions) >= _CACHE_MAX:
                self._decisions.clear()
            self._decisions[cache_key] = (now, denial)
        if denial is not None:
            raise AccessDeniedException(denial)

    def _identity_policy(self, svc: KeyService, caller: Caller) -> PolicyDocument | None:
        """The caller's identity-based policy, parsed; None for a caller without one.

        Raises:
            MalformedPolicyDocumentException: the stored policy does not parse.
        """
        if caller.kind != "IAMUser":
            return None
        principal = _principal(svc, caller)
        if principal is None or not principal.identity_policy:
            return None
        return self.policy(principal.identity_policy, "identity")

    def _reads_context(self, svc: KeyService, call: Call, key: KeyRecord) -> bool:
        """Whether this caller's decisions on ``key`` may depend on the encryption context.

        They may when the key policy or the caller's identity policy names
        ``kms:EncryptionContext`` anywhere, or a grant on the key has
        encryption context constraints. Cached per caller and key revision
        until the access epoch moves, like the decisions themselves.
        """
        caller = call.caller
        cache_key = (caller.arn, key.key_id, key.revision)
        reads = self._context_readers.get(cache_key)
        if reads is None:
            reads = any(g.constraints for g in self.key_grants(svc, key.key_id))
            if not reads:
                try:
                    key_policy = self.policy(key.policy or svc.default_key_policy, "key")
                    identity = self._identity_policy(svc, caller)
                    reads = key_policy.reads_encryption_context or (
                        identity is not None and identity.reads_encryption_context
                    )
                except KMSError:
                    reads = True  # a stored policy that does not parse: decide each time
            if len(self._context_readers) >= _CACHE_MAX:
                self._context_readers.clear()
            self._context_readers[cache_key] = reads
        return reads

    def _decide(
        self,
        svc: KeyService,
        call: Call,
        action: str,
        key: KeyRecord | None,
        conditions: Mapping[str, Any],
    ) -> None:
        caller = call.caller
        ctx = self.request_context(call, action, key, conditions)
        if caller.kind == "IAMUser" and _principal(svc, caller) is None:
            raise AccessDeniedException(f"User: {caller.arn} does not exist in this KMS.")
        identity = self._identity_policy(svc, caller)
        if key is None:
            # Account-level actions: IAM alone decides; the account root may
            # do them all, as in AWS.
            if caller.kind == "Root" and caller.account == svc.account:
                return
            if identity is not None:
                effect = identity.evaluate(ctx)
                if effect is Effect.ALLOW:
                    return
                reason = (
                    "with an explicit deny in an identity-based policy"
                    if effect is Effect.EXPLICIT_DENY
                    else f"because no identity-based policy allows the {action} action"
                )
            else:
                reason = f"because no identity-based policy allows the {action} action"
            raise AccessDeniedException(
                f"User: {caller.arn} is not authorized to perform: {action} on resource: * {reason}"
            )
        key_policy = self.policy(key.policy or svc.default_key_policy, "key")
        operation = action.split(":", 1)[1]
        context = conditions.get("kms:EncryptionContext")
        grants = self.key_grants(svc, key.key_id)
        if call.token_grants:
            grants = grants + tuple(g for g in call.token_grants if g.key_id == key.key_id)
        if operation == "CreateGrant":
            # Through a grant, only a grant no wider than that grant (AWS).
            granted = derived_grant_allowed(
                grants,
                caller.arn,
                conditions.get("kms:GrantOperations") or (),
                conditions.get(GRANT_CONSTRAINTS),
            )
        else:
            granted = grant_allows(grants, caller.arn, operation, context)
        authorize(key_policy, identity, granted, ctx)
