"""Reading a policy document: JSON, grammar, and compilation into matchers.

Everything that can be decided about a policy is decided here, once: actions
are lower-cased into a literal set plus wildcard matchers, principals sorted
into ARNs, accounts and services, condition values parsed to numbers and dates.
Any problem raises :class:`~kmscore.errors.MalformedPolicyDocumentException`
naming the statement and the element; nothing is skipped, nothing is guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from enum import Enum
from typing import Final, NoReturn

from kmscore.errors import MalformedPolicyDocumentException
from kmscore.policy._conditions import Condition, compile_condition_block
from kmscore.policy._context import RequestContext
from kmscore.policy._patterns import ARN_PARTS, GlobSet, Template, Unresolved, parse_template
from kmscore.policy._values import PolicyProblem

__all__ = [
    "MAX_POLICY_BYTES",
    "Effect",
    "PolicyDocument",
    "PolicyKind",
    "Statement",
    "parse_policy",
]

MAX_POLICY_BYTES: Final = 32768
VERSIONS: Final = ("2012-10-17", "2008-10-17")

_DOCUMENT_FIELDS: Final = frozenset({"Version", "Id", "Statement"})
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
# Key policies: printable ASCII and Latin-1, tab, LF, CR (AWS KMS key policy format).
_FORBIDDEN_CHAR = re.compile(r"[^\t\n\r\x20-\x7e\xa0-\xff]")
_ACTION = re.compile(r"\*|[A-Za-z0-9-]+:[A-Za-z0-9*?]+")
_ACCOUNT = re.compile(r"[0-9]{12}")
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


class Effect(Enum):
    """The outcome of evaluating one policy for one request."""

    EXPLICIT_DENY = "ExplicitDeny"
    ALLOW = "Allow"
    NOT_APPLICABLE = "NotApplicable"


class _JsonNumber:
    """A JSON number, kept as its text: condition values compare it as written."""

    __slots__ = ("json_number_text",)

    def __init__(self, text: str) -> None:
        self.json_number_text = text

    def __repr__(self) -> str:
        return self.json_number_text


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise PolicyProblem(f"duplicate JSON key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> NoReturn:
    raise PolicyProblem(f"{name} is not valid JSON")


def _load_json(text: str) -> object:
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_int=_JsonNumber,
            parse_float=_JsonNumber,
            parse_constant=_no_constants,
        )
    except PolicyProblem:
        raise
    except RecursionError:
        raise PolicyProblem("the policy is nested too deeply") from None
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        raise PolicyProblem(f"the policy is not valid JSON: {error}") from None


def _strings(value: object, element: str) -> list[str]:
    """An element that is a string or a non-empty list of strings."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise PolicyProblem(f"{element} must not be an empty list")
    for item in items:
        if not isinstance(item, str):
            raise PolicyProblem(f"{element} must be a string or a list of strings")
    return items  # type: ignore[return-value]  # every item was checked to be a str


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
        if _ACCOUNT.fullmatch(name):
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

    def action_applies(self, ctx: RequestContext) -> bool:
        """Whether the statement's Action/NotAction covers the request's action."""
        return self._actions.matches(ctx.action_folded) is not self._not_action

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


class PolicyDocument:
    """A parsed, validated and compiled policy.

    Attributes:
        text: The policy as given.
        kind: Key policy or identity-based policy.
        version: The ``Version`` element (``"2008-10-17"`` when absent).
        id: The ``Id`` element, or None.
        statements: The statements in document order.
    """

    __slots__ = ("_allows", "_denies", "id", "kind", "statements", "text", "version")

    def __init__(
        self,
        text: str,
        kind: PolicyKind,
        version: str,
        policy_id: str | None,
        statements: Sequence[Statement],
    ) -> None:
        self.text = text
        self.kind = kind
        self.version = version
        self.id = policy_id
        self.statements = tuple(statements)
        self._denies = tuple(s for s in self.statements if s.deny)
        self._allows = tuple(s for s in self.statements if not s.deny)

    def __repr__(self) -> str:
        return f"<PolicyDocument {self.kind.value} with {len(self.statements)} statement(s)>"

    def evaluate(self, ctx: RequestContext) -> Effect:
        """Evaluate the policy for one request.

        For a key policy the Principal elements decide whom each statement is
        about; an identity-based policy is about the caller it is attached to.

        Args:
            ctx: The request.

        Returns:
            ``EXPLICIT_DENY`` if a Deny statement applies, else ``ALLOW`` if an
            Allow statement applies, else ``NOT_APPLICABLE``.
        """
        for statement in self._denies:
            if statement.applies(ctx):
                return Effect.EXPLICIT_DENY
        for statement in self._allows:
            if statement.applies(ctx):
                return Effect.ALLOW
        return Effect.NOT_APPLICABLE

    def delegates_to_iam(self, ctx: RequestContext) -> bool:
        """Whether this key policy lets the caller's identity policies decide.

        True when an Allow statement names the caller's account principal
        (``arn:aws:iam::<account>:root`` or the bare account id) and its
        action, resource and conditions match the request.

        Args:
            ctx: The request.

        Returns:
            Whether the caller's identity-based policies are honoured.
        """
        for statement in self._allows:
            if statement.delegates_to(ctx):
                return True
        return False


