"""Wildcard patterns and policy variables, compiled once when a policy is read.

Policies use two wildcards: ``*`` (any run of characters, possibly empty) and
``?`` (exactly one character). A pattern is split at its stars into fixed-length
segments, and a value is matched by anchoring the first and last segment and
finding the middle ones leftmost-first. That is exact for this wildcard
language and takes time linear in the value for each segment, so a request value
chosen by a caller cannot make a policy with several stars backtrack
exponentially, as a translated regular expression could.

ARN patterns (``ArnLike``, ``Resource``) match each of the six colon-separated
parts of an ARN separately: a wildcard in the region part never reaches into
the account part. The sixth part (the resource) keeps any further colons.

Policy variables (``${aws:username}``, ``${kms:CallerAccount, 'default'}`` and
the escapes ``${*}``, ``${?}``, ``${$}``) are parsed into a :class:`Template`
and resolved from the request context on each evaluation; substituted text is
always literal, never a wildcard.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Final

from kmscore.policy._values import ConditionValue, PolicyProblem, as_text

__all__ = ["ARN_PARTS", "Glob", "GlobSet", "Template", "Unresolved", "parse_template"]

ARN_PARTS: Final = 6

# A token of a pattern: (True, "*"), (True, "?") for wildcards, (False, text) for literal text.
_Token = tuple[bool, str]
_Segment = str | re.Pattern[str]


class Unresolved(Exception):
    """A policy variable has no value in the request context and no default."""


def _tokens(pattern: str) -> tuple[_Token, ...]:
    out: list[_Token] = []
    literal: list[str] = []
    for ch in pattern:
        if ch in "*?":
            if literal:
                out.append((False, "".join(literal)))
                literal.clear()
            out.append((True, ch))
        else:
            literal.append(ch)
    if literal:
        out.append((False, "".join(literal)))
    return tuple(out)


def _segment(parts: Sequence[_Token]) -> tuple[_Segment, int]:
    """One star-free run of tokens as a literal string or a fixed-length regex."""
    if all(not wild for wild, _ in parts):
        text = "".join(t for _, t in parts)
        return text, len(text)
    regex = "".join("." if wild else re.escape(t) for wild, t in parts)
    length = sum(1 if wild else len(t) for wild, t in parts)
    return re.compile(regex, re.DOTALL), length


class Glob:
    """One wildcard pattern, matched in linear time (see the module docstring)."""

    __slots__ = ("_head", "_head_len", "_middle", "_min_len", "_starred", "_tail", "_tail_len")

    def __init__(self, tokens: Sequence[_Token]) -> None:
        runs: list[list[_Token]] = [[]]
        for token in tokens:
            if token == (True, "*"):
                runs.append([])
            else:
                runs[-1].append(token)
        segments = [_segment(run) for run in runs]
        self._starred = len(segments) > 1
        self._head, self._head_len = segments[0]
        self._tail, self._tail_len = segments[-1] if self._starred else ("", 0)
        self._middle = tuple(segments[1:-1])
        self._min_len = sum(length for _, length in segments)

    @classmethod
    def compile(cls, pattern: str) -> Glob:
        """Compile a pattern written with ``*`` and ``?`` wildcards."""
        return _compile_tokens(_tokens(pattern))

    def matches(self, text: str) -> bool:
        """Whether the whole of ``text`` matches the pattern."""
        if not self._starred:
            head = self._head
            if isinstance(head, str):
                return text == head
            return len(text) == self._head_len and head.fullmatch(text) is not None
        if len(text) < self._min_len:
            return False
        head, tail = self._head, self._tail
        if isinstance(head, str):
            if not text.startswith(head):
                return False
        elif head.match(text) is None:
            return False
        end = len(text) - self._tail_len
        if isinstance(tail, str):
            if not text.endswith(tail):
                return False
        elif tail.fullmatch(text, end) is None:
            return False
        pos = self._head_len
        for segment, length in self._middle:
            if isinstance(segment, str):
                found = text.find(segment, pos, end)
                if found < 0:
                    return False
                pos = found + length
            else:
                hit = segment.search(text, pos, end)
                if hit is None:
                    return False
                pos = hit.end()
        return True


@lru_cache(maxsize=1024)
def _compile_tokens(tokens: tuple[_Token, ...]) -> Glob:
    return Glob(tokens)


def _split_arn(text: str) -> list[str]:
    return text.split(":", ARN_PARTS - 1)


class _ArnGlob:
    """An ARN pattern: six parts, each skipped (``*``), compared, or globbed."""

    __slots__ = ("_parts",)

    def __init__(self, parts: Sequence[Sequence[_Token]]) -> None:
        checks: list[str | Glob | None] = []
        for part in parts:
            tokens = tuple(part)
            if tokens == ((True, "*"),):
                checks.append(None)
            elif all(not wild for wild, _ in tokens):
                checks.append("".join(text for _, text in tokens))
            else:
                checks.append(_compile_tokens(tokens))
        self._parts = tuple(checks)

    def matches(self, text: str) -> bool:
        values = _split_arn(text)
        if len(values) != len(self._parts):
            return False
        for check, value in zip(self._parts, values, strict=True):
            if check is None:
                continue
            if isinstance(check, str):
                if check != value:
                    return False
            elif not check.matches(value):
                return False
        return True


def _arn_token_parts(tokens: Sequence[_Token]) -> list[list[_Token]]:
    """Split tokens at the first five literal colons."""
    parts: list[list[_Token]] = [[]]
    for wild, text in tokens:
        if wild:
            parts[-1].append((wild, text))
            continue
        pieces = text.split(":")
        for i, piece in enumerate(pieces):
            if i > 0:
                if len(parts) < ARN_PARTS:
                    parts.append([])
                else:
                    parts[-1].append((False, ":"))
            if piece:
                parts[-1].append((False, piece))
    return parts


def _matcher_for(tokens: Sequence[_Token], arn: bool) -> Callable[[str], bool]:
    if arn and list(tokens) != [(True, "*")]:
        return _ArnGlob(_arn_token_parts(tokens)).matches
    return _compile_tokens(tuple(tokens)).matches


class GlobSet:
    """Several patterns; a value matches when it matches any of them.

    Literal patterns go into one frozenset and a lone ``*`` short-circuits, so
    the common cases cost one hash lookup. With ``fold_case`` the patterns are
    lower-cased and the caller must pass lower-cased text.
    """

    __slots__ = ("_any", "_literals", "_wild")

    def __init__(
        self, patterns: Iterable[str], *, fold_case: bool = False, arn: bool = False
    ) -> None:
        literals: set[str] = set()
        wild: list[Callable[[str], bool]] = []
        self._any = False
        for pattern in patterns:
            text = pattern.lower() if fold_case else pattern
            if text == "*":
                self._any = True
            elif "*" in text or "?" in text:
                wild.append(_matcher_for(_tokens(text), arn))
            else:
                literals.add(text)
        self._literals = frozenset(literals)
        self._wild = tuple(wild)

    @property
    def matches_everything(self) -> bool:
        """True when one of the patterns is a lone ``*``."""
        return self._any

    def matches(self, text: str) -> bool:
        """Whether ``text`` matches any pattern."""
        if self._any or text in self._literals:
            return True
        for match in self._wild:
            if match(text):
                return True
        return False


_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_VARIABLE_BODY = re.compile(r"\s*([A-Za-z0-9._:/@+=,-]+)\s*(?:,\s*'([^']*)'\s*)?")
_ESCAPES: Final = {"*": "*", "?": "?", "$": "$"}


class Template:
    """A policy string with variables, resolved per request.

    Parts are ``(kind, text, default)``: kind ``"text"`` is policy text (which
    may hold wildcards), ``"char"`` an escaped character, ``"var"`` a condition
    key (lower-cased) with an optional default.
    """

    __slots__ = ("_parts",)

    def __init__(self, parts: Sequence[tuple[str, str, str | None]]) -> None:
        self._parts = tuple(parts)

    def resolve(self, values: Mapping[str, ConditionValue]) -> tuple[_Token, ...]:
        """The pattern tokens after substitution; substituted text is literal.

        Raises:
            Unresolved: A variable has no (single) value and no default.
        """
        tokens: list[_Token] = []
        for kind, text, default in self._parts:
            if kind == "text":
                tokens.extend(_tokens(text))
            elif kind == "char":
                tokens.append((False, text))
            else:
                value = values.get(text)
                resolved = None if value is None or isinstance(value, tuple) else as_text(value)
                if resolved is None:
                    if default is None:
                        raise Unresolved(text)
                    resolved = default
                tokens.append((False, resolved))
        return tuple(tokens)

    def resolve_text(self, values: Mapping[str, ConditionValue]) -> str:
        """The string after substitution, wildcards kept as plain characters.

        Raises:
            Unresolved: A variable has no (single) value and no default.
        """
        return "".join(text for _, text in self.resolve(values))

    def matcher(self, values: Mapping[str, ConditionValue], *, arn: bool) -> Callable[[str], bool]:
        """A matcher for the pattern after substitution.

        Raises:
            Unresolved: A variable has no (single) value and no default.
        """
        return _matcher_for(self.resolve(values), arn)


def parse_template(text: str) -> Template | None:
    """Parse policy variables out of ``text``; None when it has none.

    Raises:
        PolicyProblem: A ``${...}`` is not a valid variable.
    """
    if "${" not in text:
        return None
    parts: list[tuple[str, str, str | None]] = []
    pos = 0
    for found in _VARIABLE.finditer(text):
        if found.start() > pos:
            parts.append(("text", text[pos : found.start()], None))
        body = found.group(1)
        if body in _ESCAPES:
            parts.append(("char", _ESCAPES[body], None))
        else:
            named = _VARIABLE_BODY.fullmatch(body)
            if named is None:
                raise PolicyProblem(f"invalid policy variable {found.group(0)!r}")
            parts.append(("var", named.group(1).lower(), named.group(2)))
        pos = found.end()
    if pos < len(text):
        parts.append(("text", text[pos:], None))
    if not any(kind != "text" for kind, _, _ in parts):
        return None
    return Template(parts)
