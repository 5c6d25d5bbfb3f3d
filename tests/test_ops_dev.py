"""``kms serve --dev``: driven by boto3 with the export lines it prints."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from test_cli_serve import _wait_ready

from kmscore.errors import InvalidSignatureException
from kmscore.frontends.awsjson.sigv4 import SigV4Verifier
from kmscore.frontends.ops.dev import DEV_ACCESS_KEY_ID, DEV_HTTP, DEV_SECRET_ACCESS_KEY

KMS = shutil.which("kms")
pytestmark = pytest.mark.skipif(KMS is None, reason="the kms console script is not installed")


def _exports(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            found[name] = value
    return found


def test_dev_mode_with_boto3_and_the_printed_exports(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(tmp_path)  # no ~/.aws of the machine's
    proc = subprocess.Popen(
        # Port 0: tests run beside each other; the default port is DEV_HTTP.
        [str(KMS), "serve", "--dev", "--http", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        lines = _wait_ready(proc)
        exports = _exports(lines)
        assert exports["AWS_ACCESS_KEY_ID"] == DEV_ACCESS_KEY_ID
        assert exports["AWS_SECRET_ACCESS_KEY"] == DEV_SECRET_ACCESS_KEY
        assert exports["AWS_ENDPOINT_URL_KMS"].startswith("http://127.0.0.1:")
        data_dir = Path(next(line for line in lines if line.startswith("Data dir:")).split(": ")[1])
        assert data_dir.name.startswith("kms-dev-") and data_dir.is_dir()
        # boto3 configured by nothing but the printed variables.
        client_env = {**env, **exports}
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(client_env)
        try:
            kms = boto3.client("kms", config=Config(retries={"total_max_attempts": 1}))
            key = kms.create_key(Description="ci")["KeyMetadata"]["KeyId"]
            blob = kms.encrypt(KeyId=key, Plaintext=b"secret")["CiphertextBlob"]
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"
            # Any Region: a client signing for another one is served too.
            other = boto3.client(
                "kms", region_name="ap-southeast-2",
                config=Config(retries={"total_max_attempts": 1}),
            )  # fmt: skip
            # ... as a Region of its own (docs/regions.md): its keys, not the other's.
            with pytest.raises(other.exceptions.NotFoundException):
                other.decrypt(CiphertextBlob=blob)
            mine = other.create_key()["KeyMetadata"]
            assert mine["Arn"].startswith("arn:aws:kms:ap-southeast-2:")
            sealed = other.encrypt(KeyId=mine["KeyId"], Plaintext=b"s2")["CiphertextBlob"]
            assert other.decrypt(CiphertextBlob=sealed)["Plaintext"] == b"s2"
            assert [k["KeyId"] for k in other.list_keys()["Keys"]] == [mine["KeyId"]]
            assert [k["KeyId"] for k in kms.list_keys()["Keys"]] == [key]
        finally:
            os.environ.clear()
            os.environ.update(saved)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not data_dir.exists()  # the temporary data dir goes with the server


def test_the_default_dev_address() -> None:
    assert DEV_HTTP == "127.0.0.1:4599"


def test_any_region_checks_the_signature_with_the_named_region() -> None:
    from test_awsjson_sigv4 import KEY_ID, NOW, SECRET, VANILLA, headers

    strict = SigV4Verifier("eu-west-1", lambda k: ("user", SECRET), service="service",
                           clock=lambda: NOW)  # fmt: skip
    loose = SigV4Verifier("eu-west-1", lambda k: ("user", SECRET), service="service",
                          clock=lambda: NOW, regions=lambda r: True)  # fmt: skip
    request = headers(VANILLA["GET", "/"])  # signed for us-east-1
    with pytest.raises(InvalidSignatureException, match="valid region"):
        strict.verify("GET", "/", request, b"")
    assert loose.verify_scoped("GET", "/", request, b"") == ("user", KEY_ID, "us-east-1")
    # The signature still counts: a changed one fails in any Region.
    signature = VANILLA["GET", "/"]
    tampered = headers(("0" if signature[0] != "0" else "1") + signature[1:])
    with pytest.raises(InvalidSignatureException):
        loose.verify("GET", "/", tampered, b"")
