"""Ed25519ph (ED25519_PH_SHA_512): RFC 8032's vector, libsodium interop, rejections, service.

The scheme is kmscore's own (kmscore/asymmetric/ed25519ph.py, over libsodium's
Edwards25519 primitives), so it is checked against a published known answer and
against an independent implementation: libsodium's ``crypto_sign_ed25519ph_*``
API, which hashes the message itself, so ``ed25519ph.sign(seed, SHA-512(M))``
must equal its signature of ``M`` and each must verify with the other.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from nacl import bindings as sodium
from nacl.exceptions import BadSignatureError
from service_helpers import Clock, expect, new_key, open_kms

from kmscore.client import LocalKMS
from kmscore.crypto import asymmetric as A
from kmscore.crypto.asymmetric import ed25519ph
from kmscore.errors import ValidationException

# RFC 8032 section 7.3, "Test Vectors for Ed25519ph", TEST abc.
RFC8032_SECRET = bytes.fromhex("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42")
RFC8032_PUBLIC = bytes.fromhex("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf")
RFC8032_MESSAGE = bytes.fromhex("616263")
RFC8032_SIGNATURE = bytes.fromhex(
    "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41"
    "31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406"
)
L = 2**252 + 27742317777372353535851937790883648493
MESSAGES = [b"", b"abc", b"pay 100 to alice", bytes(range(256)) * 16]


def sha512(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


def libsodium_sign(seed: bytes, message: bytes) -> bytes:
    """Ed25519ph of ``message`` by libsodium, which computes PH(M) itself."""
    public, secret = sodium.crypto_sign_seed_keypair(seed)
    assert public == ed25519ph.public_key(seed)
    state = sodium.crypto_sign_ed25519ph_state()
    sodium.crypto_sign_ed25519ph_update(state, message)
    return bytes(sodium.crypto_sign_ed25519ph_final_create(state, secret))


def libsodium_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    state = sodium.crypto_sign_ed25519ph_state()
    sodium.crypto_sign_ed25519ph_update(state, message)
    try:
        return bool(sodium.crypto_sign_ed25519ph_final_verify(state, signature, public))
    except BadSignatureError:
        return False


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    return [RFC8032_SECRET, bytes(32), b"\xff" * 32] + [os.urandom(32) for _ in range(5)]


# --- the scheme --------------------------------------------------------------------


def test_rfc8032_section_7_3_vector() -> None:
    assert ed25519ph.public_key(RFC8032_SECRET) == RFC8032_PUBLIC
    prehash = sha512(RFC8032_MESSAGE)
    assert ed25519ph.sign(RFC8032_SECRET, prehash) == RFC8032_SIGNATURE
    assert ed25519ph.verify(RFC8032_PUBLIC, prehash, RFC8032_SIGNATURE)
    # The vector's key as cryptography holds it, PKCS#8 round trip included.
    key = ed25519.Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    loaded = A.LoadedKey.load("ECC_NIST_EDWARDS25519", der)
    assert key.public_key().public_bytes_raw() == RFC8032_PUBLIC
    # Through the crypto core: AWS hashes the 64-byte DIGEST once more, so a
    # DIGEST d is signed as Ed25519ph's message d, i.e. with PH = SHA-512(d).
    digest = sha512(RFC8032_MESSAGE)
    assert A.sign(loaded, "ED25519_PH_SHA_512", digest, "DIGEST") == ed25519ph.sign(
        RFC8032_SECRET, sha512(digest)
    )


def test_public_key_matches_cryptography(seeds: list[bytes]) -> None:
    for seed in seeds:
        key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        assert ed25519ph.public_key(seed) == key.public_key().public_bytes_raw()


@pytest.mark.parametrize("message", MESSAGES, ids=len)
def test_round_trip_and_libsodium_interop(seeds: list[bytes], message: bytes) -> None:
    prehash = sha512(message)
    for seed in seeds:
        public = ed25519ph.public_key(seed)
        ours = ed25519ph.sign(seed, prehash)
        assert len(ours) == 64
        assert ed25519ph.sign(seed, prehash) == ours  # deterministic
        assert ed25519ph.verify(public, prehash, ours)
        # libsodium's Ed25519ph of M is the same signature, and each verifies the other.
        theirs = libsodium_sign(seed, message)
        assert theirs == ours
        assert libsodium_verify(public, message, ours)
        assert ed25519ph.verify(public, prehash, theirs)


def test_pure_ed25519_and_ed25519ph_do_not_cross_verify() -> None:
    seed = os.urandom(32)
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    public = ed25519ph.public_key(seed)
    prehash = sha512(b"m")
    pure = key.sign(prehash)
    assert not ed25519ph.verify(public, prehash, pure)
    ph = ed25519ph.sign(seed, prehash)
    with pytest.raises(InvalidSignature):
        key.public_key().verify(ph, prehash)


def test_tampered_signatures_prehashes_and_keys_fail() -> None:
    seed = os.urandom(32)
    public = ed25519ph.public_key(seed)
    prehash = sha512(b"pay 100 to alice")
    signature = ed25519ph.sign(seed, prehash)
    for i in range(64):
        for bit in (0, 7):
            bad = bytearray(signature)
            bad[i] ^= 1 << bit
            assert not ed25519ph.verify(public, prehash, bytes(bad)), (i, bit)
    for i in (0, 31, 63):
        bad = bytearray(prehash)
        bad[i] ^= 1
        assert not ed25519ph.verify(public, bytes(bad), signature)
    assert not ed25519ph.verify(public, sha512(b"pay 100 to mallory"), signature)
    other = ed25519ph.public_key(os.urandom(32))
    assert not ed25519ph.verify(other, prehash, signature)
    bad_key = bytearray(public)
    bad_key[0] ^= 1
    assert not ed25519ph.verify(bytes(bad_key), prehash, signature)
    # Wrong lengths are False, never an exception.
    assert not ed25519ph.verify(public, prehash, signature[:63])
    assert not ed25519ph.verify(public, prehash, signature + b"\x00")
    assert not ed25519ph.verify(public, prehash[:32], signature)
    assert not ed25519ph.verify(public[:31], prehash, signature)
    assert not ed25519ph.verify(public, prehash, b"")


def test_s_at_or_above_the_group_order_is_rejected() -> None:
    seed = os.urandom(32)
    public = ed25519ph.public_key(seed)
    prehash = sha512(b"malleable?")
    signature = ed25519ph.sign(seed, prehash)
    s = int.from_bytes(signature[32:], "little")
    assert s < L
    # S + L is the same scalar mod L, so only the S < L check refuses it.
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    assert not ed25519ph.verify(public, prehash, malleated)
    assert not libsodium_verify(public, b"malleable?", malleated)
    for big in (L, L + 1, 2**256 - 1):
        assert not ed25519ph.verify(public, prehash, signature[:32] + big.to_bytes(32, "little"))


def test_invalid_point_encodings_are_rejected() -> None:
    seed = os.urandom(32)
    public = ed25519ph.public_key(seed)
    prehash = sha512(b"points")
    signature = ed25519ph.sign(seed, prehash)
    identity = bytes([1]) + bytes(31)
    # y = p (non-canonical), y = 2 (not on the curve), the identity (small order).
    non_canonical = (2**255 - 19).to_bytes(32, "little")
    off_curve = (2).to_bytes(32, "little")
    for bad_point in (non_canonical, off_curve, identity, bytes(32), b"\xff" * 32):
        assert not ed25519ph.verify(public, prehash, bad_point + signature[32:])
        assert not ed25519ph.verify(bad_point, prehash, signature)
    # R with its sign bit flipped encodes a different point (or none).
    flipped = bytearray(signature)
    flipped[31] ^= 0x80
    assert not ed25519ph.verify(public, prehash, bytes(flipped))


def test_sign_refuses_wrong_lengths() -> None:
    with pytest.raises(ValueError, match="pre-hash"):
        ed25519ph.sign(bytes(32), bytes(32))
    with pytest.raises(ValueError, match="seed"):
        ed25519ph.sign(bytes(31), bytes(64))


# --- the crypto core: AWS's rules ------------------------------------------------------


def test_core_sign_and_verify_follow_aws() -> None:
    loaded = A.LoadedKey.load(
        "ECC_NIST_EDWARDS25519", A.generate_private_key("ECC_NIST_EDWARDS25519")
    )
    key = loaded.private_key()
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    seed = key.private_bytes_raw()
    public = key.public_key().public_bytes_raw()
    digest = sha512(b"a large document")
    signature = A.sign(loaded, "ED25519_PH_SHA_512", digest, "DIGEST")
    # KMS hashes the 64-byte DIGEST again: it is Ed25519ph's message.
    assert signature == ed25519ph.sign(seed, sha512(digest))
    assert libsodium_verify(public, digest, signature)
    assert A.verify(loaded, "ED25519_PH_SHA_512", digest, "DIGEST", signature)
    assert A.verify(loaded, "ED25519_PH_SHA_512", digest, "DIGEST", libsodium_sign(seed, digest))
    assert not A.verify(loaded, "ED25519_PH_SHA_512", sha512(b"other"), "DIGEST", signature)
    assert not A.verify(loaded, "ED25519_PH_SHA_512", digest, "DIGEST", signature[:-1])
    assert not A.verify(loaded, "ED25519_PH_SHA_512", digest, "DIGEST", b"\x00" * 64)
    # AWS takes DIGEST only, and a DIGEST of exactly 64 bytes.
    with pytest.raises(ValidationException, match="use MessageType DIGEST"):
        A.sign(loaded, "ED25519_PH_SHA_512", b"a large document", "RAW")
    with pytest.raises(ValidationException, match="use MessageType DIGEST"):
        A.verify(loaded, "ED25519_PH_SHA_512", b"a large document", "RAW", signature)
    with pytest.raises(ValidationException, match="exactly 64 bytes"):
        A.sign(loaded, "ED25519_PH_SHA_512", digest[:32], "DIGEST")


# --- through the service ---------------------------------------------------------------


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKMS]:
    with open_kms(tmp_path_factory.mktemp("ed25519ph"), Clock()) as k:
        yield k


def test_service_sign_and_verify(kms: LocalKMS) -> None:
    key = new_key(kms, KeySpec="ECC_NIST_EDWARDS25519", KeyUsage="SIGN_VERIFY")
    der = kms.get_public_key(KeyId=key)["PublicKey"]
    public_key = serialization.load_der_public_key(der)
    assert isinstance(public_key, ed25519.Ed25519PublicKey)
    public = public_key.public_bytes_raw()
    message = b"release manifest v1"
    digest = sha512(message)
    out = kms.sign(
        KeyId=key, Message=digest, MessageType="DIGEST", SigningAlgorithm="ED25519_PH_SHA_512"
    )
    assert out["SigningAlgorithm"] == "ED25519_PH_SHA_512"
    signature = out["Signature"]
    # Checked with libsodium and the public key from GetPublicKey alone.
    assert libsodium_verify(public, digest, signature)
    ok = kms.verify(
        KeyId=key,
        Message=digest,
        MessageType="DIGEST",
        Signature=signature,
        SigningAlgorithm="ED25519_PH_SHA_512",
    )
    assert ok["SignatureValid"] is True
    assert ok["SigningAlgorithm"] == "ED25519_PH_SHA_512"
    bad = bytes([signature[0] ^ 1]) + signature[1:]
    for msg, sig in ((digest, bad), (sha512(message + b"0"), signature)):
        expect(
            "KMSInvalidSignatureException",
            kms.verify,
            KeyId=key,
            Message=msg,
            MessageType="DIGEST",
            Signature=sig,
            SigningAlgorithm="ED25519_PH_SHA_512",
        )
    # A PureEdDSA signature from the same key is not an Ed25519ph one.
    pure = kms.sign(KeyId=key, Message=digest, SigningAlgorithm="ED25519_SHA_512")["Signature"]
    expect(
        "KMSInvalidSignatureException",
        kms.verify,
        KeyId=key,
        Message=digest,
        MessageType="DIGEST",
        Signature=pure,
        SigningAlgorithm="ED25519_PH_SHA_512",
    )
    # RAW (the default MessageType) is refused with this algorithm, as AWS does.
    expect("ValidationException", kms.sign, KeyId=key, Message=message,
           SigningAlgorithm="ED25519_PH_SHA_512")  # fmt: skip
    expect("ValidationException", kms.sign, KeyId=key, Message=digest[:48],
           MessageType="DIGEST", SigningAlgorithm="ED25519_PH_SHA_512")  # fmt: skip
