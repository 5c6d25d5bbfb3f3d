"""``kms serve`` and the key commands talking to it."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kmscore.audit import query, verify

KMS = shutil.which("kms")
pytestmark = pytest.mark.skipif(KMS is None, reason="the kms console script is not installed")


def _kms(*args: str, data_dir: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(KMS), *args, "--data-dir", str(data_dir)],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def _wait_ready(proc: subprocess.Popen, seconds: float = 30.0) -> list[str]:
    """The daemon's output up to its "listening on" line (printed once it serves)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
            if b"listening on" in seen:
                return seen.decode().splitlines()
        elif proc.poll() is not None:
            break
    proc.kill()
    _, err = proc.communicate(timeout=5)
    pytest.fail(f"kms serve did not start: {seen!r} {err!r}")


def test_serve_answers_the_cli_and_shuts_down_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        [str(KMS), "serve", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        lines = _wait_ready(proc)
        created = _kms("create-key", "--json", data_dir=data_dir)
        assert created.returncode == 0, created.stderr
        key_id = json.loads(created.stdout)["KeyMetadata"]["KeyId"]
        sealed = _kms("encrypt", key_id, "--context", "a=b", data_dir=data_dir, stdin=b"hello")
        assert sealed.returncode == 0, sealed.stderr
        opened = _kms("decrypt", "--context", "a=b", data_dir=data_dir, stdin=sealed.stdout)
        assert opened.returncode == 0 and opened.stdout == b"hello"
        refused = _kms("decrypt", "--context", "a=c", data_dir=data_dir, stdin=sealed.stdout)
        assert refused.returncode == 1
        assert b"InvalidCiphertextException" in refused.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert any(line.startswith("Admin credentials:") for line in lines)
    assert not (data_dir / "kms.sock").exists()
    # The CLI went through the daemon: its records come from a Unix-socket peer.
    events = list(query(data_dir))
    assert [e["eventName"] for e in events] == ["CreateKey", "Encrypt", "Decrypt", "Decrypt"]
    assert all(e["sourceIPAddress"].startswith("unix:") for e in events)
    assert events[-1]["errorCode"] == "InvalidCiphertextException"
    report = verify(data_dir)
    assert report.records == 4 and report.unsealed == 0


def test_a_second_daemon_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = subprocess.Popen(
        [str(KMS), "serve", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(first)
        second = subprocess.run(
            [str(KMS), "serve", "--data-dir", str(data_dir)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert second.returncode != 0
        assert b"kms.sock" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 0


def test_serve_http_prints_the_endpoint(tmp_path: Path) -> None:
    pytest.importorskip("httptools")
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [str(KMS), "serve", "--data-dir", str(data_dir), "--http", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        lines = _wait_ready(proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    line = next(x for x in lines if x.startswith("AWS_ENDPOINT_URL_KMS="))
    url = line.split("=", 1)[1]
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")


def test_serve_refuses_a_bad_http_address(tmp_path: Path) -> None:
    bad = subprocess.run(
        [str(KMS), "serve", "--data-dir", str(tmp_path / "d"), "--http", "nonsense"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and b"HOST:PORT" in bad.stderr
