"""Write kmscore/client/_methods.py: typed client methods from the request shapes.

Every client (in-process, socket, asyncio) gets one method per served
operation, with boto3's name and a ``TypedDict`` of the operation's request
members, so a misspelt method or member fails mypy. The shapes are the ones
the dispatcher validates against (:mod:`kmscore.operations`); this script
turns them into source, which is checked in so the socket clients need not
load the server to be typed.

Usage::

    python tools/gen_client_methods.py          # rewrite the file
    python tools/gen_client_methods.py --check  # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "kmscore" / "client" / "_methods.py"

if __name__ == "__main__":  # run as a script from a checkout: import the tree's kmscore
    sys.path.insert(0, str(ROOT))

from kmscore.model.validation import (  # noqa: E402
    Blob,
    Boolean,
    Integer,
    List,
    Map,
    Member,
    String,
    Structure,
    Timestamp,
)
from kmscore.operations import OPERATIONS  # noqa: E402
from kmscore.wire.operations import method_name  # noqa: E402

HEADER = '''"""Typed methods of the clients, one per served operation (generated).

Written by ``tools/gen_client_methods.py`` from the request shapes the
dispatcher validates against; do not edit by hand. A test fails when this file
and the shapes disagree.

Each request is a ``TypedDict`` of the operation's members with AWS's names,
so mypy rejects a misspelt method, a misspelt member, a missing required one
and a value of the wrong type. Responses are the AWS response members.
"""

# No ``from __future__ import annotations``: the TypedDicts are evaluated, so
# their ``__required_keys__`` are right at run time too.
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Required, TypedDict, Unpack

__all__ = ["AsyncKMSMethods", "KMSMethods"]

Buffer = bytes | bytearray | memoryview
'''


LINE = 100
TRIPLE = '"' * 3


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Writer:
    def __init__(self) -> None:
        self.aliases: dict[tuple[str, ...], str] = {}
        self.alias_source: list[str] = []
        self.structures: list[str] = []
        self.seen: dict[str, str] = {}

    def enum(self, values: tuple[str, ...], member_name: str, name: str) -> str:
        """An alias for a string enum: the member's name, or the longer name once it is taken."""
        alias = self.aliases.get(values)
        if alias is None:
            taken = member_name in self.aliases.values() or member_name in {"Buffer"}
            alias = self.aliases[values] = name if taken else member_name
            one_line = f"{alias} = Literal[{', '.join(_q(v) for v in values)}]"
            if len(one_line) <= LINE:
                self.alias_source.append(one_line + "\n")
            else:
                items = "".join(f"    {_q(v)},\n" for v in values)
                self.alias_source.append(f"{alias} = Literal[\n{items}]\n")
        return alias

    def annotation(self, member: Member, member_name: str, name: str) -> str:
        if isinstance(member, String):
            return self.enum(member.enum, member_name, name) if member.enum else "str"
        if isinstance(member, Blob):
            return "Buffer"
        if isinstance(member, Boolean):
            return "bool"
        if isinstance(member, Integer):
            return "int"
        if isinstance(member, Timestamp):
            return "datetime"
        if isinstance(member, Map):
            return "Mapping[str, str]"
        if isinstance(member, List):
            return f"Sequence[{self.annotation(member.item, member_name, name)}]"
        if isinstance(member, Structure):
            return self.structure(name, member.members)
        raise TypeError(f"no annotation for {type(member).__name__}")

    def structure(self, name: str, members: Mapping[str, Member]) -> str:
        body = self.fields(members, name)
        existing = self.seen.get(name)
        if existing is not None and existing != body:
            raise ValueError(f"two different structures named {name}")
        if existing is None:
            self.seen[name] = body
            self.structures.append(f"class {name}(TypedDict, total=False):\n{body}")
        return name

    def fields(self, members: Mapping[str, Member], prefix: str) -> str:
        if not members:
            return "    pass\n"
        lines = []
        for member_name, member in members.items():
            kind = self.annotation(member, member_name, f"{prefix}{member_name}")
            if member.required:
                kind = f"Required[{kind}]"
            line = f"    {member_name}: {kind}"
            if len(line) > LINE:
                raise ValueError(f"{prefix}.{member_name}: annotation too long for one line")
            lines.append(line + "\n")
        return "".join(lines)


def _docstring(handler: object) -> str:
    doc = inspect.getdoc(handler) or ""
    summary = " ".join(doc.split("\n\n", 1)[0].split()) or "See the AWS KMS API reference."
    summary = summary.replace(TRIPLE, "'''")
    if len(summary) + 14 <= LINE:
        return f"        {TRIPLE}{summary}{TRIPLE}\n"
    lines = textwrap.wrap(summary, LINE - 8)
    return f"        {TRIPLE}" + "\n        ".join(lines) + f"\n        {TRIPLE}\n"


def _method(name: str, handler: object, *, asynchronous: bool) -> str:
    method = method_name(name)
    keyword = "async def" if asynchronous else "def"
    params = f"self, **request: Unpack[{name}Request]"
    one_line = f"    {keyword} {method}({params}) -> dict[str, Any]:"
    if len(one_line) <= LINE:
        head = one_line + "\n"
    else:
        head = f"    {keyword} {method}(\n        {params}\n    ) -> dict[str, Any]:\n"
    call = "await self._invoke" if asynchronous else "self._invoke"
    return head + _docstring(handler) + f"        return {call}({_q(name)}, request)\n"


def _client_class(name: str, doc: str, *, asynchronous: bool) -> str:
    keyword = "async def" if asynchronous else "def"
    methods = "\n".join(
        _method(op, OPERATIONS[op].handler, asynchronous=asynchronous) for op in sorted(OPERATIONS)
    )
    return (
        f"class {name}:\n"
        f"    {TRIPLE}{doc}{TRIPLE}\n\n"
        "    __slots__ = ()\n\n"
        f"    {keyword} _invoke(self, operation: str, request: Mapping[str, Any])"
        " -> dict[str, Any]:\n"
        f"        {TRIPLE}Run ``operation`` with ``request``; each client supplies this.{TRIPLE}\n"
        "        raise NotImplementedError\n\n" + methods
    )


def render() -> str:
    """The source of kmscore/client/_methods.py."""
    writer = _Writer()
    for name in sorted(OPERATIONS):
        writer.structure(f"{name}Request", OPERATIONS[name].shape)
    sync = _client_class(
        "KMSMethods",
        "The operations, for a client whose calls return their answer.",
        asynchronous=False,
    )
    aio = _client_class(
        "AsyncKMSMethods",
        "The operations, for an asyncio client whose calls are awaited.",
        asynchronous=True,
    )
    return (
        HEADER
        + "\n"
        + "".join(writer.alias_source)
        + "\n\n"
        + "\n\n".join(writer.structures)
        + "\n\n"
        + sync
        + "\n\n"
        + aio
    )


def main() -> int:
    """Rewrite the file, or with ``--check`` report whether it is stale."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if TARGET.read_text() != text:
            print(f"{TARGET} is stale: run python tools/gen_client_methods.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
