"""Condition operators: parsed and compiled once, evaluated on every request.

Semantics (IAM JSON policy reference, "Condition operators" and "multiple keys
and values"):

- Several values for one key are ORed; several keys and operators are ANDed.
- A negated operator (``StringNotEquals``, ``NumericNotEquals``,
  ``DateNotEquals``, ``ArnNotLike``, ``NotIpAddress``, ...) is true when the
  request value matches none of the policy values.
- A key missing from the request makes a positive operator false and a negated
  one true. ``...IfExists`` makes any operator true on a missing key.
- ``ForAllValues:`` is true when every request value passes the test, so it is
  true on a missing key or an empty set; ``ForAnyValue:`` needs at least one
  request value to pass, so it is false on a missing key or an empty set. The
  test for each request value is the operator's own (for a negated operator:
  "matches none of the policy values").
- ``Null`` is true when the key's absence (``"true"``) or presence
  (``"false"``) is as stated; an empty multi-valued key counts as absent.

Policy variables (``${aws:username}``, ``${kms:CallerAccount, 'default'}``,
``${*}``...) are substituted in the values of String and Arn operators (and in
``Resource``) for Version 2012-10-17 only, from any single-valued key of the
request context; in 2008-10-17 policies they are literal text, as in IAM.

Choices where the documentation is silent, all fail-closed:

- A plain (non-set) operator meeting a multi-valued request value holds, in an
  Allow statement, only if it holds for every value; in a Deny statement, if it
  holds for any value.
- A policy variable with no value and no default makes the condition false in an
  Allow statement and true in a Deny statement. (AWS says such a statement does
  not apply; for a Deny that would fail open.)
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Final, Protocol

from kmscore.policy._context import RequestContext
from kmscore.policy._patterns import ARN_PARTS, GlobSet, Template, Unresolved, parse_template
from kmscore.policy._values import (
    ConditionValue,
    PolicyProblem,
    as_bool,
    as_bytes,
    as_datetime,
    as_number,
    as_text,
    parse_base64,
    parse_bool,
    parse_date,
    parse_number,
)

__all__ = ["Condition", "compile_condition_block"]


class _Kind(Enum):
    STRING = "String"
    STRING_IGNORE_CASE = "StringIgnoreCase"
    STRING_LIKE = "StringLike"
    NUMERIC = "Numeric"
    DATE = "Date"
    BOOL = "Bool"
    BINARY = "Binary"
    ARN = "Arn"
    IP = "IpAddress"
    NULL = "Null"


_Compare = Callable[[Any, Any], bool]

# Operator name (lower-cased) -> (kind, comparison for ordered kinds, negated).
_OPERATORS: Final[dict[str, tuple[_Kind, _Compare, bool]]] = {
    "stringequals": (_Kind.STRING, operator.eq, False),
    "stringnotequals": (_Kind.STRING, operator.eq, True),
    "stringequalsignorecase": (_Kind.STRING_IGNORE_CASE, operator.eq, False),
    "stringnotequalsignorecase": (_Kind.STRING_IGNORE_CASE, operator.eq, True),
    "stringlike": (_Kind.STRING_LIKE, operator.eq, False),
    "stringnotlike": (_Kind.STRING_LIKE, operator.eq, True),
    "numericequals": (_Kind.NUMERIC, operator.eq, False),
    "numericnotequals": (_Kind.NUMERIC, operator.eq, True),
    "numericlessthan": (_Kind.NUMERIC, operator.lt, False),
    "numericlessthanequals": (_Kind.NUMERIC, operator.le, False),
    "numericgreaterthan": (_Kind.NUMERIC, operator.gt, False),
    "numericgreaterthanequals": (_Kind.NUMERIC, operator.ge, False),
    "dateequals": (_Kind.DATE, operator.eq, False),
    "datenotequals": (_Kind.DATE, operator.eq, True),
    "datelessthan": (_Kind.DATE, operator.lt, False),
    "datelessthanequals": (_Kind.DATE, operator.le, False),
    "dategreaterthan": (_Kind.DATE, operator.gt, False),
    "dategreaterthanequals": (_Kind.DATE, operator.ge, False),
    "bool": (_Kind.BOOL, operator.eq, False),
    "binaryequals": (_Kind.BINARY, operator.eq, False),
    "arnequals": (_Kind.ARN, operator.eq, False),
    "arnlike": (_Kind.ARN, operator.eq, False),
    "arnnotequals": (_Kind.ARN, operator.eq, True),
    "arnnotlike": (_Kind.ARN, operator.eq, True),
    "ipaddress": (_Kind.IP, operator.eq, False),
    "notipaddress": (_Kind.IP, operator.eq, True),
    "null": (_Kind.NULL, operator.eq, False),
}

# Kinds whose values may hold policy variables (IAM: string and ARN operators).
_TEMPLATED: Final = frozenset(
    {_Kind.STRING, _Kind.STRING_IGNORE_CASE, _Kind.STRING_LIKE, _Kind.ARN}
)

# Every kms: condition key AWS KMS documents, lower-cased; kms:EncryptionContext:
# and kms:RecipientAttestation: take a suffix. An unknown kms: key is rejected:
# it could never match, which would silently disable a Deny.
_KMS_KEYS: Final = frozenset(
    {
        "kms:bypasspolicylockoutsafetycheck",
        "kms:calleraccount",
        "kms:customermasterkeyspec",
        "kms:customermasterkeyusage",
        "kms:datakeypairspec",
        "kms:encryptionalgorithm",
        "kms:encryptioncontextkeys",
        "kms:expirationmodel",
        "kms:grantconstrainttype",
        "kms:grantisforawsresource",
        "kms:grantoperations",
        "kms:granteeprincipal",
        "kms:keyagreementalgorithm",
        "kms:keyorigin",
        "kms:keyspec",
        "kms:keyusage",
        "kms:macalgorithm",
        "kms:messagetype",
        "kms:multiregion",
        "kms:multiregionkeytype",
        "kms:primaryregion",
        "kms:reencryptonsamekey",
        "kms:replicaregion",
        "kms:requestalias",
        "kms:resourcealiases",
        "kms:retiringprincipal",
        "kms:rotationperiodindays",
        "kms:schedulekeydeletionpendingwindowindays",
        "kms:signingalgorithm",
        "kms:validto",
        "kms:viaservice",
        "kms:wrappingalgorithm",
        "kms:wrappingkeyspec",
    }
)
_KMS_PREFIXED: Final = ("kms:encryptioncontext:", "kms:recipientattestation:")
# Deprecated names that AWS KMS still honours as the same key.
_KMS_ALIASES: Final = {
    "kms:customermasterkeyspec": "kms:keyspec",
    "kms:customermasterkeyusage": "kms:keyusage",
}
_CONDITION_KEY = re.compile(r"[A-Za-z0-9._-]+:\S.*", re.DOTALL)


class _Matcher(Protocol):
    def __call__(self, value: ConditionValue, values: Mapping[str, ConditionValue]) -> bool: ...


def normalize_condition_key(key: str) -> str:
    """The lower-cased condition key, with deprecated KMS names mapped.

    Raises:
        PolicyProblem: The key is malformed or an unknown ``kms:`` key.
    """
    if not _CONDITION_KEY.fullmatch(key):
        raise PolicyProblem(f"invalid condition key {key!r}")
    folded = key.lower()
    if folded.startswith("kms:"):
        prefixed = next((p for p in _KMS_PREFIXED if folded.startswith(p)), None)
        if prefixed is not None:
            if len(folded) == len(prefixed):
                raise PolicyProblem(f"condition key {key!r} names no context key")
        elif folded not in _KMS_KEYS:
            raise PolicyProblem(f"unknown AWS KMS condition key {key!r}")
    return _KMS_ALIASES.get(folded, folded)


def _policy_text(value: object, operator_name: str, key: str) -> str:
    """A condition value as its policy text (JSON numbers and booleans included)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    text = getattr(value, "json_number_text", None)
    if isinstance(text, str):
        return text
    raise PolicyProblem(
        f"condition {operator_name} on {key!r}: values must be strings, numbers or booleans"
    )


