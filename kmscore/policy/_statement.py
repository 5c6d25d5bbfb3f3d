"""Policy statements: Effect, Action, Resource, Principal and Condition, compiled.

Actions are lower-cased into a literal set plus wildcard matchers, principals
sorted into exact ARNs, accounts and services, resources into ARN patterns; the
checks run cheapest-first because they run on every KMS call.

Principal matching: an ARN matches the caller exactly (a role ARN also matches
its assumed-role sessions); ``"*"`` matches everyone; wildcards inside an ARN
are malformed. The account principal (``arn:aws:iam::<account>:root`` or the
bare account id) matches the account root caller only: in a key policy it means
"the account's IAM policies decide" (see :meth:`Statement.delegates_to`). In a
Deny it matches every caller of that account, and in a NotPrincipal it excludes
narrowly in a Deny and broadly in an Allow: when in doubt, deny.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Final

from kmscore.policy._conditions import Condition, compile_condition_block
from kmscore.policy._context import RequestContext
from kmscore.policy._patterns import ARN_PARTS, GlobSet, Template, Unresolved, parse_template
from kmscore.policy._values import PolicyProblem

__all__ = ["ACCOUNT_ID", "PolicyKind", "Statement"]

_STATEMENT_FIELDS: Final = frozenset(
    {
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    }
)
_ACTION = re.compile(r"\*|[A-Za-z0-9-]+:[A-Za-z0-9*?]+")
ACCOUNT_ID = re.compile(r"[0-9]{12}")
_ROOT_ARN = re.compile(r"arn:[a-z0-9-]+:iam::([0-9]{12}):root")
_PRINCIPAL_ARN = re.compile(
    r"arn:[a-z0-9-]+:(?:iam::[0-9]{12}:(?:user|role)|sts::[0-9]{12}:(?:assumed-role|federated-user))"
    r"/[A-Za-z0-9_+=,.@/-]+"
)
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")


class PolicyKind(Enum):
    """Which kind of policy a document is; it decides the Principal rules."""

    KEY = "key"
    """A key policy: every statement names a Principal or NotPrincipal."""
    IDENTITY = "identity"
    """An identity-based policy: it applies to the principal it is attached to, so no Principal."""


def _strings(value: object, element: str) -> list[str]:
    """An element that is a string or a non-empty list of strings."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise PolicyProblem(f"{element} must not be an empty list")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise PolicyProblem(f"{element} must be a string or a list of strings")
        out.append(item)
    return out


class _Principals:
    """A Principal or NotPrincipal element, sorted for set lookups."""

    __slots__ = ("accounts", "anyone", "arns", "services")

    def __init__(self, value: object, element: str) -> None:
        self.anyone = False
        arns: set[str] = set()
        accounts: set[str] = set()
        services: set[str] = set()
        if value == "*":
            self.anyone = True
        elif not isinstance(value, dict) or not value:
            raise PolicyProblem(f'{element} must be "*" or an object such as {{"AWS": ...}}')
        else:
            for kind, entries in value.items():
                names = _strings(entries, f"{element} {kind}")
                if kind == "AWS":
                    for name in names:
                        self._add_aws(name, element, arns, accounts)
                elif kind == "Service":
                    for name in names:
                        if not _SERVICE.fullmatch(name):
                            raise PolicyProblem(f"{element}: invalid service principal {name!r}")
                        services.add(name)
                else:
                    raise PolicyProblem(f"{element}: unsupported principal type {kind!r}")
        self.arns = frozenset(arns)
        self.accounts = frozenset(accounts)
        self.services = frozenset(services)

    def _add_aws(self, name: str, element: str, arns: set[str], accounts: set[str]) -> None:
        if name == "*":
            self.anyone = True
            return
        if ACCOUNT_ID.fullmatch(name):
            accounts.add(name)
            return
        root = _ROOT_ARN.fullmatch(name)
        if root:
            accounts.add(root.group(1))
            return
        if "*" in name or "?" in name:
            raise PolicyProblem(
                f'{element}: wildcards are not allowed in principal {name!r}; use "*" alone'
            )
        if not _PRINCIPAL_ARN.fullmatch(name):
            raise PolicyProblem(f"{element}: invalid AWS principal {name!r}")
        arns.add(name)

    def matches(self, ctx: RequestContext, *, whole_accounts: bool) -> bool:
        """Whether the caller is one of these principals.

        An account principal (``arn:aws:iam::<account>:root``) matches the
        account root caller; with ``whole_accounts`` it matches every caller
        in that account (how a Deny reads it).
        """
        if self.anyone:
            return True
        if not self.arns.isdisjoint(ctx.principal_ids):
            return True
        if ctx.root_account is not None and ctx.root_account in self.accounts:
            return True
        if whole_accounts and ctx.principal_account in self.accounts:
            return True
        return ctx.principal_arn in self.services


