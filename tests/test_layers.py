"""The socket clients stand apart from the server: importing them loads no engine or store."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SERVER_PACKAGES = ("kmscore.engine", "kmscore.store", "kmscore.service", "kmscore.operations")


@pytest.mark.parametrize("module", ["kmscore.client.remote", "kmscore.client.aio"])
def test_the_socket_clients_load_none_of_the_server(module: str) -> None:
    probe = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    assert module in loaded
    server = [m for m in loaded if m.startswith(SERVER_PACKAGES) or m in {"sqlite3", "nacl"}]
    assert server == []


def test_the_in_process_client_does_load_the_server() -> None:
    # The probe above can fail: LocalKMS needs the engine and the store.
    probe = "import json, sys, kmscore.client.local; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    assert "kmscore.engine" in loaded and "kmscore.store" in loaded


# --- the import-direction and circle check (tools/check_layers.py) -------------------

_CHECKER = Path(__file__).resolve().parent.parent / "tools" / "check_layers.py"


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_layers", _CHECKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _package(root: Path, files: dict[str, str]) -> Path:
    package = root / "kmscore"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_the_source_tree_keeps_its_layers() -> None:
    source = _CHECKER.parent.parent / "kmscore"
    assert _checker().problems(source) == []


def test_an_upward_import_is_named(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "model/__init__.py": "",
            "model/key.py": "from kmscore.errors import X\n\n\ndef f():\n"
            "    from ..service import y\n",
            "service/__init__.py": "from kmscore.model import key\n",
        },
    )
    assert _checker().problems(package) == [
        "kmscore.model.key:5 imports kmscore.service: service is above model",
        # The service imports the model back, so the lazy import closes a circle too.
        "import circle: kmscore.model.key -> kmscore.service",
    ]


def test_an_annotation_only_import_still_counts_for_direction(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "store/__init__.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from kmscore.audit.trail import Trail\n",
            "audit/__init__.py": "",
            "audit/trail.py": "",
        },
    )
    assert _checker().problems(package) == [
        "kmscore.store:3 imports kmscore.audit.trail: audit is above store"
    ]


def test_a_circle_held_by_a_lazy_import_is_named(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "service/__init__.py": "",
            "service/a.py": "from . import b\n",
            "service/b.py": "from .c import thing\n",
            "service/c.py": "def f():\n    from kmscore.service.a import g\n",
            # Two types that name each other for annotations only are not a circle.
            "service/d.py": "import typing\nif typing.TYPE_CHECKING:\n    from .e import E\n",
            "service/e.py": "from .d import D\n",
        },
    )
    assert _checker().problems(package) == [
        "import circle: kmscore.service.a -> kmscore.service.b -> kmscore.service.c"
    ]


def test_a_folder_outside_the_layer_table_is_named(tmp_path: Path) -> None:
    package = _package(tmp_path, {"__init__.py": "", "extras/__init__.py": ""})
    assert _checker().problems(package) == [
        "kmscore.extras: the layer 'extras' is not in tools/check_layers.py's LAYERS"
    ]


# --- one home per rule ---------------------------------------------------------------


def _attribute_calls(path: Path, attribute: str) -> list[int]:
    """Lines of ``path`` that call a method on an object's ``attribute`` (``x.aead.seal``)."""
    import ast

    tree = ast.parse(path.read_text(), str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == attribute
    ]


def test_only_the_symmetric_module_seals_or_opens_blobs() -> None:
    # The blob AAD rule (kmscore.model.blob.aad) holds only if no handler or
    # frontend calls a key version's engine itself.
    package = Path(__file__).resolve().parent.parent / "kmscore"
    callers = {
        str(path.relative_to(package)): lines
        for path in package.rglob("*.py")
        if (lines := _attribute_calls(path, "aead"))
    }
    assert set(callers) == {"service/symmetric.py"}, callers


def test_the_guard_above_sees_an_engine_call(tmp_path: Path) -> None:
    source = tmp_path / "handler.py"
    source.write_text("def f(kv, aad):\n    return kv.aead.encrypt(b'x', aad, kv.header)\n")
    assert _attribute_calls(source, "aead") == [2]