def _string_matcher(kind: _Kind, texts: Sequence[str], variables: bool) -> _Matcher:
    templates: list[Template] = []
    plain: list[str] = []
    for text in texts:
        template = parse_template(text) if variables and kind in _TEMPLATED else None
        if template is None:
            plain.append(text)
        else:
            templates.append(template)

    if kind is _Kind.STRING:
        exact = frozenset(plain)

        def static(text: str) -> bool:
            return text in exact

        def dynamic(template: Template, text: str, values: Mapping[str, ConditionValue]) -> bool:
            return template.resolve_text(values) == text

    elif kind is _Kind.STRING_IGNORE_CASE:
        folded = frozenset(p.lower() for p in plain)

        def static(text: str) -> bool:
            return text.lower() in folded

        def dynamic(template: Template, text: str, values: Mapping[str, ConditionValue]) -> bool:
            return template.resolve_text(values).lower() == text.lower()

    else:
        is_arn = kind is _Kind.ARN
        if is_arn:
            for text in plain:
                if text != "*" and text.count(":") < ARN_PARTS - 1:
                    raise PolicyProblem(f"{text!r} is not an ARN pattern")
        globs = GlobSet(plain, arn=is_arn)
        static = globs.matches

        def dynamic(template: Template, text: str, values: Mapping[str, ConditionValue]) -> bool:
            return template.matcher(values, arn=is_arn)(text)

    frozen_templates = tuple(templates)
    if not frozen_templates:

        def match_static(value: ConditionValue, values: Mapping[str, ConditionValue]) -> bool:
            text = value if type(value) is str else as_text(value)
            return text is not None and static(text)

        return match_static

    def match(value: ConditionValue, values: Mapping[str, ConditionValue]) -> bool:
        text = as_text(value)
        if text is None:
            return False
        if static(text):
            return True
        return any(dynamic(t, text, values) for t in frozen_templates)

    return match