class _Resources:
    """A Resource or NotResource element: ARN patterns, some with variables."""

    __slots__ = ("_globs", "_templates", "matches_everything")

    def __init__(self, value: object, element: str, variables: bool) -> None:
        plain: list[str] = []
        templates: list[Template] = []
        for pattern in _strings(value, element):
            if pattern != "*" and (
                not pattern.startswith("arn:") or pattern.count(":") < ARN_PARTS - 1
            ):
                raise PolicyProblem(f'{element} {pattern!r} is neither "*" nor an ARN')
            template = parse_template(pattern) if variables else None
            if template is None:
                plain.append(pattern)
            else:
                templates.append(template)
        self._globs = GlobSet(plain, arn=True)
        self._templates = tuple(templates)
        self.matches_everything = self._globs.matches_everything

    def matches(self, ctx: RequestContext) -> bool:
        """Whether the request's key matches; ``"*"`` also matches no key.

        Raises:
            Unresolved: A pattern's policy variable has no value.
        """
        if self._globs.matches_everything:
            return True
        arn = ctx.resource_arn
        if arn is None:
            return False
        if self._globs.matches(arn):
            return True
        for template in self._templates:
            if template.matcher(ctx.lookup, arn=True)(arn):
                return True
        return False


class Statement:
    """One compiled policy statement.

    Attributes:
        sid: The statement id, or None.
        deny: True for ``"Effect": "Deny"``.
    """

    __slots__ = (
        "_actions",
        "_conditions",
        "_every_resource",
        "_everyone",
        "_not_action",
        "_not_principal",
        "_not_resource",
        "_principals",
        "_resources",
        "deny",
        "sid",
    )

    def __init__(self, raw: dict[str, object], kind: PolicyKind, variables: bool) -> None:
        """Validate and compile one statement.

        Raises:
            PolicyProblem: The statement is malformed.
        """
        sid = raw.get("Sid")
        if "Sid" in raw and not isinstance(sid, str):
            raise PolicyProblem("Sid must be a string")
        self.sid = sid
        for name in raw:
            if name not in _STATEMENT_FIELDS:
                raise PolicyProblem(f"unknown field {name!r}")

        effect = raw.get("Effect")
        if effect not in ("Allow", "Deny"):
            if effect is None:
                raise PolicyProblem("missing Effect")
            raise PolicyProblem(f"unknown Effect {effect!r}")
        self.deny = effect == "Deny"

        name, value = self._exactly_one(raw, "Action", "NotAction")
        actions = _strings(value, name)
        for action in actions:
            if not _ACTION.fullmatch(action):
                raise PolicyProblem(f"{name} {action!r} is not of the form service:action")
        self._actions = GlobSet(actions, fold_case=True)
        self._not_action = name == "NotAction"

        name, value = self._exactly_one(raw, "Resource", "NotResource")
        self._resources = _Resources(value, name, variables)
        self._not_resource = name == "NotResource"

        if kind is PolicyKind.IDENTITY:
            for element in ("Principal", "NotPrincipal"):
                if element in raw:
                    raise PolicyProblem(f"{element} is not allowed in an identity-based policy")
            self._principals: _Principals | None = None
            self._not_principal = False
        else:
            name, value = self._exactly_one(raw, "Principal", "NotPrincipal")
            self._principals = _Principals(value, name)
            self._not_principal = name == "NotPrincipal"

        # Shortcuts for the common "Resource": "*" and "Principal": "*".
        self._every_resource = not self._not_resource and self._resources.matches_everything
        self._everyone = self._principals is None or (
            not self._not_principal and self._principals.anyone
        )

        self._conditions: tuple[Condition, ...] = (
            compile_condition_block(raw["Condition"], deny=self.deny, variables=variables)
            if "Condition" in raw
            else ()
        )

    @staticmethod
    def _exactly_one(raw: dict[str, object], name: str, negated: str) -> tuple[str, object]:
        if name in raw and negated in raw:
            raise PolicyProblem(f"{name} and {negated} cannot both be present")
        if name in raw:
            return name, raw[name]
        if negated in raw:
            return negated, raw[negated]
        raise PolicyProblem(f"missing {name} (or {negated})")

    def _principal_applies(self, ctx: RequestContext) -> bool:
        principals = self._principals
        if principals is None:
            return True
        if self._not_principal:
            # Exclusions are read narrowly in a Deny and broadly in an Allow.
            return not principals.matches(ctx, whole_accounts=not self.deny)
        return principals.matches(ctx, whole_accounts=self.deny)

    def _resource_applies(self, ctx: RequestContext) -> bool:
        try:
            return self._resources.matches(ctx) is not self._not_resource
        except Unresolved:
            return self.deny

    def applies(self, ctx: RequestContext) -> bool:
        """Whether the statement applies to the request (its Effect then counts)."""
        # Cheapest and most selective first; this runs on every KMS call.
        if self._actions.matches(ctx.action_folded) is self._not_action:
            return False
        if not self._every_resource and not self._resource_applies(ctx):
            return False
        if not self._everyone and not self._principal_applies(ctx):
            return False
        for condition in self._conditions:
            if not condition.evaluate(ctx):
                return False
        return True

    def delegates_to(self, ctx: RequestContext) -> bool:
        """Whether this Allow names the caller's account principal and applies to the request."""
        principals = self._principals
        if self.deny or principals is None or self._not_principal:
            return False
        if ctx.principal_account not in principals.accounts:
            return False
        if self._actions.matches(ctx.action_folded) is self._not_action:
            return False
        if not self._every_resource and not self._resource_applies(ctx):
            return False
        for condition in self._conditions:
            if not condition.evaluate(ctx):
                return False
        return True
