"""``kms hsm register``, ``kms xks credential create`` and ``kms serve --xks`` checks."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from kmscore.frontends.cli import admin, keystores, serve
from kmscore.frontends.cli.main import cli
from kmscore.service import open_service
from kmscore.service.hsm_clusters import get_cluster


@pytest.fixture(scope="module")
def kms_cli() -> click.Group:
    admin.register(cli)
    keystores.register(cli)
    serve.register(cli)
    return cli


def run(group: click.Group, *args: str | os.PathLike[str]) -> Result:
    return CliRunner().invoke(group, [str(a) for a in args])


@pytest.fixture
def data_dir(tmp_path: Path, kms_cli: click.Group, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KMS_DATA_DIR", raising=False)
    monkeypatch.delenv("KMS_PASSPHRASE", raising=False)
    path = tmp_path / "kms"
    assert run(kms_cli, "init", "--data-dir", path).exit_code == 0
    return path


def test_hsm_register(kms_cli: click.Group, data_dir: Path) -> None:
    result = run(
        kms_cli, "hsm", "register", "--data-dir", data_dir,
        "--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", "kms",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cluster_id = json.loads(result.output)["CloudHsmClusterId"]
    assert re.fullmatch(r"cluster-[2-7a-zA-Z]{11,16}", cluster_id)
    svc = open_service(data_dir, audit=False)
    try:
        assert get_cluster(svc.store, cluster_id).token_label == "kms"
    finally:
        svc.close()
    bad = run(
        kms_cli, "hsm", "register", "--data-dir", data_dir,
        "--module", "relative.so", "--token-label", "kms",
    )  # fmt: skip
    assert bad.exit_code == 1 and "ValidationException" in bad.output


def test_xks_credential_create(kms_cli: click.Group, data_dir: Path) -> None:
    result = run(kms_cli, "xks", "credential", "create", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    assert config["XksProxyUriPath"] == "/kms/xks/v1"
    credential = config["XksProxyAuthenticationCredential"]
    # The shapes CreateCustomKeyStore accepts.
    assert re.fullmatch(r"[A-Z2-7]{20,30}", credential["AccessKeyId"])
    assert re.fullmatch(r"[a-zA-Z0-9/+=]{43,64}", credential["RawSecretAccessKey"])
    again = run(kms_cli, "xks", "credential", "create", "--data-dir", data_dir)
    assert again.exit_code == 1 and "AlreadyExistsException" in again.output


def test_serve_xks_needs_tls(kms_cli: click.Group, data_dir: Path) -> None:
    result = run(kms_cli, "serve", "--data-dir", data_dir, "--xks", "127.0.0.1:0")
    assert result.exit_code == 2
    assert "--xks-cert" in result.output


def test_kms_serve_xks_serves_the_proxy(tmp_path: Path, kms_cli: click.Group) -> None:
    import select
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from xks_support import self_signed, signed_post

    data_dir = tmp_path / "kms"
    assert run(kms_cli, "init", "--data-dir", data_dir).exit_code == 0
    created = run(kms_cli, "xks", "credential", "create", "--data-dir", data_dir)
    credential = json.loads(created.output)["XksProxyAuthenticationCredential"]
    cert, key = self_signed(tmp_path)
    kms = shutil.which("kms") or str(Path(sys.executable).parent / "kms")
    proc = subprocess.Popen(
        [str(kms), "serve", "--data-dir", str(data_dir), "--xks", "127.0.0.1:0",
         "--xks-cert", str(cert), "--xks-key", str(key)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen, deadline = b"", time.monotonic() + 30
        while b"listening on" not in seen and time.monotonic() < deadline:
            if select.select([proc.stdout.fileno()], [], [], 0.1)[0]:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                seen += chunk
        found = re.search(rb"XKS proxy .* on https://127\.0\.0\.1:(\d+)/kms/xks/v1", seen)
        assert found, seen
        status, answer = signed_post(
            int(found.group(1)),
            cert,
            credential["AccessKeyId"],
            credential["RawSecretAccessKey"],
            "/kms/xks/v1/health",
            {"requestMetadata": {"kmsRequestId": "r-1", "kmsOperation": "KmsHealthCheck"}},
            region="us-east-1",
        )
        assert status == 200 and answer["ekmFleetDetails"][0]["healthStatus"] == "ACTIVE"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
