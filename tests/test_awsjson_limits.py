"""The HTTP endpoint: refusals before dispatch are audited; connection and idle limits."""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

from test_awsjson_support import (
    audit_records,
    flush_audit,
    running_endpoint,
    send,
    signed_request,
)

from kmscore.frontends.limits import ConnectionLimits
from kmscore.service.refusals import RefusalLimits


def _refusals(data_dir: Path) -> list[dict[str, object]]:
    return [r for r in audit_records(data_dir) if r.get("errorCode")]


def test_requests_refused_before_dispatch_are_recorded(tmp_path: Path) -> None:
    with running_endpoint(tmp_path) as ep:
        body = b'{"KeyId": "alias/x", "Plaintext": "U0VDUkVULUJPRFk="}'
        # A bad signature (wrong secret), an unknown access key, no auth at all.
        wrong = signed_request(ep, "TrentService.Encrypt", body, secret="x" * 40)
        assert send(ep, *wrong).json()["__type"] == "InvalidSignatureException"
        unknown = signed_request(
            ep, "TrentService.Encrypt", body, access_key_id="AKIAUNKNOWN000000000"
        )
        assert send(ep, *unknown).json()["__type"] == "UnrecognizedClientException"
        headers = {"Content-Type": "application/x-amz-json-1.1", "User-Agent": "probe/1"}
        headers["X-Amz-Target"] = "TrentService.Encrypt"
        assert send(ep, "POST", "/", headers, body).status == 400
        headers["X-Amz-Target"] = "TrentService.NoSuchThing"
        assert send(ep, "POST", "/", headers, body).json()["__type"] == (
            "UnknownOperationException"
        )
        bad_json = signed_request(ep, "TrentService.Encrypt", b'{"KeyId": SECRET-BODY')
        assert send(ep, *bad_json).json()["__type"] == "SerializationException"
        flush_audit(ep.service)
        refused = _refusals(tmp_path)
    by_code = {r["errorCode"]: r for r in refused}
    assert {
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "MissingAuthenticationTokenException",
        "UnknownOperationException",
        "SerializationException",
    } <= set(by_code)
    assert by_code["InvalidSignatureException"]["eventName"] == "Encrypt"
    assert by_code["UnknownOperationException"]["eventName"] == "Unknown"
    unknown_key = by_code["UnrecognizedClientException"]
    assert unknown_key["userIdentity"]["accessKeyId"] == "AKIAUNKNOWN000000000"  # type: ignore[index]
    missing = by_code["MissingAuthenticationTokenException"]
    assert missing["sourceIPAddress"] == "127.0.0.1" and missing["userAgent"] == "probe/1"
    text = b"".join(p.read_bytes() for p in (tmp_path / "audit").glob("segment-*.jsonl"))
    assert b"SECRET" not in text and b"U0VDUkVULUJPRFk" not in text


def test_a_flood_of_bad_signatures_is_summarized(tmp_path: Path) -> None:
    n = 300
    with running_endpoint(tmp_path, refusal_limits=RefusalLimits(burst=4, window=600)) as ep:
        wrong = signed_request(ep, "TrentService.ListKeys", b"{}", secret="y" * 40)
        conn = http.client.HTTPConnection(ep.host, timeout=10)
        for _ in range(n):
            assert send(ep, *wrong, connection=conn).status == 400
        conn.close()
    # The endpoint's close wrote the summary before the trail closed.
    refused = [
        r for r in audit_records(tmp_path) if r.get("errorCode") == "InvalidSignatureException"
    ]
    assert len(refused) == 5
    assert refused[-1]["additionalEventData"]["suppressedCount"] == n - 4  # type: ignore[index]


def test_past_the_limit_a_503_and_the_others_keep_working(tmp_path: Path) -> None:
    limits = ConnectionLimits(max_connections=2, idle_timeout=30)
    with running_endpoint(tmp_path, limits=limits) as ep:
        listing = signed_request(ep, "TrentService.ListKeys", b"{}")
        first = http.client.HTTPConnection(ep.host, timeout=10)
        second = http.client.HTTPConnection(ep.host, timeout=10)
        assert send(ep, *listing, connection=first).status == 200
        assert send(ep, *listing, connection=second).status == 200
        third = http.client.HTTPConnection(ep.host, timeout=10)
        answer = send(ep, *listing, connection=third)
        assert answer.status == 503
        assert answer.headers["connection"] == "close"
        assert answer.json()["__type"] == "LimitExceededException"
        assert "at most 2 clients" in answer.json()["message"]
        third.close()
        for conn in (first, second):
            assert send(ep, *listing, connection=conn).status == 200
        first.close()
        # A freed place is taken again.
        deadline = time.monotonic() + 5
        while True:
            again = http.client.HTTPConnection(ep.host, timeout=10)
            status = send(ep, *listing, connection=again).status
            again.close()
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 200
        second.close()
        flush_audit(ep.service)
        refused = [
            r for r in audit_records(tmp_path) if r.get("errorCode") == "LimitExceededException"
        ]
    assert refused and refused[0]["sourceIPAddress"] == "127.0.0.1"


def test_idle_connections_are_closed(tmp_path: Path) -> None:
    with running_endpoint(tmp_path, limits=ConnectionLimits(idle_timeout=0.5)) as ep:
        host, port = ep.host.rsplit(":", 1)
        silent = socket.create_connection((host, int(port)), timeout=5)
        started = time.monotonic()
        assert silent.recv(10) == b""  # closed without a request ever sent
        waited = time.monotonic() - started
        silent.close()
        assert 0.4 < waited < 3.0
        conn = http.client.HTTPConnection(ep.host, timeout=5)
        listing = signed_request(ep, "TrentService.ListKeys", b"{}")
        assert send(ep, *listing, connection=conn).status == 200
        time.sleep(0.2)
        assert send(ep, *listing, connection=conn).status == 200  # not idle long enough
        sock = conn.sock
        assert sock is not None
        sock.settimeout(5)
        assert sock.recv(10) == b""  # closed after the timeout from its last answer
        conn.close()
