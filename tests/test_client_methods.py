"""The clients' typed methods: generated from the shapes, one per served operation."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from kmscore.client import AsyncRemoteKMS, LocalKMS, RemoteKMS
from kmscore.client import _methods as methods
from kmscore.operations import OPERATIONS
from kmscore.wire.operations import SERVED_OPERATIONS, method_name

ROOT = Path(__file__).resolve().parent.parent


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_client_methods", ROOT / "tools" / "gen_client_methods.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_file_matches_the_shapes() -> None:
    text = _generator().render()
    assert text == Path(methods.__file__).read_text(), (
        "kmscore/client/_methods.py is stale: run python tools/gen_client_methods.py"
    )


@pytest.mark.parametrize("client", [LocalKMS, RemoteKMS, AsyncRemoteKMS])
def test_every_served_operation_is_a_method(client: type) -> None:
    assert set(OPERATIONS) == SERVED_OPERATIONS
    for name in SERVED_OPERATIONS:
        assert callable(getattr(client, method_name(name))), name
    assert "__getattr__" not in vars(client)  # a misspelt name is an AttributeError


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_each_request_type_names_the_shape_members(name: str) -> None:
    request = getattr(methods, f"{name}Request")
    shape = OPERATIONS[name].shape
    assert set(request.__annotations__) == set(shape)
    required = {member for member, spec in shape.items() if spec.required}
    assert request.__required_keys__ == frozenset(required)


def test_a_misspelt_method_raises_attribute_error(tmp_path: Path) -> None:
    with LocalKMS(tmp_path) as kms:
        with pytest.raises(AttributeError, match="generate_data_kye"):
            kms.generate_data_kye  # type: ignore[attr-defined]  # noqa: B018
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"typed")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"typed"
