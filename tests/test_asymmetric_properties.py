"""Property tests: whatever bytes a client sends, only the documented outcomes happen.

- Signatures and MACs: ``verify``/``verify_mac`` return a bool, never raise.
- RSA ciphertexts: plaintext or ``InvalidCiphertextException``, nothing else.
- Peer public keys, key material: ``ValidationException``, nothing else.
- Round trips hold for any message, and any change to a signature breaks it.
"""

from __future__ import annotations

import functools

from hypothesis import assume, given
from hypothesis import strategies as st

from kmscore.crypto import asymmetric as A
from kmscore.errors import InvalidCiphertextException, ValidationException
from kmscore.model.keyspecs import KEY_SPECS

SIGN_CASES = [
    (spec, alg)
    for spec, info in KEY_SPECS.items()
    if info.supported
    for alg in info.signing_algorithms
    if alg != "ED25519_PH_SHA_512"
]
HMAC_CASES = [(s, i.mac_algorithms[0]) for s, i in KEY_SPECS.items() if i.mac_algorithms]
OAEP_CASES = [
    (spec, alg)
    for spec in ("RSA_2048", "RSA_3072", "RSA_4096")
    for alg in ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256")
]
ECDH_SPECS = ["ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"]

messages = st.binary(min_size=0, max_size=A.MAX_MESSAGE_LENGTH)


@functools.cache
def loaded(spec: str) -> A.LoadedKey:
    return A.LoadedKey.load(spec, A.generate_private_key(spec))


@functools.cache
def signature_of(spec: str, algorithm: str) -> bytes:
    return A.sign(loaded(spec), algorithm, b"fixed message", "RAW")


@given(case=st.sampled_from(SIGN_CASES), message=messages, signature=st.binary(max_size=6144))
def test_any_bytes_as_a_signature_is_a_bool(case, message, signature):
    spec, algorithm = case
    assert A.verify(loaded(spec), algorithm, message, "RAW", signature) is False


@given(case=st.sampled_from(SIGN_CASES), data=st.data())
def test_any_change_to_a_signature_breaks_it(case, data):
    spec, algorithm = case
    good = signature_of(spec, algorithm)
    key = loaded(spec)
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if kind == "flip":
        index = data.draw(st.integers(0, len(good) - 1))
        bit = data.draw(st.integers(0, 7))
        bad = bytearray(good)
        bad[index] ^= 1 << bit
        bad = bytes(bad)
    elif kind == "truncate":
        bad = good[: data.draw(st.integers(0, len(good) - 1))]
    else:
        bad = good + data.draw(st.binary(min_size=1, max_size=16))
    result = A.verify(key, algorithm, b"fixed message", "RAW", bad)
    assert result is False


@given(case=st.sampled_from(SIGN_CASES), message=messages)
def test_sign_then_verify_any_message(case, message):
    spec, algorithm = case
    assume(not spec.startswith("RSA_4096") or len(message) < 64)  # keep RSA-4096 cheap
    key = loaded(spec)
    signature = A.sign(key, algorithm, message, "RAW")
    assert A.verify(key, algorithm, message, "RAW", signature) is True
    assert A.verify(key, algorithm, message + b"\x00", "RAW", signature) is False


@given(
    case=st.sampled_from([(s, a) for s, a in SIGN_CASES if A.SIGNING_SCHEMES[a].hash_algorithm]),
    digest=st.binary(max_size=80),
    signature=st.binary(max_size=600),
)
def test_digest_messages_of_any_length(case, digest, signature):
    spec, algorithm = case
    expected = A.SIGNING_SCHEMES[algorithm].digest_length
    try:
        result = A.verify(loaded(spec), algorithm, digest, "DIGEST", signature)
    except ValidationException:
        assert len(digest) != expected
    else:
        assert len(digest) == expected
        assert result is False


@given(case=st.sampled_from(HMAC_CASES), message=messages, mac=st.binary(max_size=128))
def test_any_bytes_as_a_mac_is_a_bool(case, message, mac):
    spec, algorithm = case
    key = loaded(spec)
    good = A.generate_mac(key, algorithm, message)
    assert A.verify_mac(key, algorithm, message, mac) is (mac == good)
    assert A.verify_mac(key, algorithm, message, good) is True


@given(case=st.sampled_from(OAEP_CASES), ciphertext=st.binary(max_size=600))
def test_any_bytes_as_rsa_ciphertext_is_invalid_ciphertext(case, ciphertext):
    spec, algorithm = case
    try:
        A.rsa_decrypt(loaded(spec), algorithm, ciphertext)
    except InvalidCiphertextException as exc:
        assert exc.message == InvalidCiphertextException.default_message


@given(case=st.sampled_from(OAEP_CASES), data=st.data())
def test_rsa_round_trip_then_tamper(case, data):
    spec, algorithm = case
    key = loaded(spec)
    limit = A.max_plaintext_length(spec, algorithm)
    plaintext = data.draw(st.binary(max_size=limit))
    ciphertext = A.rsa_encrypt(key, algorithm, plaintext)
    assert A.rsa_decrypt(key, algorithm, ciphertext) == plaintext
    index = data.draw(st.integers(0, len(ciphertext) - 1))
    bad = bytearray(ciphertext)
    bad[index] ^= 1 << data.draw(st.integers(0, 7))
    try:
        A.rsa_decrypt(key, algorithm, bytes(bad))
    except InvalidCiphertextException:
        pass
    else:  # pragma: no cover - OAEP makes this a 2^-128-ish event
        raise AssertionError("a tampered OAEP ciphertext decrypted")


@given(spec=st.sampled_from(ECDH_SPECS), public_key=st.binary(max_size=300))
def test_any_bytes_as_a_peer_key_is_a_validation_error(spec, public_key):
    try:
        A.derive_shared_secret(loaded(spec), "ECDH", public_key)
    except ValidationException:
        pass


@given(spec=st.sampled_from(ECDH_SPECS), data=st.data())
def test_mangled_peer_keys_are_validation_errors(spec, data):
    good = bytearray(loaded(spec).public_key_der())
    index = data.draw(st.integers(0, len(good) - 1))
    good[index] ^= 1 << data.draw(st.integers(0, 7))
    try:
        secret = A.derive_shared_secret(loaded(spec), "ECDH", bytes(good))
    except ValidationException:
        return
    # A flip that still leaves a valid point (e.g. in an unused bit) agrees normally.
    assert isinstance(secret, bytes)


@given(
    spec=st.sampled_from([s for s, i in KEY_SPECS.items() if i.supported and i.asymmetric]),
    blob=st.binary(max_size=600),
)
def test_any_bytes_as_key_material_is_a_validation_error(spec, blob):
    for load in (A.LoadedKey.load, A.LoadedKey.load_public):
        try:
            load(spec, blob)
        except ValidationException:
            pass
