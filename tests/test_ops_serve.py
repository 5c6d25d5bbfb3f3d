"""``kms serve`` with its operations address: the socket's requests counted, workers added up."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from test_awsjson_support import admin_credentials
from test_cli_serve import _wait_ready
from test_ops_metrics import get, samples, value

KMS = shutil.which("kms")
pytestmark = pytest.mark.skipif(KMS is None, reason="the kms console script is not installed")


def _serve(data_dir: Path, *args: str) -> tuple[subprocess.Popen[bytes], list[str]]:
    proc = subprocess.Popen(
        [str(KMS), "serve", "--data-dir", str(data_dir), "--metrics", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return proc, _wait_ready(proc)


def _ops_url(lines: list[str]) -> str:
    line = next(line for line in lines if line.startswith("Metrics and health on "))
    return line.removeprefix("Metrics and health on ").split("/metrics")[0]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_socket_requests_on_the_metrics_address(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc, lines = _serve(data_dir, "--metrics-auth", "none")
    try:
        url = _ops_url(lines)
        for _ in range(3):
            done = subprocess.run([str(KMS), "create-key", "--json", "--data-dir", str(data_dir)],
                                  capture_output=True, timeout=60, check=False)  # fmt: skip
            assert done.returncode == 0, done.stderr
            json.loads(done.stdout)
        found = samples(get(url + "/metrics")[1].decode())
        assert value(found, "kms_requests_total", frontend="socket", operation="CreateKey",
                     outcome="Success") == 3  # fmt: skip
        assert value(found, "kms_keys", state="Enabled") == 3
        assert get(url + "/ready")[0] == 200
        status = subprocess.run(
            [str(KMS), "status", "--url", url, "--json"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert status.returncode == 0
        assert json.loads(status.stdout) == {
            "live": True, "ready": True, "checks": {"store": "ok", "audit": "ok"}
        }  # fmt: skip
    finally:
        _stop(proc)
    # Nobody answers now: kms status says so and exits 1.
    status = subprocess.run([str(KMS), "status", "--url", url],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert status.returncode == 1 and "live:  no" in status.stdout


def test_http_workers_add_up_their_counts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    token = "t0ken-for-the-test"
    env_name = "KMS_TEST_METRICS_TOKEN"
    import os

    os.environ[env_name] = token
    try:
        proc, lines = _serve(data_dir, "--http", "127.0.0.1:0", "--workers", "2",
                             "--metrics-token-env", env_name)  # fmt: skip
    finally:
        del os.environ[env_name]
    try:
        endpoint = next(line for line in lines if line.startswith("AWS_ENDPOINT_URL_KMS="))
        endpoint = endpoint.split("=", 1)[1]
        key_id, secret = admin_credentials(data_dir)
        requests = 0
        # New connections, so the kernel spreads them over both workers.
        for _ in range(8):
            kms = boto3.client(
                "kms", endpoint_url=endpoint, region_name="us-east-1",
                aws_access_key_id=key_id, aws_secret_access_key=secret,
                config=Config(retries={"total_max_attempts": 1}),
            )  # fmt: skip
            kms.list_keys()
            requests += 1
            kms.close()
        time.sleep(2.5)  # every worker has shared its counts by now
        totals = set()
        for _ in range(6):  # each scrape lands on either worker
            status, body, _ = get(endpoint + "/metrics", token)
            assert status == 200
            found = samples(body.decode())
            totals.add(value(found, "kms_requests_total", frontend="http", operation="ListKeys",
                             outcome="Success"))  # fmt: skip
        assert totals == {requests}
        assert get(endpoint + "/metrics")[0] == 401
    finally:
        _stop(proc)
