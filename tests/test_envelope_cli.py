"""``kms envelope encrypt|decrypt``, in-process: files, stdin/stdout, multi-key,
context checks, --json header summaries, and no output file after a failure."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from test_cli_keys import CLI, Kms, arn, init_data_dir

from kmscore import LocalKMS
from kmscore import envelope as E
from kmscore.frontends.cli import envelope as envelope_cli

envelope_cli.register(CLI)  # as main() does


@pytest.fixture
def kms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kms:
    monkeypatch.setenv("KMS_DATA_DIR", str(tmp_path / "no-such-data-dir"))
    monkeypatch.delenv("KMS_PASSPHRASE", raising=False)
    return Kms(init_data_dir(tmp_path / "kms"))


def test_file_round_trip_with_json_summary(kms: Kms, tmp_path: Path) -> None:
    key = arn(kms.new_key())
    data = os.urandom(200_000)
    (tmp_path / "in.bin").write_bytes(data)
    out = kms.ok(
        "envelope", "encrypt", tmp_path / "in.bin", tmp_path / "in.enc",
        "--key-id", key, "--context", "team=ops", "--frame-size", "4096", "--json",
    )  # fmt: skip
    summary = json.loads(out.stdout)
    assert summary["Version"] == 2 and summary["AlgorithmSuiteId"] == "0x0578"
    assert summary["FrameLength"] == 4096
    assert summary["EncryptionContext"]["team"] == "ops"
    assert (
        summary["EncryptedDataKeys"]
        == [{"ProviderId": "aws-kms", "ProviderInfo": key, "CiphertextLength": 82}]
        or summary["EncryptedDataKeys"][0]["ProviderInfo"] == key
    )
    back = kms.ok(
        "envelope", "decrypt", tmp_path / "in.enc", tmp_path / "out.bin",
        "--context", "team=ops", "--json",
    )  # fmt: skip
    assert json.loads(back.stdout)["MessageId"] == summary["MessageId"]
    assert (tmp_path / "out.bin").read_bytes() == data
    # the library reads what the CLI wrote
    with LocalKMS(kms.data_dir) as local:
        msg = (tmp_path / "in.enc").read_bytes()
        assert E.decrypt(msg, E.KmsKeyring(local, [key]))[0] == data


def test_stdin_stdout_and_unsigned_suite(kms: Kms) -> None:
    key = arn(kms.new_key())
    data = os.urandom(70_000)
    sealed = kms.ok(
        "envelope", "encrypt", "-", "-", "--key-id", key, "--suite", "0478", stdin=data
    ).stdout_bytes
    assert sealed[:3] == b"\x02\x04\x78"
    assert kms.ok("envelope", "decrypt", "-", "-", stdin=sealed).stdout_bytes == data


def test_multi_key_and_key_restriction(kms: Kms, tmp_path: Path) -> None:
    k1, k2, k3 = (arn(kms.new_key()) for _ in range(3))
    (tmp_path / "p").write_bytes(b"payload")
    kms.ok(
        "envelope", "encrypt", tmp_path / "p", tmp_path / "p.enc", "--key-id", k1, "--key-id", k2
    )
    kms.ok("disable-key", k1)
    kms.ok("envelope", "decrypt", tmp_path / "p.enc", tmp_path / "a", "--key-id", k2)
    assert (tmp_path / "a").read_bytes() == b"payload"
    failed = kms.run("envelope", "decrypt", tmp_path / "p.enc", tmp_path / "b", "--key-id", k3)
    assert failed.exit_code == 1 and "KeyUnavailableError" in failed.stderr
    assert not (tmp_path / "b").exists()


def test_failed_decrypt_leaves_no_file(kms: Kms, tmp_path: Path) -> None:
    key = arn(kms.new_key())
    (tmp_path / "p").write_bytes(os.urandom(50_000))
    kms.ok("envelope", "encrypt", tmp_path / "p", tmp_path / "p.enc", "--key-id", key)
    sealed = bytearray((tmp_path / "p.enc").read_bytes())
    wrong_context = kms.run(
        "envelope", "decrypt", tmp_path / "p.enc", tmp_path / "o1", "--context", "x=y"
    )
    assert wrong_context.exit_code == 1 and "ContextMismatchError" in wrong_context.stderr
    sealed[-1] ^= 1  # the signature
    (tmp_path / "bad.enc").write_bytes(bytes(sealed))
    tampered = kms.run("envelope", "decrypt", tmp_path / "bad.enc", tmp_path / "o2")
    assert tampered.exit_code == 1 and "AuthenticationError" in tampered.stderr
    truncated = kms.run(
        "envelope", "decrypt", "-", tmp_path / "o3", stdin=bytes(sealed[: len(sealed) // 2])
    )
    assert truncated.exit_code == 1 and "truncated" in truncated.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.enc", "kms", "p", "p.enc"]


def test_usage_errors(kms: Kms, tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(b"x")
    kms.usage_error("envelope", "encrypt", tmp_path / "p", tmp_path / "q", says="--key-id")
    kms.usage_error(
        "envelope", "encrypt", tmp_path / "p", tmp_path / "q",
        "--key-id", "k", "--context", "novalue", says="KEY=VALUE",
    )  # fmt: skip


def test_top_level_names(kms: Kms, tmp_path: Path) -> None:
    key = arn(kms.new_key())
    (tmp_path / "p").write_bytes(b"same commands")
    kms.ok("encrypt-file", tmp_path / "p", tmp_path / "p.enc", "--key-id", key, "--context", "a=b")
    kms.ok("decrypt-file", tmp_path / "p.enc", tmp_path / "q", "--context", "a=b")
    assert (tmp_path / "q").read_bytes() == b"same commands"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("sized", [True, False], ids=["file", "pipe"])
def test_progress_on_a_terminal(
    kms: Kms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sized: bool
) -> None:
    key = arn(kms.new_key())
    data = os.urandom(300_000)
    (tmp_path / "p").write_bytes(data)
    with LocalKMS(kms.data_dir) as local:
        ring = E.KmsKeyring(local, [key])
        tty = _Tty()
        monkeypatch.setattr(sys, "stderr", tty)
        with open(tmp_path / "p", "rb") as raw:
            src: Any = raw if sized else io.BufferedReader(io.BytesIO(data))
            with envelope_cli._progress(src, "encrypt") as wrapped:
                out = io.BytesIO()
                E.encrypt_stream(wrapped, out, ring, frame_length=4096)
        monkeypatch.undo()
    with LocalKMS(kms.data_dir) as local:
        assert E.decrypt(out.getvalue(), E.KmsKeyring(local, [key]))[0] == data
    assert "encrypt" in tty.getvalue()
