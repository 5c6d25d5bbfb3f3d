"""Tampered ciphertext blobs: every change is refused with the right AWS error.

A blob whose header still names its own key fails as InvalidCiphertextException
(one opaque error, whatever was changed). A blob whose key id bytes (or the
multi-Region flag) were changed names another key, which does not exist, so
Decrypt answers NotFoundException, or IncorrectKeyException when the caller
said which key to expect. Nothing else may ever escape.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from service_helpers import Clock, new_key, open_kms

from kmscore.client import LocalKMS
from kmscore.errors import KMSError
from kmscore.model import blob as blobfmt

CONTEXT = {"purpose": "tamper"}
MAGIC, VERSION, MRK_FLAG = 0xC5, 0x01, 0x80


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> LocalKMS:
    with open_kms(tmp_path_factory.mktemp("tamper"), Clock()) as k:
        yield k


@pytest.fixture(scope="module")
def blobs(kms: LocalKMS) -> dict[str, tuple[str, bytes, bytes]]:
    """name -> (key id, blob, plaintext): plain and multi-Region keys, two versions."""

    def sealed(key_id: str, plaintext: bytes) -> tuple[str, bytes, bytes]:
        out = kms.encrypt(KeyId=key_id, Plaintext=plaintext, EncryptionContext=CONTEXT)
        return key_id, out["CiphertextBlob"], plaintext

    out = {}
    plain = new_key(kms)
    out["v1"] = sealed(plain, b"secret v1")
    kms.rotate_key_on_demand(KeyId=plain)
    out["v2"] = sealed(plain, b"secret v2")
    dk = kms.generate_data_key(KeyId=plain, KeySpec="AES_256", EncryptionContext=CONTEXT)
    out["datakey"] = (plain, dk["CiphertextBlob"], dk["Plaintext"])
    out["mrk"] = sealed(new_key(kms, MultiRegion=True), b"secret mrk")
    return out


def expected_code(original: bytes, data: bytes, key_id_given: bool = False) -> str:
    """The error a changed blob must give, from the blob format alone."""
    well_formed = (
        len(data) >= blobfmt.MIN_LENGTH and data[0] == MAGIC and data[1] & ~MRK_FLAG == VERSION
    )
    if well_formed and data[1:18] != original[1:18]:
        # The header names another key: a key id nobody created.
        return "IncorrectKeyException" if key_id_given else "NotFoundException"
    return "InvalidCiphertextException"


def _decrypt_code(kms: LocalKMS, data: bytes, **request: object) -> str:
    try:
        kms.decrypt(CiphertextBlob=data, EncryptionContext=CONTEXT, **request)
    except KMSError as exc:
        return exc.code
    raise AssertionError("a changed blob decrypted")


def _check(kms: LocalKMS, original: bytes, key_id: str, data: bytes) -> None:
    assert data != original
    assert _decrypt_code(kms, data) == expected_code(original, data)
    assert _decrypt_code(kms, data, KeyId=key_id) == expected_code(original, data, True)
    (result,) = kms.decrypt_many(CiphertextBlobs=[data], EncryptionContext=CONTEXT)["Results"]
    assert result["Error"]["Code"] == expected_code(original, data)
    assert set(result) == {"Error"}


def test_untampered_blobs_decrypt(
    kms: LocalKMS, blobs: dict[str, tuple[str, bytes, bytes]]
) -> None:
    for key_id, data, plaintext in blobs.values():
        out = kms.decrypt(CiphertextBlob=data, EncryptionContext=CONTEXT, KeyId=key_id)
        assert out["Plaintext"] == plaintext


_names = st.sampled_from(["v1", "v2", "datakey", "mrk"])


@settings(max_examples=150)
@given(name=_names, data=st.data())
def test_flip_any_byte(
    kms: LocalKMS, blobs: dict[str, tuple[str, bytes, bytes]], name: str, data: st.DataObject
) -> None:
    key_id, original, _ = blobs[name]
    index = data.draw(st.integers(0, len(original) - 1), label="index")
    mask = data.draw(st.integers(1, 255), label="mask")
    changed = bytearray(original)
    changed[index] ^= mask
    _check(kms, original, key_id, bytes(changed))


@pytest.mark.parametrize("name", ["v1", "v2", "datakey", "mrk"])
def test_flip_every_bit(
    kms: LocalKMS, blobs: dict[str, tuple[str, bytes, bytes]], name: str
) -> None:
    _, original, _ = blobs[name]
    for index in range(len(original)):
        for bit in range(8):
            changed = bytearray(original)
            changed[index] ^= 1 << bit
            assert _decrypt_code(kms, bytes(changed)) == expected_code(original, bytes(changed))


@settings(max_examples=60)
@given(name=_names, data=st.data())
def test_truncate(
    kms: LocalKMS, blobs: dict[str, tuple[str, bytes, bytes]], name: str, data: st.DataObject
) -> None:
    key_id, original, _ = blobs[name]
    cut = data.draw(st.integers(1, len(original) - 1), label="length")
    _check(kms, original, key_id, original[:cut])


@settings(max_examples=60)
@given(name=_names, extra=st.binary(min_size=1, max_size=64))
def test_extend(
    kms: LocalKMS, blobs: dict[str, tuple[str, bytes, bytes]], name: str, extra: bytes
) -> None:
    key_id, original, _ = blobs[name]
    _check(kms, original, key_id, original + extra)


@settings(max_examples=60)
@given(name=_names, data=st.data())
def test_splice_header_onto_other_body(
    kms: LocalKMS, blobs: dict[str, tuple[str, bytes, bytes]], name: str, data: st.DataObject
) -> None:
    """A valid header from one blob on the body of another never authenticates."""
    key_id, original, _ = blobs[name]
    # Blobs under the same key version share their header; splicing those
    # would only make another genuine blob.
    other = data.draw(
        _names.filter(
            lambda n: blobs[n][1][: blobfmt.HEADER_LENGTH] != original[: blobfmt.HEADER_LENGTH]
        ),
        label="other",
    )
    body = blobs[other][1][blobfmt.HEADER_LENGTH :]
    changed = original[: blobfmt.HEADER_LENGTH] + body
    _check(kms, original, key_id, changed)


@settings(max_examples=100)
@given(data=st.binary(min_size=1, max_size=200))
def test_random_bytes(
    kms: LocalKMS, blobs: dict[str, tuple[str, bytes, bytes]], data: bytes
) -> None:
    key_id, original, _ = blobs["v1"]
    if data == original:
        return
    _check(kms, original, key_id, data)


@settings(max_examples=60)
@given(body=st.binary(min_size=29, max_size=100), version=st.integers(0, 2**32 - 1))
def test_well_formed_header_with_random_body(
    kms: LocalKMS, blobs: dict[str, tuple[str, bytes, bytes]], body: bytes, version: int
) -> None:
    """The header of a real key, any material version, and random bytes after it."""
    key_id, original, _ = blobs["v2"]
    data = blobfmt.header(key_id, version) + body
    _check(kms, original, key_id, data)


def test_wrong_version_numbers(kms: LocalKMS, blobs: dict[str, tuple[str, bytes, bytes]]) -> None:
    key_id, original, _ = blobs["v1"]
    body = original[blobfmt.HEADER_LENGTH :]
    for version in (0, 2, 3, 2**31, 2**32 - 1):
        data = blobfmt.header(key_id, version) + body
        assert _decrypt_code(kms, data) == "InvalidCiphertextException"


def test_key_id_changed_to_another_existing_key(
    kms: LocalKMS, blobs: dict[str, tuple[str, bytes, bytes]]
) -> None:
    """The header names a real key whose material did not make the blob."""
    key_id, original, _ = blobs["v1"]
    other = new_key(kms)
    data = blobfmt.header(other, 1) + original[blobfmt.HEADER_LENGTH :]
    assert _decrypt_code(kms, data) == "InvalidCiphertextException"
    assert _decrypt_code(kms, data, KeyId=other) == "InvalidCiphertextException"
    assert _decrypt_code(kms, data, KeyId=key_id) == "IncorrectKeyException"


def test_tampered_blob_under_reencrypt(
    kms: LocalKMS, blobs: dict[str, tuple[str, bytes, bytes]], tmp_path: Path
) -> None:
    key_id, original, _ = blobs["v2"]
    changed = original[:-1] + bytes([original[-1] ^ 0x40])
    with pytest.raises(KMSError) as info:
        kms.re_encrypt(
            CiphertextBlob=changed, SourceEncryptionContext=CONTEXT, DestinationKeyId=key_id
        )
    assert info.value.code == "InvalidCiphertextException"
    assert info.value.message == kms_error_message(kms, changed)


def kms_error_message(kms: LocalKMS, data: bytes) -> str:
    """The message of Decrypt's refusal: the same opaque text whatever the cause."""
    try:
        kms.decrypt(CiphertextBlob=data, EncryptionContext=CONTEXT)
    except KMSError as exc:
        return exc.message
    raise AssertionError("decrypted")


def test_invalid_ciphertext_messages_say_nothing_specific(
    kms: LocalKMS, blobs: dict[str, tuple[str, bytes, bytes]]
) -> None:
    key_id, original, _ = blobs["v1"]
    variants = [
        original[:10],  # short
        bytes([0]) + original[1:],  # magic
        original[:1] + bytes([2]) + original[2:],  # format version
        blobfmt.header(key_id, 9) + original[blobfmt.HEADER_LENGTH :],  # material version
        original[:-1] + bytes([original[-1] ^ 1]),  # tag
        original + b"\x00",  # trailing byte
    ]
    messages = {kms_error_message(kms, v) for v in variants}
    assert len(messages) == 1
    wrong_context = kms.decrypt_many(CiphertextBlobs=[original])["Results"][0]["Error"]["Message"]
    assert messages == {wrong_context}
