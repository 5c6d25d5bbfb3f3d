"""Wildcard matching: the linear-time matcher agrees with a regex oracle."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from kmscore.policy._patterns import Glob, GlobSet, parse_template


def oracle(pattern: str, text: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.DOTALL) is not None


def arn_oracle(pattern: str, text: str) -> bool:
    if pattern == "*":
        return True
    patterns, values = pattern.split(":", 5), text.split(":", 5)
    return len(patterns) == len(values) and all(map(oracle, patterns, values))


small_text = st.text(alphabet="ab:\n", max_size=12)
small_pattern = st.text(alphabet="ab:*?", max_size=8)


@given(small_pattern, small_text)
def test_glob_agrees_with_regex(pattern, text):
    assert Glob.compile(pattern).matches(text) is oracle(pattern, text)


@given(st.lists(small_pattern, min_size=1, max_size=3), small_text)
def test_glob_set_is_any_of_its_patterns(patterns, text):
    assert GlobSet(patterns).matches(text) is any(oracle(p, text) for p in patterns)


@given(small_pattern, small_text)
def test_arn_glob_matches_part_by_part(pattern, text):
    assert GlobSet([pattern], arn=True).matches(text) is arn_oracle(pattern, text)


@given(st.text(alphabet="AbC*?", max_size=8), st.text(alphabet="aBc", max_size=8))
def test_fold_case(pattern, text):
    folded = GlobSet([pattern], fold_case=True)
    assert folded.matches(text.lower()) is oracle(pattern.lower(), text.lower())


def test_many_stars_do_not_backtrack():
    # A backtracking regex translation of this pattern would effectively hang on
    # this value (a caller picks the value, an admin the pattern); the segment
    # matcher answers at once. No timing assertion: a regression shows as a hang.
    glob = Glob.compile("*a*a*a*a*a*a*a*c")
    assert not glob.matches("a" * 20000)
    assert glob.matches("a" * 20000 + "c")


def test_templates():
    assert parse_template("no variables") is None
    assert parse_template("${unterminated") is None
    template = parse_template("home/${aws:username}/${*}")
    assert template is not None
    assert template.resolve_text({"aws:username": "alice"}) == "home/alice/*"
