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
