"""/metrics, /health and /ready on the HTTP endpoint: scraped, parsed, and under failure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families
from test_awsjson_support import ACCOUNT, REGION, Endpoint, running_endpoint

from kmscore.frontends.ops import health
from kmscore.frontends.ops.endpoint import OpsRoutes, start_ops_server
from kmscore.frontends.ops.metrics import BUCKETS, RequestMetrics
from kmscore.service.versions import DEFAULT_LIMIT

TOKEN = "scrape-token-0123456789"


@contextlib.contextmanager
def ops_endpoint(data_dir: Path, **ops: Any) -> Iterator[Endpoint]:
    """The HTTP endpoint with the operator's paths, on a loop in a thread."""
    with running_endpoint(
        data_dir,
        region=REGION,
        account=ACCOUNT,
        ops=lambda service: OpsRoutes(service, None, **ops),
    ) as endpoint:
        yield endpoint


def get(url: str, token: str | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read(), answer.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed by prometheus_client's own text parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    with ops_endpoint(tmp_path / "data", auth="token", token=TOKEN) as running:
        yield running


def test_metrics_count_requests_by_operation_and_outcome(endpoint: Endpoint) -> None:
    before = samples(get(endpoint.url + "/metrics", TOKEN)[1].decode())
    kms = endpoint.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=other)
    for _ in range(5):
        kms.encrypt(KeyId=key, Plaintext=b"x")
    for _ in range(2):
        with pytest.raises(ClientError):
            kms.decrypt(CiphertextBlob=b"\x01" * 80)
    with pytest.raises(ClientError):
        endpoint.client(access_key_id="AKIAUNKNOWNUNKNOWN00").list_keys()
    status, body, content_type = get(endpoint.url + "/metrics", TOKEN)
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    after = samples(body.decode())

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    http = {"frontend": "http"}
    assert delta("kms_requests_total", operation="Encrypt", outcome="Success", **http) == 5
    assert delta("kms_requests_total", operation="CreateKey", outcome="Success", **http) == 2
    assert delta("kms_requests_total", operation="DisableKey", outcome="Success", **http) == 1
    bad = delta("kms_requests_total", operation="Decrypt", outcome="InvalidCiphertextException",
                **http)  # fmt: skip
    assert bad == 2
    denied = delta("kms_requests_total", operation="ListKeys",
                   outcome="UnrecognizedClientException", **http)  # fmt: skip
    assert denied == 1
    # The histogram: its count is every answered request of the operation, its
    # buckets are cumulative and end at +Inf with that count.
    assert delta("kms_request_duration_seconds_count", operation="Encrypt", **http) == 5
    assert delta("kms_request_duration_seconds_bucket", operation="Encrypt", le="+Inf", **http) == 5
    bounds = [
        value(after, "kms_request_duration_seconds_bucket", operation="Encrypt", le=repr(b), **http)
        for b in BUCKETS
    ]
    assert bounds == sorted(bounds)
    assert value(after, "kms_request_duration_seconds_sum", operation="Encrypt", **http) > 0
    # Keys by state, read from the store at the scrape.
    assert value(after, "kms_keys", state="Enabled") == 1
    assert value(after, "kms_keys", state="Disabled") == 1
    assert value(after, "kms_keys", state="PendingDeletion") == 0
    # The GCM headroom of the key version that encrypted: what its reservations leave.
    reserved = endpoint.service.store.get_material(key, 1).reserved
    assert reserved > 0
    left = value(after, "kms_gcm_invocations_remaining", key_id=key, version="1")
    assert left == DEFAULT_LIMIT - reserved
    # The audit gauges are there (their values move with the pump thread).
    assert ("kms_audit_lag_entries", ()) in after
    assert ("kms_audit_journal_depth", ()) in after


def test_keys_due_for_rotation(endpoint: Endpoint) -> None:
    kms = endpoint.client()
    keys = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(3)]
    for key in keys[:2]:
        kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    service = endpoint.service
    now = datetime.now(UTC)
    # One overdue (maintenance has not run yet), one due in 5 days.
    for key, when in ((keys[0], now - timedelta(hours=1)), (keys[1], now + timedelta(days=5))):
        record = service.store.get_key(key)
        service.store.update_key(record.replace(next_rotation_date=when))
    found = samples(get(endpoint.url + "/metrics", TOKEN)[1].decode())
    assert value(found, "kms_keys_due_for_rotation", within="0d") == 1
    assert value(found, "kms_keys_due_for_rotation", within="7d") == 2
    assert value(found, "kms_keys_due_for_rotation", within="30d") == 2


