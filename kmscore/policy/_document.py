"""Reading a policy document: text checks, strict JSON, the top-level grammar.

Everything that can be decided about a policy is decided once, when it is read
(see :mod:`kmscore.policy._statement` and :mod:`kmscore.policy._conditions`).
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
from kmscore.policy._context import RequestContext
from kmscore.policy._statement import ACCOUNT_ID, PolicyKind, Statement
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
# Key policies: printable ASCII and Latin-1, tab, LF, CR (AWS KMS key policy format).
_FORBIDDEN_CHAR = re.compile(r"[^\t\n\r\x20-\x7e\xa0-\xff]")


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


class PolicyDocument:
    """A parsed, validated and compiled policy.

    Attributes:
        text: The policy as given.
        kind: Key policy or identity-based policy.
        version: The ``Version`` element (``"2008-10-17"`` when absent).
        id: The ``Id`` element, or None.
        statements: The statements in document order.
    """

    __slots__ = (
        "_allows",
        "_denies",
        "id",
        "kind",
        "reads_encryption_context",
        "statements",
        "text",
        "version",
    )

    def __init__(
        self,
        text: str,
        kind: PolicyKind,
        version: str,
        policy_id: str | None,
        statements: Sequence[Statement],
        reads_encryption_context: bool = True,
    ) -> None:
        self.text = text
        #: Whether any element of the policy names ``kms:EncryptionContext``
        #: (a condition key, a policy variable, any string): when it does not,
        #: no decision by this policy depends on a request's encryption context.
        self.reads_encryption_context = reads_encryption_context
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


def _mentions(value: object, needle: str) -> bool:
    """Whether any string in a parsed JSON value (keys too), case-folded, holds ``needle``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if needle in item.lower():
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
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
    # Read from the decoded JSON, so a name spelled with \u escapes counts too.
    reads_context = _mentions(document, "kms:encryptioncontext")
    return PolicyDocument(checked, kind, version, policy_id, statements, reads_context)


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
    if not ACCOUNT_ID.fullmatch(account):
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
