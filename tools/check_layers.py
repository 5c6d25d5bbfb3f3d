"""Check that kmscore's layers import one way only and that no modules import in a circle.

Usage: ``python tools/check_layers.py [path/to/kmscore]``; exits 1 and names every
offending import when a rule is broken. ``nox -s lint`` runs it.

The layers, bottom first; a module may import its own layer and the layers below::

    errors, fsutil            (the leaves every layer may use)
    engine, wire              (the C engine and its twin; the shared wire tables)
    model, policy             (pure values; the policy language)
    crypto                    (root key, asymmetric material)
    store
    audit
    service
    operations
    client
    envelope
    bench                     (kms bench: times the clients and starts the servers)
    frontends
    kmscore, __main__         (the package facade and ``python -m kmscore``)

For the direction rule every import counts: at module level, inside functions and
under ``if TYPE_CHECKING:``. For the circle rule, which runs module by module and so
also catches circles inside one layer, every import that runs counts, inside
functions too, because a lazy import hides a circle without removing it. Only
imports under ``if TYPE_CHECKING:`` are left out of it: they never run, and two
types that name each other (a ``Call`` holds its ``KeyService``, whose hooks take a
``Call``) are one design, not an import order.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "kmscore"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "fsutil"),
    ("engine", "wire"),
    ("model", "policy"),
    ("crypto",),
    ("store",),
    ("audit",),
    ("service",),
    ("operations",),
    ("client",),
    ("envelope",),
    ("bench",),
    ("frontends",),
    ("", "__main__"),
)

RANK: dict[str, int] = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def module_names(root: Path) -> dict[str, Path]:
    """Every module under ``root`` (the kmscore package directory), by dotted name."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of import nodes that sit under ``if TYPE_CHECKING:`` (never executed)."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            for inner in node.body:
                hidden.update(id(n) for n in ast.walk(inner))
    return hidden


def _imported(
    module: str, is_package: bool, tree: ast.AST, known: set[str]
) -> Iterator[tuple[int, str, bool]]:
    """(line, module, runs) for each kmscore module that ``tree`` imports.

    ``runs`` is False for an import under ``if TYPE_CHECKING:``.
    """
    package = module if is_package else module.rpartition(".")[0]
    hidden = _type_checking_only(tree)
    for node in ast.walk(tree):
        runs = id(node) not in hidden
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield node.lineno, _known_prefix(alias.name, known), runs
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base != PACKAGE and not base.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                # ``from kmscore.audit import trail`` imports the submodule when there is one.
                candidate = f"{base}.{alias.name}"
                target = candidate if candidate in known else _known_prefix(base, known)
                yield node.lineno, target, runs


def _known_prefix(name: str, known: set[str]) -> str:
    """The longest prefix of ``name`` that is a module (a compiled engine counts as its package)."""
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def layer_of(module: str) -> str:
    """The layer a dotted module name belongs to: its first part under kmscore."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def import_graph(root: Path, *, annotations: bool = True) -> dict[str, dict[str, int]]:
    """The import graph of kmscore: module -> {imported module: first line}.

    Args:
        root: The kmscore package directory.
        annotations: Whether imports under ``if TYPE_CHECKING:`` count.
    """
    names = module_names(root)
    known = set(names)
    graph: dict[str, dict[str, int]] = {}
    for module, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: dict[str, int] = {}
        for line, target, runs in _imported(module, path.name == "__init__.py", tree, known):
            if target != module and target in known and (runs or annotations):
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    """One line per import of a higher layer (or of a package outside the layer table)."""
    problems = []
    for module, edges in sorted(graph.items()):
        here = layer_of(module)
        if here not in RANK:
            problems.append(
                f"{module}: the layer {here!r} is not in tools/check_layers.py's LAYERS"
            )
            continue
        for target, line in sorted(edges.items()):
            there = layer_of(target)
            if there not in RANK:
                continue  # reported once, as a module of its own
            if RANK[there] > RANK[here]:
                above, below = there or PACKAGE, here or PACKAGE
                problems.append(f"{module}:{line} imports {target}: {above} is above {below}")
    return problems


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        # An explicit stack: the graph is small, but recursion depth is not ours to spend.
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                members = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == node:
                        break
                if len(members) > 1:
                    found.append(sorted(members))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def problems(root: Path) -> list[str]:
    """Every broken rule under ``root``, one line each; empty when the layers hold."""
    found = upward_imports(import_graph(root))
    for members in circles(import_graph(root, annotations=False)):
        found.append("import circle: " + " -> ".join(members))
    return found


def main(argv: list[str]) -> int:
    """Print every problem; 1 if there were any, else 0."""
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / PACKAGE
    found = problems(root)
    for line in found:
        print(line)
    if found:
        print(f"check_layers: {len(found)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_layers: {len(import_graph(root))} modules, imports go one way, no circles")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
