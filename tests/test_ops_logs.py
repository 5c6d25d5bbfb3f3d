"""Structured logs: JSON lines with the level and the request id, and no secrets."""

from __future__ import annotations

import logging

import orjson

from kmscore.frontends.ops.logs import JsonFormatter


def _line(record: logging.LogRecord) -> dict[str, object]:
    return orjson.loads(JsonFormatter().format(record))


def test_a_record_is_one_json_line_with_level_and_request_id() -> None:
    record = logging.makeLogRecord(
        {"name": "kmscore.x", "levelno": logging.ERROR, "levelname": "ERROR",
         "msg": "internal error in %r", "args": ("Encrypt",), "request_id": "r-1"}
    )  # fmt: skip
    line = _line(record)
    assert line["level"] == "error"
    assert line["logger"] == "kmscore.x"
    assert line["message"] == "internal error in 'Encrypt'"
    assert line["request_id"] == "r-1"
    assert "\n" not in JsonFormatter().format(record)


def test_secret_named_extras_are_dropped() -> None:
    record = logging.makeLogRecord(
        {"msg": "m", "levelname": "INFO", "plaintext": "p", "Secret_Key": "s",
         "key_material": "k", "passphrase": "x", "request_id": "r"}
    )  # fmt: skip
    line = _line(record)
    assert set(line) == {"time", "level", "logger", "message", "request_id"}


def test_the_endpoint_logs_an_internal_error_with_its_request_id(caplog: object) -> None:
    import pytest

    from kmscore.frontends.awsjson.app import KMSHandler
    from kmscore.frontends.awsjson.protocol import HttpRequest

    caplog = caplog  # type: ignore[assignment]
    assert isinstance(caplog, pytest.LogCaptureFixture)
    handler = object.__new__(KMSHandler)
    request = HttpRequest("POST", "/", __import__("multidict").CIMultiDict(), b"", None)
    with caplog.at_level(logging.ERROR):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            answer = handler._internal_error(request, "req-42")
    assert answer.status == 500
    [record] = caplog.records
    assert record.request_id == "req-42"  # type: ignore[attr-defined]
    line = _line(record)
    assert line["request_id"] == "req-42" and line["level"] == "error"
