"""``kms region add|list|identity|peer|peers|sync`` and ``kms account add|list``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from test_awsjson_support import running_endpoint

from kmscore.frontends.cli import regions, serve
from kmscore.frontends.cli.main import cli
from kmscore.service import open_service


@pytest.fixture(scope="module")
def kms_cli() -> click.Group:
    regions.register(cli)
    serve.register(cli)
    return cli


def run(kms_cli: click.Group, *args: object) -> Result:
    return CliRunner().invoke(kms_cli, [str(a) for a in args])


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    open_service(path, audit=False).close()
    return path


def test_region_and_account_commands(kms_cli: click.Group, data_dir: Path) -> None:
    out = run(kms_cli, "region", "add", "us-west-2", "--data-dir", data_dir)
    assert out.exit_code == 0, out.output
    assert "Region us-west-2 of account 111122223333 added" in out.output
    again = run(kms_cli, "region", "add", "us-west-2", "--data-dir", data_dir)
    assert again.exit_code != 0 and "exists" in again.output
    bad = run(kms_cli, "region", "add", "Moon", "--data-dir", data_dir)
    assert bad.exit_code == 2 and "not a valid Region" in bad.output
    listed = run(kms_cli, "region", "list", "--data-dir", data_dir, "--json")
    assert json.loads(listed.output)["Regions"] == ["us-east-1", "us-west-2"]
    added = run(kms_cli, "account", "add", "444455556666", "--data-dir", data_dir)
    assert added.exit_code == 0, added.output
    credentials = Path(added.output.split("Admin credentials: ")[1].strip())
    assert credentials.is_file() and credentials.stat().st_mode & 0o777 == 0o600
    assert run(kms_cli, "account", "add", "444455556666", "--data-dir", data_dir).exit_code != 0
    accounts = json.loads(run(kms_cli, "account", "list", "--data-dir", data_dir, "--json").output)
    assert accounts == {
        "Accounts": [
            {"Account": "111122223333", "Regions": ["us-east-1", "us-west-2"]},
            {"Account": "444455556666", "Regions": ["us-east-1"]},
        ]
    }


def test_serve_any_region_needs_http(kms_cli: click.Group, data_dir: Path) -> None:
    out = run(kms_cli, "serve", "--any-region", "--data-dir", data_dir)
    assert out.exit_code == 2 and "--any-region needs --http" in out.output


def test_peering_commands(kms_cli: click.Group, tmp_path: Path) -> None:
    with running_endpoint(tmp_path / "b", region="us-west-2") as b:
        a_dir = tmp_path / "a"
        open_service(a_dir, audit=False).close()
        identity = json.loads(
            run(kms_cli, "region", "identity", "--data-dir", b.data_dir, "--json").output
        )
        fingerprint = identity["Identity"]["Fingerprint"]
        assert identity["Regions"] == ["us-west-2"] and len(fingerprint) == 64
        wrong = run(kms_cli, "region", "peer", "b", b.url, "--fingerprint", "0" * 64,
                    "--data-dir", a_dir)  # fmt: skip
        assert wrong.exit_code != 0 and "refused" in wrong.output
        ok = run(kms_cli, "region", "peer", "b", b.url, "--fingerprint", fingerprint,
                 "--data-dir", a_dir)  # fmt: skip
        assert ok.exit_code == 0 and "Regions us-west-2" in ok.output, ok.output
        peers = json.loads(run(kms_cli, "region", "peers", "--data-dir", a_dir, "--json").output)
        assert [p["Fingerprint"] for p in peers["Peers"]] == [fingerprint]
        assert (a_dir / "peers.json").stat().st_mode & 0o777 == 0o600
        synced = run(kms_cli, "region", "sync", "--data-dir", a_dir, "--json")
        assert synced.exit_code == 0 and json.loads(synced.output) == {"Keys": []}
