"""The refusal recorder: individual records up to a burst, exact summaries beyond it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kmscore.errors import (
    InvalidSignatureException,
    KMSError,
    SerializationException,
    UnknownOperationException,
)
from kmscore.service import Call, Caller, KeyService, open_service
from kmscore.service.refusals import OVERFLOW_SOURCE, RefusalLimits, RefusalRecorder, recorder_for


class ListAuditor:
    """Keeps what the recorder hands the auditor."""

    def __init__(self) -> None:
        self.records: list[tuple[Call, KMSError | None]] = []

    def record(
        self,
        call: Call,
        request: Mapping[str, Any],
        response: Mapping[str, Any] | None,
        error: KMSError | None,
    ) -> None:
        assert request == {} and response is None
        self.records.append((call, error))


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _caller(source: str) -> Caller:
    return Caller(arn="", account="", principal_id="", kind="Unknown", source=source)


@pytest.fixture
def service(tmp_path: Path) -> Any:
    svc = open_service(tmp_path, audit=False, auditor=ListAuditor())
    yield svc
    svc.close()


def test_burst_then_one_exact_summary_per_window(service: KeyService) -> None:
    clock = Clock()
    rec = RefusalRecorder(service, RefusalLimits(burst=3, window=10.0), clock=clock)
    auditor = service.auditor
    assert isinstance(auditor, ListAuditor)
    for _ in range(1000):
        rec.refuse(_caller("10.0.0.1"), "Unknown", SerializationException("bad json"))
        clock.now += 0.001
    assert len(auditor.records) == 3
    rec.flush()  # the window has not ended: no summary yet
    assert len(auditor.records) == 3
    clock.now += 10.0
    rec.flush()
    assert len(auditor.records) == 4
    call, error = auditor.records[-1]
    assert error is not None and error.code == "SerializationException"
    assert error.message.startswith("997 more SerializationException from 10.0.0.1 suppressed")
    assert call.additional_event_data is not None
    assert call.additional_event_data["suppressedCount"] == 997
    assert rec.suppressed == 997 and rec.recorded == 4
    # The next window starts with a fresh burst.
    rec.refuse(_caller("10.0.0.1"), "Unknown", SerializationException("bad json"))
    assert len(auditor.records) == 5


def test_a_new_window_summarizes_the_last_at_once(service: KeyService) -> None:
    clock = Clock()
    rec = RefusalRecorder(service, RefusalLimits(burst=1, window=5.0), clock=clock)
    for _ in range(4):
        rec.refuse(_caller("a"), "Encrypt", InvalidSignatureException("sig"))
    clock.now += 6
    rec.refuse(_caller("a"), "Encrypt", InvalidSignatureException("sig"))
    auditor = service.auditor
    assert isinstance(auditor, ListAuditor)
    messages = [e.message for _, e in auditor.records if e is not None]
    assert len(messages) == 3
    assert messages[1].startswith("3 more InvalidSignatureException from a suppressed")
    assert auditor.records[1][0].operation == "Encrypt"


def test_sources_and_codes_have_their_own_buckets(service: KeyService) -> None:
    rec = RefusalRecorder(service, RefusalLimits(burst=2, window=60.0))
    for source in ("a", "b"):
        for error in (SerializationException(), UnknownOperationException()):
            for _ in range(5):
                rec.refuse(_caller(source), "Unknown", error)
    assert rec.recorded == 8 and rec.suppressed == 12
    rec.close()
    assert rec.recorded == 12  # one summary per bucket


def test_the_bucket_table_is_bounded(service: KeyService) -> None:
    rec = RefusalRecorder(service, RefusalLimits(burst=1, window=60.0, max_sources=10))
    for i in range(10_000):
        rec.refuse(_caller(f"10.0.{i // 256}.{i % 256}"), "Unknown", SerializationException())
    # The tracked sources, plus the overflow bucket of this error code.
    assert len(rec._buckets) == 11
    # 10 sources recorded once each, one more from the shared overflow bucket.
    assert rec.recorded == 11
    rec.close()
    auditor = service.auditor
    assert isinstance(auditor, ListAuditor)
    _, last = auditor.records[-1]
    assert last is not None and f"9989 more SerializationException from {OVERFLOW_SOURCE}" in (
        last.message
    )
    assert rec._buckets == {}


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="burst"):
        RefusalLimits(burst=-1)
    with pytest.raises(ValueError, match="window"):
        RefusalLimits(window=0)


def test_records_in_the_trail_are_cloudtrail_shaped(tmp_path: Path) -> None:
    service = open_service(tmp_path, audit=True)
    rec = recorder_for(service, RefusalLimits(burst=1, window=60.0))
    assert recorder_for(service) is rec
    caller = Caller(
        arn="", account="", principal_id="", kind="Unknown", access_key_id="AKIAEXAMPLE000000000",
        source="192.0.2.7", user_agent="curl/8",
    )  # fmt: skip
    for _ in range(3):
        rec.refuse(caller, "GenerateDataKey", InvalidSignatureException("The signature is bad."))
    rec.close()
    service.close()
    lines = b"".join(p.read_bytes() for p in sorted((tmp_path / "audit").glob("segment-*.jsonl")))
    events = [json.loads(line) for line in lines.splitlines() if line.strip()]
    refused = [e for e in events if e.get("errorCode") == "InvalidSignatureException"]
    assert len(refused) == 2
    first, summary = refused
    assert first["eventName"] == "GenerateDataKey"
    assert first["errorMessage"] == "The signature is bad."
    assert first["sourceIPAddress"] == "192.0.2.7" and first["userAgent"] == "curl/8"
    assert first["userIdentity"]["type"] == "Unknown"
    assert first["userIdentity"]["accessKeyId"] == "AKIAEXAMPLE000000000"
    assert first["requestParameters"] is None or first["requestParameters"] == {}
    assert first["resources"] == []
    assert summary["additionalEventData"]["suppressedCount"] == 2
    assert summary["errorMessage"].startswith(
        "2 more InvalidSignatureException from 192.0.2.7 suppressed between"
    )
