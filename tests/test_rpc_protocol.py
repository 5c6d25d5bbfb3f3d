"""The daemon's request checks and where each operation runs (no daemon needed)."""

from __future__ import annotations

import pytest

from kmscore import errors
from kmscore.frontends.rpc.protocol import (
    INLINE_BATCH_MAX,
    MAX_IN_FLIGHT,
    ProtocolViolation,
    parse_request,
)
from kmscore.operations import OPERATIONS
from kmscore.wire.operations import AWS_OPERATIONS, IAM_EVENT_SOURCE, OPERATION_FACTS

INLINE_OPERATIONS = {name for name, facts in OPERATION_FACTS.items() if facts.inline}


def test_aws_operation_names_are_botocores() -> None:
    botocore_session = pytest.importorskip("botocore.session")
    model = botocore_session.get_session().get_service_model("kms")
    assert set(model.operation_names) == AWS_OPERATIONS


def test_only_the_extensions_are_not_aws_operations() -> None:
    users = {"CreateUser", "DeleteUser", "ListUsers", "TagUser", "UntagUser"}
    assert set(OPERATIONS) - AWS_OPERATIONS == {"GenerateDataKeys", "DecryptMany"} | users
    assert {n for n, f in OPERATION_FACTS.items() if f.event_source == IAM_EVENT_SOURCE} == users


def test_inline_operations_are_read_only_data_plane() -> None:
    assert INLINE_OPERATIONS <= set(OPERATIONS)
    assert all(OPERATIONS[name].read_only for name in INLINE_OPERATIONS)


@pytest.mark.parametrize(
    ("method", "params", "weight"),
    [
        ("GenerateDataKey", {}, 0),
        ("Decrypt", {}, 0),
        ("DescribeKey", {}, 0),
        ("CreateKey", {}, 1),
        ("ScheduleKeyDeletion", {}, 1),
        ("ListKeys", {}, 1),  # read-only, but reads the store
        ("GetKeyPolicy", {}, 1),
        ("GenerateDataKeys", {"Count": INLINE_BATCH_MAX}, 0),
        ("GenerateDataKeys", {"Count": INLINE_BATCH_MAX + 1}, MAX_IN_FLIGHT),
        ("GenerateDataKeys", {"Count": "many"}, 0),  # validation answers at once
        ("DecryptMany", {"CiphertextBlobs": [b"x"] * INLINE_BATCH_MAX}, 0),
        ("DecryptMany", {"CiphertextBlobs": [b"x"] * (INLINE_BATCH_MAX + 1)}, MAX_IN_FLIGHT),
    ],
)
def test_where_a_request_runs(method: str, params: dict[str, object], weight: int) -> None:
    request = parse_request([0, 9, method, params], 100)
    assert request.error is None
    assert (request.msgid, request.method, request.weight) == (9, method, weight)


@pytest.mark.parametrize(
    ("message", "size", "error"),
    [
        ([0, 1, "Encrypt", {}], 2 << 20, errors.ValidationException),
        ([0, 1, "", {}], 10, errors.UnknownOperationException),
        ([0, 1, "9Lives", {}], 10, errors.UnknownOperationException),
        # Answered before the dispatcher, so floods are recorded at a bounded rate.
        ([0, 1, "NoSuchOperation", {}], 10, errors.UnknownOperationException),
        ([0, 1, b"Encrypt", {}], 10, errors.UnknownOperationException),
        ([0, 1, "Encrypt", []], 10, errors.SerializationException),
    ],
)
def test_requests_answered_with_an_error(message: list[object], size: int, error: type) -> None:
    request = parse_request(message, size)
    assert type(request.error) is error and request.msgid == 1


def test_an_aws_operation_not_served_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every operation of the pinned model is served; a newer model's would not be.
    from kmscore.frontends.rpc import protocol

    weights = dict(protocol._WEIGHT)
    del weights["ReplicateKey"]
    monkeypatch.setattr(protocol, "_WEIGHT", weights)
    request = parse_request([0, 1, "ReplicateKey", {}], 10)
    assert type(request.error) is errors.UnsupportedOperationException
    assert request.method == "ReplicateKey" and request.msgid == 1


@pytest.mark.parametrize(
    "message",
    [(0, 1, "Encrypt", {}), [0, 1, "Encrypt"], [0, True, "Encrypt", {}], [0, 2.0, "E", {}]],
)
def test_messages_without_a_usable_msgid(message: object) -> None:
    with pytest.raises(ProtocolViolation):
        parse_request(message, 10)
