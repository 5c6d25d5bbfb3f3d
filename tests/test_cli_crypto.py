"""``kms encrypt``, ``kms decrypt`` and ``kms generate-data-key``, in-process.

Helpers (the CliRunner wrapper, botocore shape checks) are in test_cli_keys.py;
the same commands through a real daemon are tested there too.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from test_cli_keys import Kms, arn, init_data_dir, rows

ALL_BYTES = bytes(range(256)) * 4


@pytest.fixture
def kms(tmp_path: Path, no_default_data_dir: Path) -> Kms:
    return Kms(init_data_dir(tmp_path / "kms"))


@pytest.fixture
def key_id(kms: Kms) -> str:
    key = kms.new_key()
    kms.ok("alias", "create", "alias/crypto", key)
    return key


@pytest.fixture
def no_default_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    nowhere = tmp_path / "no-such-data-dir"
    monkeypatch.setenv("KMS_DATA_DIR", str(nowhere))
    monkeypatch.delenv("KMS_PASSPHRASE", raising=False)
    return nowhere


def seal(kms: Kms, key: str, plaintext: bytes, *args: str) -> bytes:
    return kms.ok("encrypt", key, *args, stdin=plaintext).stdout_bytes


def unseal(kms: Kms, blob: bytes, *args: str) -> bytes:
    return kms.ok("decrypt", *args, stdin=blob).stdout_bytes


# --- encrypt | decrypt ---------------------------------------------------------------------


def test_raw_round_trip_through_stdin_and_stdout(kms: Kms, key_id: str) -> None:
    for plaintext in (b"x", b"hello\n", ALL_BYTES, b"\0" * 4096):
        blob = seal(kms, key_id, plaintext)
        assert blob[0] == 0xC5 and len(blob) == 50 + len(plaintext)
        assert len(plaintext) < 6 or plaintext not in blob
        assert unseal(kms, blob) == plaintext
    # By alias and by ARN; the blob names the key, so decrypt needs no key.
    for ref in ("alias/crypto", arn(key_id)):
        assert unseal(kms, seal(kms, ref, b"by reference")) == b"by reference"


def test_base64_round_trip(kms: Kms, key_id: str) -> None:
    out = seal(kms, key_id, ALL_BYTES, "--base64")
    assert out.endswith(b"\n") and out.count(b"\n") == 1
    blob = base64.b64decode(out.strip(), validate=True)
    assert blob[0] == 0xC5
    assert unseal(kms, out, "--base64") == ALL_BYTES
    assert unseal(kms, out.strip(), "--base64") == ALL_BYTES  # no trailing newline
    assert unseal(kms, blob) == ALL_BYTES  # the same blob, raw
    # Base64 as `base64` and MIME wrap it, at 76 columns.
    wrapped = base64.encodebytes(blob)
    assert wrapped.count(b"\n") > 1
    assert unseal(kms, wrapped, "--base64") == ALL_BYTES


def test_round_trip_with_files(kms: Kms, key_id: str, tmp_path: Path) -> None:
    source, sealed, opened = tmp_path / "plain.bin", tmp_path / "sealed.bin", tmp_path / "out.bin"
    source.write_bytes(ALL_BYTES)
    result = kms.ok("encrypt", key_id, "--in", source, "--out", sealed, "--context", "f=1")
    assert result.stdout_bytes == b""
    result = kms.ok("decrypt", "--in", sealed, "--out", opened, "--context", "f=1")
    assert result.stdout_bytes == b"" and opened.read_bytes() == ALL_BYTES
    # Base64 files, and files mixed with stdin and stdout.
    b64 = tmp_path / "sealed.b64"
    kms.ok("encrypt", key_id, "--base64", "--out", b64, stdin=b"mixed")
    base64.b64decode(b64.read_bytes().strip(), validate=True)
    assert kms.ok("decrypt", "--base64", "--in", b64).stdout_bytes == b"mixed"
    kms.ok("decrypt", "--base64", "--out", opened, stdin=b64.read_bytes())
    assert opened.read_bytes() == b"mixed"


def test_encrypt_and_decrypt_json(kms: Kms, key_id: str) -> None:
    sealed = kms.json("Encrypt", "encrypt", "alias/crypto", "--context", "a=b", stdin=b"secret")
    assert sealed["KeyId"] == arn(key_id)
    assert sealed["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    blob = base64.b64decode(sealed["CiphertextBlob"])
    opened = kms.json("Decrypt", "decrypt", "--context", "a=b", stdin=blob)
    assert opened["KeyId"] == arn(key_id)
    assert opened["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    assert base64.b64decode(opened["Plaintext"]) == b"secret"
    current = kms.json("DescribeKey", "describe-key", key_id)["KeyMetadata"]
    assert opened["KeyMaterialId"] == current["CurrentKeyMaterialId"]
    as_text = sealed["CiphertextBlob"].encode()
    opened = kms.json("Decrypt", "decrypt", "--base64", "--context", "a=b", stdin=as_text)
    assert base64.b64decode(opened["Plaintext"]) == b"secret"


def test_encryption_context_binds_the_ciphertext(kms: Kms, key_id: str) -> None:
    blob = seal(kms, key_id, b"ctx", "--context", "tenant=t-42", "--context", "doc=a=b")
    # Order does not matter; the value after the first "=" is kept whole.
    assert unseal(kms, blob, "--context", "doc=a=b", "--context", "tenant=t-42") == b"ctx"
    for wrong in (
        (),
        ("--context", "tenant=t-42"),
        ("--context", "tenant=t-43", "--context", "doc=a=b"),
        ("--context", "tenant=t-42", "--context", "doc=a"),
        ("--context", "tenant=t-42", "--context", "doc=a=b", "--context", "x=y"),
    ):
        message = kms.fails("InvalidCiphertextException", "decrypt", *wrong, stdin=blob)
        assert "t-42" not in message
    # An empty value is a value.
    blob = seal(kms, key_id, b"empty", "--context", "k=")
    assert unseal(kms, blob, "--context", "k=") == b"empty"
    kms.fails("InvalidCiphertextException", "decrypt", stdin=blob)


def test_decrypt_with_a_required_key(kms: Kms, key_id: str) -> None:
    blob = seal(kms, key_id, b"pinned")
    for ref in (key_id, arn(key_id), "alias/crypto"):
        assert unseal(kms, blob, "--key", ref) == b"pinned"
    other = kms.new_key()
    kms.fails("IncorrectKeyException", "decrypt", "--key", other, stdin=blob)
    kms.fails("NotFoundException", "decrypt", "--key", "alias/missing", stdin=blob)


def test_rotated_key_still_decrypts_old_ciphertext(kms: Kms, key_id: str) -> None:
    old = seal(kms, key_id, b"before rotation")
    kms.ok("rotate", key_id)
    new = seal(kms, key_id, b"after rotation")
    assert old[18:22] != new[18:22]  # the material version in the header
    assert unseal(kms, old) == b"before rotation"
    assert unseal(kms, new) == b"after rotation"


def test_encrypt_failures(kms: Kms, key_id: str, tmp_path: Path) -> None:
    kms.fails("NotFoundException", "encrypt", "no-such-key", stdin=b"x")
    kms.fails("NotFoundException", "encrypt", "alias/missing", stdin=b"x")
    kms.fails("ValidationException", "encrypt", key_id, stdin=b"x" * 4097)
    kms.fails("ValidationException", "encrypt", key_id, stdin=b"")
    kms.usage_error("encrypt", key_id, "--context", "novalue", stdin=b"x", says="--context")
    kms.usage_error("encrypt", key_id, "--context", "=v", stdin=b"x", says="--context")
    kms.usage_error("encrypt", key_id, "--in", tmp_path / "missing", says="--in")
    kms.usage_error("encrypt", stdin=b"x", says="KEY")
    kms.ok("disable-key", key_id)
    assert "disabled" in kms.fails("DisabledException", "encrypt", key_id, stdin=b"x")
    kms.ok("enable-key", key_id)
    kms.ok("schedule-deletion", key_id, "--days", "7")
    kms.fails("KMSInvalidStateException", "encrypt", "alias/crypto", stdin=b"x")


def test_decrypt_failures(kms: Kms, key_id: str, tmp_path: Path) -> None:
    blob = seal(kms, key_id, b"data", "--context", "a=b")
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    for bad in (bytes(tampered), blob[:-1], b"\xc5" + b"\0" * 60, b"not a blob at all"):
        kms.fails("InvalidCiphertextException", "decrypt", "--context", "a=b", stdin=bad)
    kms.fails("ValidationException", "decrypt", stdin=b"")
    kms.usage_error("decrypt", "--context", "a", stdin=blob, says="--context")
    # Input that is not base64 is a usage error, not a KMS call.
    for junk in (b"!!!", b"abc", b"\xff\xfe", base64.b64encode(blob)[:-2] + b"*="):
        kms.usage_error("decrypt", "--base64", stdin=junk, says="base64")
    kms.usage_error("decrypt", "--in", tmp_path / "missing", says="--in")
    kms.ok("disable-key", key_id)
    kms.fails("DisabledException", "decrypt", "--context", "a=b", stdin=blob)
    # The failures above are in the audit trail; the usage errors are not (never sent).
    events = [e["eventName"] for e in kms.records()]
    assert events.count("Decrypt") == 2 * 6


# --- generate-data-key ---------------------------------------------------------------------


def test_generate_data_key_then_decrypt_gives_its_plaintext(kms: Kms, key_id: str) -> None:
    dk = kms.json("GenerateDataKey", "generate-data-key", "alias/crypto", "--context", "t=1")
    assert dk["KeyId"] == arn(key_id)
    plaintext = base64.b64decode(dk["Plaintext"])
    assert len(plaintext) == 32
    blob = base64.b64decode(dk["CiphertextBlob"])
    assert unseal(kms, blob, "--context", "t=1") == plaintext
    kms.fails("InvalidCiphertextException", "decrypt", stdin=blob)
    # For people: rows, with the blobs in base64.
    shown = rows(kms.ok("generate-data-key", key_id).stdout)
    assert list(shown) == ["KeyId", "Plaintext", "CiphertextBlob"]
    assert shown["KeyId"] == arn(key_id)
    plaintext = base64.b64decode(shown["Plaintext"], validate=True)
    assert unseal(kms, shown["CiphertextBlob"].encode(), "--base64") == plaintext


def test_generate_data_key_sizes(kms: Kms, key_id: str) -> None:
    for args, size in (
        (("--key-spec", "AES_256"), 32),
        (("--key-spec", "AES_128"), 16),
        (("--bytes", "1"), 1),
        (("--bytes", "64"), 64),
        (("--bytes", "1024"), 1024),
    ):
        dk = kms.json("GenerateDataKey", "generate-data-key", key_id, *args)
        plaintext = base64.b64decode(dk["Plaintext"])
        assert len(plaintext) == size
        assert unseal(kms, base64.b64decode(dk["CiphertextBlob"])) == plaintext


def test_generate_data_key_without_plaintext(kms: Kms, key_id: str) -> None:
    dk = kms.json(
        "GenerateDataKeyWithoutPlaintext",
        "generate-data-key", key_id, "--without-plaintext", "--context", "c=d",
    )  # fmt: skip
    assert "Plaintext" not in dk and dk["KeyId"] == arn(key_id)
    plaintext = unseal(kms, base64.b64decode(dk["CiphertextBlob"]), "--context", "c=d")
    assert len(plaintext) == 32
    shown = rows(kms.ok("generate-data-key", key_id, "--without-plaintext", "--bytes", "8").stdout)
    assert list(shown) == ["KeyId", "CiphertextBlob"]
    assert len(unseal(kms, shown["CiphertextBlob"].encode(), "--base64")) == 8
    names = [e["eventName"] for e in kms.records()]
    assert names.count("GenerateDataKeyWithoutPlaintext") == 2


def test_generate_data_key_failures(kms: Kms, key_id: str) -> None:
    gdk = "generate-data-key"
    kms.fails("NotFoundException", gdk, "no-such-key")
    kms.fails("NotFoundException", gdk, "no-such-key", "--without-plaintext")
    assert "keySpec" in kms.fails("ValidationException", gdk, key_id, "--key-spec", "AES_512")
    for size in ("0", "1025"):
        assert "numberOfBytes" in kms.fails("ValidationException", gdk, key_id, "--bytes", size)
    kms.usage_error(gdk, key_id, "--bytes", "lots")
    kms.usage_error(gdk, key_id, "--context", "nope", says="--context")
    kms.ok("disable-key", key_id)
    kms.fails("DisabledException", gdk, "alias/crypto")
    kms.fails("DisabledException", gdk, key_id, "--without-plaintext")
