"""The other real clients, and the standalone server process.

The aws cli (a subprocess with the data dir's credentials file), the AWS
Encryption SDK for Python (a multi-megabyte message and a stream through a KMS
key here, found through ``AWS_ENDPOINT_URL_KMS``), and
``python -m kmscore.frontends.awsjson`` alone and with several worker processes
sharing its port.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_encryption_sdk.exceptions import AWSEncryptionSDKClientError
from cryptography.exceptions import InvalidSignature
from test_awsjson_support import (
    NO_RETRY,
    REGION,
    Endpoint,
    admin_credentials,
    audit_records,
    running_endpoint,
)

from kmscore.audit import verify


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    with running_endpoint(tmp_path_factory.mktemp("awsjson-clients") / "kms") as ep:
        yield ep


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without AWS settings of the machine, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(extra)
    return env


# --- the aws cli ---------------------------------------------------------------------


def aws(endpoint: Endpoint, *args: str, use_env_endpoint: bool = False) -> str:
    exe = shutil.which("aws")
    if exe is None:
        pytest.skip("the aws cli is not installed (pip install 'kmscore[test]')")
    env = clean_env(
        AWS_SHARED_CREDENTIALS_FILE=str(endpoint.data_dir / "credentials"),
        AWS_CONFIG_FILE=str(endpoint.data_dir / "no-such-config"),
        AWS_DEFAULT_REGION=endpoint.service.region,
    )
    argv = [exe, "kms", *args, "--output", "json"]
    if use_env_endpoint:
        env["AWS_ENDPOINT_URL_KMS"] = endpoint.url
    else:
        argv += ["--endpoint-url", endpoint.url]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_aws_cli_create_key_encrypt_fileb_decrypt(endpoint: Endpoint, tmp_path: Path) -> None:
    created = json.loads(aws(endpoint, "create-key", "--description", "from the aws cli"))
    meta = created["KeyMetadata"]
    assert meta["Arn"].startswith(f"arn:aws:kms:{REGION}:{endpoint.service.account}:key/")
    plaintext = os.urandom(3000)
    (tmp_path / "plain.bin").write_bytes(plaintext)
    encrypted = json.loads(
        aws(
            endpoint,
            "encrypt",
            "--key-id",
            meta["KeyId"],
            "--plaintext",
            f"fileb://{tmp_path / 'plain.bin'}",
            "--encryption-context",
            "purpose=cli-test",
        )
    )
    assert encrypted["KeyId"] == meta["Arn"]
    (tmp_path / "blob.bin").write_bytes(base64.b64decode(encrypted["CiphertextBlob"]))
    decrypted = json.loads(
        aws(
            endpoint,
            "decrypt",
            "--ciphertext-blob",
            f"fileb://{tmp_path / 'blob.bin'}",
            "--encryption-context",
            "purpose=cli-test",
            use_env_endpoint=True,
        )
    )
    assert base64.b64decode(decrypted["Plaintext"]) == plaintext
    assert decrypted["KeyId"] == meta["Arn"]


# --- the AWS Encryption SDK ----------------------------------------------------------


@pytest.fixture
def esdk(endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, str]:
    import aws_encryption_sdk
    import botocore.session

    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", endpoint.url)
    session = botocore.session.Session()
    session.set_credentials(endpoint.access_key_id, endpoint.secret)
    kms = endpoint.client()
    arn = kms.create_key(Description="envelope encryption")["KeyMetadata"]["Arn"]
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=aws_encryption_sdk.CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(
        key_ids=[arn], botocore_session=session
    )
    return client, provider, arn


def test_encryption_sdk_multi_megabyte_message(esdk: tuple[Any, Any, str]) -> None:
    client, provider, arn = esdk
    message = os.urandom(5 * 1024 * 1024 + 17)
    context = {"tenant": "t-42", "purpose": "esdk-test"}
    ciphertext, header = client.encrypt(
        source=message, key_provider=provider, encryption_context=context
    )
    assert [k.key_provider.key_info for k in header.encrypted_data_keys] == [arn.encode()]
    decrypted, decrypt_header = client.decrypt(source=ciphertext, key_provider=provider)
    assert decrypted == message
    assert decrypt_header.encryption_context["tenant"] == "t-42"


def test_encryption_sdk_stream(esdk: tuple[Any, Any, str], tmp_path: Path) -> None:
    client, provider, _ = esdk
    message = os.urandom(3 * 1024 * 1024 + 5)
    encrypted = io.BytesIO()
    with client.stream(
        mode="e", source=io.BytesIO(message), key_provider=provider, frame_length=64 * 1024
    ) as encryptor:
        for chunk in encryptor:
            encrypted.write(chunk)
    encrypted.seek(0)
    decrypted = io.BytesIO()
    with client.stream(mode="d", source=encrypted, key_provider=provider) as decryptor:
        for chunk in decryptor:
            decrypted.write(chunk)
    assert decrypted.getvalue() == message


def test_encryption_sdk_refuses_a_tampered_message(esdk: tuple[Any, Any, str]) -> None:
    client, provider, _ = esdk
    ciphertext, _ = client.encrypt(source=b"x" * 1000, key_provider=provider)
    tampered = bytearray(ciphertext)
    tampered[-40] ^= 1
    with pytest.raises((InvalidSignature, AWSEncryptionSDKClientError)):
        client.decrypt(source=bytes(tampered), key_provider=provider)


# --- the standalone process ----------------------------------------------------------


def start_server(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, "-m", "kmscore.frontends.awsjson", "--data-dir", str(data_dir)]
    argv += ["--listen", "127.0.0.1:0", *extra]
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith("AWS_ENDPOINT_URL_KMS=http://127.0.0.1:"), (
        line,
        process.stderr.read() if process.poll() is not None and process.stderr else "",
    )
    return process, line.split("=", 1)[1]


def stop_server(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()


def client_for(data_dir: Path, url: str) -> Any:
    # A new data dir: the default Region.
    key_id, secret = admin_credentials(data_dir)
    return boto3.client(
        "kms",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=NO_RETRY,
    )


def test_standalone_server_prints_its_endpoint_and_stops_on_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "kms"
    process, url = start_server(data_dir)
    try:
        kms = client_for(data_dir, url)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        data_key = kms.generate_data_key(KeyId=key, KeySpec="AES_256")
        assert (
            kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"]
            == (data_key["Plaintext"])
        )
    finally:
        stop_server(process)
    report = verify(data_dir)
    assert report.records >= 3
    names = [r["eventName"] for r in audit_records(data_dir)]
    assert names[-3:] == ["CreateKey", "GenerateDataKey", "Decrypt"]


def test_workers_share_the_port_and_the_audit_trail(tmp_path: Path) -> None:
    data_dir = tmp_path / "kms"
    process, url = start_server(data_dir, "--workers", "2")
    try:
        kms = client_for(data_dir, url)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        for _ in range(24):
            # A new connection each time: the kernel spreads connections
            # (not requests) over the workers.
            one_shot = client_for(data_dir, url)
            blob = one_shot.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
            assert one_shot.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    finally:
        stop_server(process)
    verify(data_dir)
    records = audit_records(data_dir)
    assert len([r for r in records if r["eventName"] == "Decrypt"]) == 24
    # Request ids start with a per-process prefix: both workers answered.
    assert len({r["requestID"].rsplit("-", 1)[0] for r in records}) == 2


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


@pytest.mark.parametrize("workers", [2, 4])
def test_kms_serve_workers_share_one_trail(tmp_path: Path, workers: int) -> None:
    data_dir = tmp_path / "kms"
    argv = [sys.executable, "-c", "from kmscore.frontends.cli import main; main()"]
    argv += ["serve", "--data-dir", str(data_dir), "--http", "127.0.0.1:0"]
    argv += ["--workers", str(workers)]
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()
    )
    assert process.stdout is not None
    lines = [process.stdout.readline().strip() for _ in range(3)]
    url_line = next((line for line in lines if line.startswith("AWS_ENDPOINT_URL_KMS=")), None)
    assert url_line is not None, (lines, process.poll())
    url = url_line.split("=", 1)[1]
    acknowledged: list[str] = []
    try:
        started = _children(process.pid)
        assert len(started) == workers - 1
        kms = client_for(data_dir, url)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        for _ in range(10 * workers):
            one_shot = client_for(data_dir, url)  # a new connection: spread by the kernel
            made = one_shot.generate_data_key(KeyId=key, KeySpec="AES_256")
            opened = one_shot.decrypt(CiphertextBlob=made["CiphertextBlob"])
            assert opened["Plaintext"] == made["Plaintext"]
            acknowledged += [
                made["ResponseMetadata"]["RequestId"],
                opened["ResponseMetadata"]["RequestId"],
            ]
    finally:
        stop_server(process)  # SIGTERM drains every worker; exit status 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in started)
    report = verify(data_dir)
    records = audit_records(data_dir)
    assert report.records == len(records)
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(len(records)))  # one chain, no duplicate sequence number
    ids = [r["requestID"] for r in records]
    assert all(ids.count(request_id) == 1 for request_id in acknowledged)
    # Request ids start with a per-process prefix: more than one worker answered.
    served = {request_id.rsplit("-", 1)[0] for request_id in acknowledged}
    assert len(served) >= 2


def test_kms_serve_workers_needs_http(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "from kmscore.frontends.cli import main; main()"]
    argv += ["serve", "--data-dir", str(tmp_path / "kms"), "--workers", "2"]
    done = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 2
    assert "--workers needs --http" in done.stderr
    assert not (tmp_path / "kms").exists()


def test_beside_the_socket_daemon_through_its_startup_hook(tmp_path: Path) -> None:
    # kms serve --http: the daemon's run() starts the endpoint on its own loop.
    data_dir = tmp_path / "kms"
    script = (
        "import sys\n"
        "from kmscore.frontends.awsjson import http_startup\n"
        "from kmscore.frontends.rpc.server import run\n"
        "hook = http_startup('127.0.0.1', 0, on_ready=lambda s: print(s.env_line, flush=True))\n"
        "sys.exit(run(sys.argv[1], extra_startup=[hook]))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    try:
        assert line.startswith("AWS_ENDPOINT_URL_KMS=http://127.0.0.1:"), line
        kms = client_for(data_dir, line.split("=", 1)[1])
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        assert kms.describe_key(KeyId=key)["KeyMetadata"]["Enabled"]
    finally:
        stop_server(process)