def _ordered_matcher(
    parsed: Sequence[Any], convert: Callable[[ConditionValue], Any], compare: _Compare
) -> _Matcher:
    targets = tuple(parsed)

    def match(value: ConditionValue, values: Mapping[str, ConditionValue]) -> bool:
        converted = convert(value)
        if converted is None:
            return False
        return any(compare(converted, target) for target in targets)

    return match


def _ip_matcher(texts: Sequence[str]) -> _Matcher:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise PolicyProblem(f"{text!r} is not an IP address or CIDR range") from None

    def match(value: ConditionValue, values: Mapping[str, ConditionValue]) -> bool:
        if not isinstance(value, str):
            return False
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return any(address in network for network in networks)

    return match


def _build_matcher(
    kind: _Kind, compare: _Compare, texts: Sequence[str], variables: bool
) -> _Matcher:
    if kind in (_Kind.STRING, _Kind.STRING_IGNORE_CASE, _Kind.STRING_LIKE, _Kind.ARN):
        return _string_matcher(kind, texts, variables)
    if kind is _Kind.NUMERIC:
        numbers: list[Decimal] = [parse_number(t) for t in texts]
        return _ordered_matcher(numbers, as_number, compare)
    if kind is _Kind.DATE:
        dates: list[datetime] = [parse_date(t) for t in texts]
        return _ordered_matcher(dates, as_datetime, compare)
    if kind is _Kind.BOOL:
        return _ordered_matcher([parse_bool(t) for t in texts], as_bool, compare)
    if kind is _Kind.BINARY:
        return _ordered_matcher([parse_base64(t) for t in texts], as_bytes, compare)
    return _ip_matcher(texts)