def _where(index: int, raw: object) -> str:
    sid = raw.get("Sid") if isinstance(raw, dict) else None
    return (
        f"Statement {index} (Sid {sid!r})" if isinstance(sid, str) and sid else f"Statement {index}"
    )


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise PolicyProblem("the policy must be a JSON string")
    if not text.strip():
        raise PolicyProblem("the policy is empty")
    bad = _FORBIDDEN_CHAR.search(text)
    if bad:
        raise PolicyProblem(
            f"the policy contains the character U+{ord(bad.group()):04X} at offset {bad.start()}; "
            "only printable ASCII and Latin-1, tab, LF and CR are allowed"
        )
    size = len(text.encode("utf-8"))
    if size > MAX_POLICY_BYTES:
        raise PolicyProblem(f"the policy is {size} bytes; the limit is {MAX_POLICY_BYTES}")
    return text


def _parse(text: object, kind: PolicyKind) -> PolicyDocument:
    checked = _check_text(text)
    document = _load_json(checked)
    if not isinstance(document, dict):
        raise PolicyProblem("the policy must be a JSON object")
    for name in document:
        if name not in _DOCUMENT_FIELDS:
            raise PolicyProblem(f"unknown top-level field {name!r}")
    version = document.get("Version", "2008-10-17")
    if version not in VERSIONS:
        raise PolicyProblem(f'unsupported Version {version!r}; use "2012-10-17"')
    assert isinstance(version, str)  # narrowed by the membership test
    policy_id = document.get("Id")
    if "Id" in document and not isinstance(policy_id, str):
        raise PolicyProblem("Id must be a string")
    if "Statement" not in document:
        raise PolicyProblem("missing Statement")
    raw_statements = document["Statement"]
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise PolicyProblem("Statement must be an object or a non-empty list of objects")
    variables = version == "2012-10-17"
    statements: list[Statement] = []
    for index, raw in enumerate(raw_statements, start=1):
        try:
            if not isinstance(raw, dict):
                raise PolicyProblem("must be an object")
            statements.append(Statement(raw, kind, variables))
        except PolicyProblem as problem:
            raise PolicyProblem(f"{_where(index, raw)}: {problem}") from None
    return PolicyDocument(checked, kind, version, policy_id, statements)


def parse_policy(text: str, kind: PolicyKind = PolicyKind.KEY) -> PolicyDocument:
    """Parse, validate and compile a policy document.

    Args:
        text: The policy JSON, at most 32768 bytes of printable ASCII/Latin-1.
        kind: ``PolicyKind.KEY`` (Principal required) or
            ``PolicyKind.IDENTITY`` (Principal forbidden).

    Returns:
        The compiled policy.

    Raises:
        MalformedPolicyDocumentException: The text is not a valid policy of that
            kind; the message names the statement and the problem.
    """
    try:
        return _parse(text, kind)
    except PolicyProblem as problem:
        raise MalformedPolicyDocumentException(str(problem)) from None


def default_key_policy(account: str, partition: str = "aws") -> str:
    """The key policy AWS KMS gives a key created without one.

    One statement, "Enable IAM User Permissions", allows ``kms:*`` to the
    account principal: the account's IAM policies decide who may use the key.

    Args:
        account: The 12-digit account that owns the key.
        partition: The ARN partition.

    Returns:
        The policy JSON.

    Raises:
        ValueError: ``account`` is not 12 digits (a caller bug).
    """
    if not _ACCOUNT.fullmatch(account):
        raise ValueError(f"account {account!r} is not a 12-digit AWS account id")
    policy = {
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    return json.dumps(policy, indent=2)