def test_metrics_authentication(tmp_path: Path, endpoint: Endpoint) -> None:
    assert get(endpoint.url + "/metrics")[0] == 401
    assert get(endpoint.url + "/metrics", "wrong-token")[0] == 401
    assert get(endpoint.url + "/metrics", TOKEN)[0] == 200
    with ops_endpoint(tmp_path / "open", auth="none") as open_endpoint:
        assert get(open_endpoint.url + "/metrics")[0] == 200
    with ops_endpoint(tmp_path / "notoken", auth="token") as no_token:
        status, body, _ = get(no_token.url + "/metrics", "anything")
        assert status == 403
        assert b"--metrics-token-env" in body


def test_kms_requests_are_still_answered_beside_the_paths(endpoint: Endpoint) -> None:
    # A GET of another path is not a KMS request: 404, as before.
    assert get(endpoint.url + "/other")[0] == 404
    assert endpoint.client().list_keys()["Keys"] == []


def test_health_and_ready(endpoint: Endpoint) -> None:
    status, body, _ = get(endpoint.url + "/health")
    assert (status, orjson.loads(body)) == (200, {"status": "ok"})
    status, body, _ = get(endpoint.url + "/ready")
    assert status == 200
    assert orjson.loads(body) == {"status": "ready", "checks": {"store": "ok", "audit": "ok"}}
    # The probe file is gone again.
    audit = endpoint.data_dir / "audit"
    assert not [p for p in audit.rglob("*") if p.name.startswith(health.PROBE_FILE)]


def test_not_ready_while_the_store_fails(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(name: str) -> bytes:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(endpoint.service.store, "get_setting", broken)
    status, body, _ = get(endpoint.url + "/ready")
    assert status == 503
    answer = orjson.loads(body)
    assert answer["status"] == "not ready"
    assert "disk I/O error" in answer["checks"]["store"]
    assert answer["checks"]["audit"] == "ok"
    assert get(endpoint.url + "/health")[0] == 200  # live, though not ready
    monkeypatch.undo()
    assert get(endpoint.url + "/ready")[0] == 200


def test_not_ready_while_the_audit_disk_fails(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A full disk: statvfs reports less room than one journal file.
    real = os.statvfs

    class Full:
        def __init__(self, path: Any) -> None:
            stats = real(path)
            self.f_frsize = stats.f_frsize
            self.f_bavail = 1

    monkeypatch.setattr(health.os, "statvfs", Full)
    status, body, _ = get(endpoint.url + "/ready")
    assert status == 503
    assert "nearly full" in orjson.loads(body)["checks"]["audit"]
    monkeypatch.undo()
    # A disk that is gone: the journal directory cannot take a file.
    gone = tmp_path / "unmounted" / "journal"
    monkeypatch.setattr(health, "journal_dir", lambda data_dir: gone)
    status, body, _ = get(endpoint.url + "/ready")
    assert status == 503
    assert "not writable" in orjson.loads(body)["checks"]["audit"]
    assert get(endpoint.url + "/health")[0] == 200
    monkeypatch.undo()
    assert get(endpoint.url + "/ready")[0] == 200


def test_ops_listener_of_its_own(endpoint: Endpoint) -> None:
    routes = OpsRoutes(endpoint.service, None, auth="none")
    server = asyncio.run_coroutine_threadsafe(
        start_ops_server(routes, "127.0.0.1", 0), endpoint.loop
    ).result(10)
    try:
        assert get(server.url + "/health")[0] == 200
        assert get(server.url + "/ready")[0] == 200
        status, body, _ = get(server.url + "/metrics")
        assert status == 200 and b"kms_keys" in body
        assert get(server.url + "/")[0] == 404
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), endpoint.loop).result(10)


def test_request_metrics_buckets() -> None:
    metrics = RequestMetrics("test")
    metrics.observe("Encrypt", "Success", 0.00004)  # first bucket
    metrics.observe("Encrypt", "Success", 0.0003)
    metrics.observe("Encrypt", "Success", 99.0)  # past the last bound
    snap = metrics.snapshot()
    [[operation, outcome, row]] = snap["rows"]
    assert (operation, outcome) == ("Encrypt", "Success")
    assert row[0] == 1
    assert row[BUCKETS.index(0.0005)] == 1
    assert row[len(BUCKETS)] == 1
    assert sum(row[:-1]) == 3
    assert row[-1] == pytest.approx(99.00034)