class Condition:
    """One compiled (operator, condition key, values) test.

    Attributes:
        operator: The operator as written in the policy.
        key: The condition key, lower-cased.
    """

    __slots__ = (
        "_deny",
        "_for_all",
        "_for_any",
        "_if_exists",
        "_match",
        "_missing",
        "_negated",
        "_null_expect",
        "key",
        "operator",
    )

    def __init__(
        self,
        operator_name: str,
        key: str,
        raw_values: Sequence[object],
        *,
        deny: bool,
        variables: bool = True,
    ) -> None:
        """Parse one condition.

        Args:
            operator_name: The operator, e.g. ``ForAnyValue:StringLikeIfExists``.
            key: The condition key as written.
            raw_values: The policy values (strings, JSON numbers or booleans).
            deny: Whether the statement is a Deny (for the fail-closed choices).
            variables: Whether ``${...}`` is a policy variable (Version
                2012-10-17) rather than literal text.

        Raises:
            PolicyProblem: Unknown operator, bad key or bad value.
        """
        self.operator = operator_name
        self.key = normalize_condition_key(key)
        self._deny = deny
        name = operator_name.lower()
        set_prefix, _, base = name.rpartition(":")
        if set_prefix not in ("", "forallvalues", "foranyvalue"):
            raise PolicyProblem(f"unknown condition operator {operator_name!r}")
        self._for_all = set_prefix == "forallvalues"
        self._for_any = set_prefix == "foranyvalue"
        self._if_exists = base.endswith("ifexists") and base not in _OPERATORS
        if self._if_exists:
            base = base[: -len("ifexists")]
        spec = _OPERATORS.get(base)
        if spec is None or (spec[0] is _Kind.NULL and (self._if_exists or set_prefix)):
            raise PolicyProblem(f"unknown condition operator {operator_name!r}")
        kind, compare, self._negated = spec
        if self._for_all and self.key.startswith("kms:encryptioncontext:"):
            # AWS KMS refuses this too (OverlyPermissiveCondition): it would match
            # requests without the context pair or with any other pair.
            raise PolicyProblem(
                f"OverlyPermissiveCondition: {operator_name} with the single-valued key "
                f"{key!r} matches requests without that encryption context; remove ForAllValues"
            )
        if not raw_values:
            raise PolicyProblem(f"condition {operator_name} on {key!r} has no values")
        texts = [_policy_text(v, operator_name, key) for v in raw_values]
        try:
            if kind is _Kind.NULL:
                self._null_expect = frozenset(parse_bool(t) for t in texts)
                self._match: _Matcher | None = None
            else:
                self._null_expect = frozenset()
                self._match = _build_matcher(kind, compare, texts, variables)
        except PolicyProblem as problem:
            raise PolicyProblem(f"condition {operator_name} on {key!r}: {problem}") from None

        if self._if_exists or self._for_all:
            self._missing = True
        elif self._for_any:
            self._missing = False
        else:
            self._missing = self._negated

    def evaluate(self, ctx: RequestContext) -> bool:
        """Whether the condition holds for the request."""
        values = ctx.lookup
        value = values.get(self.key)
        match = self._match
        if match is None:  # Null
            return (value is None or value == ()) in self._null_expect
        if value is None or value == ():
            return self._missing
        negated = self._negated
        try:
            if self._for_all or self._for_any:
                items: tuple[ConditionValue, ...] = value if isinstance(value, tuple) else (value,)
                if items == ("",):
                    return self._missing
                results = (match(item, values) is not negated for item in items)
                return all(results) if self._for_all else any(results)
            if isinstance(value, tuple):
                results = (match(item, values) is not negated for item in value)
                return any(results) if self._deny else all(results)
            return match(value, values) is not negated
        except Unresolved:
            return self._deny


def compile_condition_block(
    block: object, *, deny: bool, variables: bool = True
) -> tuple[Condition, ...]:
    """Compile a statement's ``Condition`` object.

    Args:
        block: The parsed JSON value of the ``Condition`` element.
        deny: Whether the statement is a Deny.
        variables: Whether policy variables are substituted.

    Returns:
        The conditions, all of which must hold.

    Raises:
        PolicyProblem: The block is malformed.
    """
    if not isinstance(block, dict):
        raise PolicyProblem("Condition must be an object")
    conditions: list[Condition] = []
    for operator_name, keys in block.items():
        if not isinstance(keys, dict) or not keys:
            raise PolicyProblem(
                f"condition {operator_name} must be an object of condition keys to values"
            )
        seen: set[str] = set()
        for key, raw in keys.items():
            items: Iterable[object] = raw if isinstance(raw, list) else [raw]
            condition = Condition(operator_name, key, list(items), deny=deny, variables=variables)
            if condition.key in seen:
                raise PolicyProblem(f"condition {operator_name} names the key {key!r} twice")
            seen.add(condition.key)
            conditions.append(condition)
    return tuple(conditions)
