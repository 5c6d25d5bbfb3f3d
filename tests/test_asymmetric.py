"""Asymmetric and HMAC crypto core: round trips, interop, AWS's rules and errors."""

from __future__ import annotations

import functools
import hashlib
import pickle

import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from kmscore.crypto import asymmetric as A
from kmscore.errors import (
    InvalidCiphertextException,
    InvalidKeyUsageException,
    UnsupportedOperationException,
    ValidationException,
)
from kmscore.model.keyspecs import KEY_SPECS, KeyFamily, KeySpec

SIGNING_SPECS = [s for s, i in KEY_SPECS.items() if i.supported and i.signing_algorithms]
SIGN_CASES = [
    (spec, alg)
    for spec in SIGNING_SPECS
    for alg in KEY_SPECS[spec].signing_algorithms
    if alg != "ED25519_PH_SHA_512"
]
HASHED_CASES = [(s, a) for s, a in SIGN_CASES if A.SIGNING_SCHEMES[a].hash_algorithm]
RSA_SPECS = [KeySpec.RSA_2048, KeySpec.RSA_3072, KeySpec.RSA_4096]
OAEP = ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
HMAC_SPECS = [KeySpec.HMAC_224, KeySpec.HMAC_256, KeySpec.HMAC_384, KeySpec.HMAC_512]
NIST_CURVES = [KeySpec.ECC_NIST_P256, KeySpec.ECC_NIST_P384, KeySpec.ECC_NIST_P521]
HASHLIB = {"SHA256": hashlib.sha256, "SHA384": hashlib.sha384, "SHA512": hashlib.sha512}
MESSAGE = b"the quick brown fox jumps over the lazy dog"


@functools.cache
def material(spec: str) -> bytes:
    """One private key per key spec for the whole run (RSA_4096 is slow to make)."""
    return A.generate_private_key(spec)


@functools.cache
def loaded(spec: str) -> A.LoadedKey:
    return A.LoadedKey.load(spec, material(spec))


def digest(algorithm: str, message: bytes) -> bytes:
    name = A.SIGNING_SCHEMES[algorithm].hash_algorithm.name.upper().replace("-", "")
    return HASHLIB[name](message).digest()


# --- key material ----------------------------------------------------------


@pytest.mark.parametrize("spec", [s for s, i in KEY_SPECS.items() if i.supported])
def test_generate_and_load_every_spec(spec):
    info = KEY_SPECS[spec]
    mat = material(spec)
    if info.family is KeyFamily.SYMMETRIC:
        assert len(mat) * 8 == info.key_bits
        return
    key = loaded(spec)
    assert key.key_spec == spec and key.has_private_key
    if info.family is KeyFamily.HMAC:
        assert len(mat) * 8 == info.key_bits
        return
    if spec == "ML_KEM_512":
        # cryptography has no ML-KEM-512: kmscore's own loaders read it back.
        spki = A.public_key_der(spec, mat)
        assert A.LoadedKey.load_public(spec, spki).public_key_der() == spki == key.public_key_der()
        return
    # PKCS#8 that plain cryptography reads back, and an SPKI public key.
    private = serialization.load_der_private_key(mat, None)
    spki = A.public_key_der(spec, mat)
    assert spki == key.public_key_der()
    assert serialization.load_der_public_key(spki) == private.public_key()
    assert A.LoadedKey.load_public(spec, spki).public_key_der() == spki


def test_ml_dsa_material_is_seed_only_pkcs8():
    for spec in ("ML_DSA_44", "ML_DSA_65", "ML_DSA_87"):
        assert len(material(spec)) == 54  # 22-byte PKCS#8 header + 32-byte seed


def test_hmac_and_symmetric_material_is_random():
    assert A.generate_private_key("HMAC_256") != A.generate_private_key("HMAC_256")
    assert len(A.generate_private_key("SYMMETRIC_DEFAULT")) == 32


def test_material_must_match_the_key_spec():
    with pytest.raises(ValidationException, match="RSA_3072"):
        A.LoadedKey.load("RSA_3072", material("RSA_2048"))
    with pytest.raises(ValidationException, match="ECC_NIST_P384"):
        A.LoadedKey.load("ECC_NIST_P384", material("ECC_NIST_P256"))
    with pytest.raises(ValidationException):
        A.LoadedKey.load("ECC_SECG_P256K1", material("ECC_NIST_P256"))
    with pytest.raises(ValidationException):
        A.LoadedKey.load("ML_DSA_65", material("ML_DSA_44"))
    with pytest.raises(ValidationException):
        A.LoadedKey.load("ECC_NIST_EDWARDS25519", material("ML_DSA_44"))
    with pytest.raises(ValidationException, match="PKCS#8"):
        A.LoadedKey.load("RSA_2048", b"\x30\x03\x02\x01\x00")
    with pytest.raises(ValidationException):
        A.LoadedKey.load("RSA_2048", material("RSA_2048") + b"\x00")
    with pytest.raises(ValidationException):
        A.LoadedKey.load("HMAC_256", b"")
    with pytest.raises(ValidationException):
        A.LoadedKey.load_public("RSA_2048", loaded("ECC_NIST_P256").public_key_der())


def _inconsistent_rsa_2048() -> bytes:
    """PKCS#8 of an RSA key whose CRT exponent is wrong: it parses, but is not a key."""
    numbers = serialization.load_der_private_key(material("RSA_2048"), None).private_numbers()
    broken = rsa.RSAPrivateNumbers(
        numbers.p, numbers.q, numbers.d, numbers.dmp1 ^ 2, numbers.dmq1, numbers.iqmp,
        numbers.public_numbers,
    )  # fmt: skip
    return broken.private_key(unsafe_skip_rsa_key_validation=True).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_rsa_keys_are_checked_unless_the_store_vouches_for_them():
    with pytest.raises(ValidationException, match="RSA_2048"):
        A.LoadedKey.load("RSA_2048", _inconsistent_rsa_2048())
    # check=False is for material the service made itself: fast, and it still works.
    key = A.LoadedKey.load("RSA_4096", material("RSA_4096"), check=False)
    signature = A.sign(key, "RSASSA_PSS_SHA_512", MESSAGE, "RAW")
    assert A.verify(loaded("RSA_4096"), "RSASSA_PSS_SHA_512", MESSAGE, "RAW", signature)
    # Type and size are checked either way.
    with pytest.raises(ValidationException):
        A.LoadedKey.load("RSA_3072", material("RSA_4096"), check=False)


@pytest.mark.parametrize("corrupt", [False, True])
def test_errors_never_carry_key_material(corrupt):
    mat = material("ECC_NIST_P256")
    if corrupt:
        mat = mat[:-3]
    with pytest.raises(ValidationException) as info:
        A.LoadedKey.load("ECC_NIST_P384", mat)
    assert mat.hex() not in str(info.value) and mat.hex() not in repr(info.value)
    # The library's own error (which might describe the input) is not chained.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_symmetric_and_sm2_are_not_loaded():
    with pytest.raises(UnsupportedOperationException, match="engine"):
        A.LoadedKey.load("SYMMETRIC_DEFAULT", bytes(32))
    with pytest.raises(UnsupportedOperationException, match="China"):
        A.LoadedKey.load("SM2", b"x")
    with pytest.raises(UnsupportedOperationException):
        A.generate_private_key("SM2")
    with pytest.raises(UnsupportedOperationException, match="symmetric"):
        A.public_key_der("HMAC_256", material("HMAC_256"))
    with pytest.raises(UnsupportedOperationException, match="no public key"):
        loaded("HMAC_256").public_key_der()
    with pytest.raises(ValidationException):
        A.generate_private_key("RSA_1024")


def test_loaded_key_repr_and_pickling_hide_material():
    for spec in ("HMAC_256", "ECC_NIST_P256"):
        key = loaded(spec)
        assert material(spec).hex() not in repr(key)
        assert repr(key).startswith(f"LoadedKey(key_spec='{spec}'")
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(key)
    public = A.LoadedKey.load_public("ECC_NIST_P256", loaded("ECC_NIST_P256").public_key_der())
    assert repr(public) == "LoadedKey(key_spec='ECC_NIST_P256', public)"
    assert not public.has_private_key


def test_public_only_key_cannot_sign_or_decrypt():
    public = A.LoadedKey.load_public("RSA_2048", loaded("RSA_2048").public_key_der())
    with pytest.raises(ValueError, match="no private key"):
        A.sign(public, "RSASSA_PSS_SHA_256", MESSAGE, "RAW")
    with pytest.raises(ValueError, match="no private key"):
        A.rsa_decrypt(public, "RSAES_OAEP_SHA_256", bytes(256))


@pytest.mark.parametrize(
    "spec", ["RSA_2048", "ECC_NIST_P256", "ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519"]
)
def test_data_key_pairs(spec):
    private_der, public_der = A.generate_data_key_pair(spec)
    private = serialization.load_der_private_key(private_der, None)
    assert serialization.load_der_public_key(public_der) == private.public_key()
    assert A.public_key_der(spec, private_der) == public_der
    assert A.generate_data_key_pair(spec)[0] != private_der


def test_data_key_pair_specs_are_aws_s():
    for spec in ("HMAC_256", "ML_DSA_44", "SYMMETRIC_DEFAULT", "RSA_1024"):
        with pytest.raises(ValidationException, match="'keyPairSpec'"):
            A.generate_data_key_pair(spec)
    with pytest.raises(UnsupportedOperationException):
        A.generate_data_key_pair("SM2")


# --- Sign / Verify ---------------------------------------------------------


@pytest.mark.parametrize(("spec", "algorithm"), SIGN_CASES)
def test_sign_verify_round_trip(spec, algorithm):
    key = loaded(spec)
    signature = A.sign(key, algorithm, MESSAGE, "RAW")
    assert A.verify(key, algorithm, MESSAGE, "RAW", signature)
    assert not A.verify(key, algorithm, MESSAGE + b".", "RAW", signature)
    tampered = bytearray(signature)
    tampered[len(tampered) // 2] ^= 0x01
    assert not A.verify(key, algorithm, MESSAGE, "RAW", bytes(tampered))
    # A public-only key (what a verifier outside KMS holds) agrees.
    public = A.LoadedKey.load_public(spec, key.public_key_der())
    assert A.verify(public, algorithm, MESSAGE, "RAW", signature)
    # Another key of the same spec does not.
    other = A.LoadedKey.load(spec, A.generate_private_key(spec)) if "RSA" not in spec else None
    if other is not None:
        assert not A.verify(other, algorithm, MESSAGE, "RAW", signature)


def _plain_verify(spec: str, algorithm: str, spki: bytes, message: bytes, signature: bytes):
    """Verify with plain cryptography, as a client holding GetPublicKey's output would."""
    public = serialization.load_der_public_key(spki)
    scheme = A.SIGNING_SCHEMES[algorithm]
    h = scheme.hash_algorithm
    if algorithm.startswith("RSASSA_PSS_"):
        assert isinstance(public, rsa.RSAPublicKey)
        pad = padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
        public.verify(signature, message, pad, h)
    elif algorithm.startswith("RSASSA_PKCS1_V1_5_"):
        public.verify(signature, message, padding.PKCS1v15(), h)
    elif algorithm.startswith("ECDSA_"):
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, message, ec.ECDSA(h))
    elif algorithm == "ED25519_SHA_512":
        assert isinstance(public, ed25519.Ed25519PublicKey)
        public.verify(signature, message)
    else:
        assert isinstance(
            public, mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey
        )
        public.verify(signature, message)  # pure ML-DSA, empty context


@pytest.mark.parametrize(("spec", "algorithm"), SIGN_CASES)
def test_signatures_verify_with_plain_cryptography(spec, algorithm):
    key = loaded(spec)
    signature = A.sign(key, algorithm, MESSAGE, "RAW")
    _plain_verify(spec, algorithm, key.public_key_der(), MESSAGE, signature)


def test_pss_salt_is_the_digest_length():
    key = loaded("RSA_2048")
    public = serialization.load_der_public_key(key.public_key_der())
    signature = A.sign(key, "RSASSA_PSS_SHA_384", MESSAGE, "RAW")
    h = hashes.SHA384()
    public.verify(signature, MESSAGE, padding.PSS(padding.MGF1(h), 48), h)
    # A signature with another salt length is not AWS's and does not verify.
    private = serialization.load_der_private_key(material("RSA_2048"), None)
    other = private.sign(MESSAGE, padding.PSS(padding.MGF1(h), 20), h)
    assert not A.verify(key, "RSASSA_PSS_SHA_384", MESSAGE, "RAW", other)


@pytest.mark.parametrize(("spec", "algorithm"), SIGN_CASES)
def test_signatures_from_plain_cryptography_verify(spec, algorithm):
    private = serialization.load_der_private_key(material(spec), None)
    h = A.SIGNING_SCHEMES[algorithm].hash_algorithm
    if algorithm.startswith("RSASSA_PSS_"):
        sig = private.sign(MESSAGE, padding.PSS(padding.MGF1(h), h.digest_size), h)
    elif algorithm.startswith("RSASSA_PKCS1_V1_5_"):
        sig = private.sign(MESSAGE, padding.PKCS1v15(), h)
    elif algorithm.startswith("ECDSA_"):
        sig = private.sign(MESSAGE, ec.ECDSA(h))
    else:
        sig = private.sign(MESSAGE)
    assert A.verify(loaded(spec), algorithm, MESSAGE, "RAW", sig)


@pytest.mark.parametrize(("spec", "algorithm"), HASHED_CASES)
def test_digest_and_raw_are_the_same_message(spec, algorithm):
    key = loaded(spec)
    d = digest(algorithm, MESSAGE)
    over_raw = A.sign(key, algorithm, MESSAGE, "RAW")
    over_digest = A.sign(key, algorithm, d, "DIGEST")
    assert A.verify(key, algorithm, d, "DIGEST", over_raw)
    assert A.verify(key, algorithm, MESSAGE, "RAW", over_digest)
    if algorithm.startswith("RSASSA_PKCS1_V1_5_"):
        assert over_raw == over_digest  # deterministic
    # A digest sent as RAW is hashed again: a different message.
    assert not A.verify(key, algorithm, d, "RAW", over_digest)


@pytest.mark.parametrize(("spec", "algorithm"), HASHED_CASES)
def test_digest_must_have_the_digest_length(spec, algorithm):
    key = loaded(spec)
    n = len(digest(algorithm, b""))
    for wrong in (0, n - 1, n + 1, 2 * n):
        with pytest.raises(ValidationException, match=f"exactly {n} bytes"):
            A.sign(key, algorithm, bytes(wrong), "DIGEST")
        with pytest.raises(ValidationException, match=f"exactly {n} bytes"):
            A.verify(key, algorithm, bytes(wrong), "DIGEST", b"sig")


@pytest.mark.parametrize(("spec", "algorithm"), SIGN_CASES)
def test_message_limit_is_4096_bytes(spec, algorithm):
    key = loaded(spec)
    signature = A.sign(key, algorithm, bytes(4096), "RAW")
    assert A.verify(key, algorithm, bytes(4096), "RAW", signature)
    with pytest.raises(ValidationException, match="4096"):
        A.sign(key, algorithm, bytes(4097), "RAW")
    with pytest.raises(ValidationException, match="4096"):
        A.verify(key, algorithm, bytes(4097), "RAW", signature)


@pytest.mark.parametrize(
    ("spec", "algorithm"),
    [
        ("ECC_NIST_P256", "ECDSA_SHA_384"),
        ("ECC_NIST_P256", "ECDSA_SHA_512"),
        ("ECC_NIST_P384", "ECDSA_SHA_256"),
        ("ECC_NIST_P521", "ECDSA_SHA_256"),
        ("ECC_SECG_P256K1", "ECDSA_SHA_512"),
        ("ECC_NIST_P256", "RSASSA_PSS_SHA_256"),
        ("RSA_2048", "ECDSA_SHA_256"),
        ("RSA_2048", "ED25519_SHA_512"),
        ("ECC_NIST_EDWARDS25519", "ECDSA_SHA_512"),
        ("ML_DSA_44", "ED25519_SHA_512"),
        ("ECC_NIST_P256", "ML_DSA_SHAKE_256"),
        ("RSA_2048", "SM2DSA"),
    ],
)
def test_wrong_signing_algorithm_is_invalid_key_usage(spec, algorithm):
    key = loaded(spec)
    with pytest.raises(InvalidKeyUsageException, match=f"{algorithm}.*{spec}"):
        A.sign(key, algorithm, MESSAGE, "RAW")
    with pytest.raises(InvalidKeyUsageException):
        A.verify(key, algorithm, MESSAGE, "RAW", b"sig")


def test_signing_with_a_mac_key_is_invalid_key_usage():
    with pytest.raises(InvalidKeyUsageException):
        A.sign(loaded("HMAC_256"), "ECDSA_SHA_256", MESSAGE, "RAW")


def test_unknown_names_are_validation_errors():
    key = loaded("ECC_NIST_P256")
    with pytest.raises(ValidationException, match="'signingAlgorithm'"):
        A.sign(key, "ECDSA_SHA_1", MESSAGE, "RAW")
    with pytest.raises(ValidationException, match="'messageType'"):
        A.sign(key, "ECDSA_SHA_256", MESSAGE, "HASHED")


def test_ed25519_message_types():
    key = loaded("ECC_NIST_EDWARDS25519")
    with pytest.raises(ValidationException, match="use MessageType RAW"):
        A.sign(key, "ED25519_SHA_512", bytes(64), "DIGEST")
    with pytest.raises(ValidationException, match="use MessageType DIGEST"):
        A.sign(key, "ED25519_PH_SHA_512", MESSAGE, "RAW")
    with pytest.raises(ValidationException, match="exactly 64 bytes"):
        A.sign(key, "ED25519_PH_SHA_512", bytes(32), "DIGEST")
    with pytest.raises(ValidationException):
        A.sign(key, "ED25519_SHA_512", bytes(64), "EXTERNAL_MU")


def test_ed25519ph_signs_a_digest_after_aws_checks():
    """ED25519_PH_SHA_512 works with DIGEST (tests/test_asymmetric_ed25519ph.py has the rest)."""
    key = loaded("ECC_NIST_EDWARDS25519")
    digest = hashlib.sha512(MESSAGE).digest()
    signature = A.sign(key, "ED25519_PH_SHA_512", digest, "DIGEST")
    assert len(signature) == 64
    assert A.verify(key, "ED25519_PH_SHA_512", digest, "DIGEST", signature)
    assert not A.verify(key, "ED25519_PH_SHA_512", bytes(64), "DIGEST", signature)
    # Not a PureEdDSA signature of the same bytes: the dom2 prefix separates them.
    assert not A.verify(key, "ED25519_SHA_512", digest, "RAW", signature)


def test_ml_dsa_message_types():
    key = loaded("ML_DSA_65")
    with pytest.raises(ValidationException, match="use MessageType EXTERNAL_MU or RAW"):
        A.sign(key, "ML_DSA_SHAKE_256", bytes(64), "DIGEST")
    with pytest.raises(ValidationException, match="exactly 64 bytes"):
        A.sign(key, "ML_DSA_SHAKE_256", bytes(32), "EXTERNAL_MU")
    with pytest.raises(UnsupportedOperationException, match="EXTERNAL_MU"):
        A.sign(key, "ML_DSA_SHAKE_256", bytes(64), "EXTERNAL_MU")
    with pytest.raises(UnsupportedOperationException, match="EXTERNAL_MU"):
        A.verify(key, "ML_DSA_SHAKE_256", bytes(64), "EXTERNAL_MU", b"sig")


@pytest.mark.parametrize(("spec", "algorithm"), HASHED_CASES)
def test_external_mu_is_ml_dsa_only(spec, algorithm):
    with pytest.raises(ValidationException, match="EXTERNAL_MU is not valid"):
        A.sign(loaded(spec), algorithm, bytes(64), "EXTERNAL_MU")


def test_ecdsa_signatures_are_der():
    for spec in ("ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1"):
        alg = KEY_SPECS[spec].signing_algorithms[0]
        signature = A.sign(loaded(spec), alg, MESSAGE, "RAW")
        assert signature[0] == 0x30  # SEQUENCE { r INTEGER, s INTEGER }
        r, s = decode_dss_signature(signature)
        assert r > 0 and s > 0


def test_ml_dsa_and_ed25519_signature_sizes():
    sizes = {"ML_DSA_44": 2420, "ML_DSA_65": 3309, "ML_DSA_87": 4627}
    for spec, size in sizes.items():
        assert len(A.sign(loaded(spec), "ML_DSA_SHAKE_256", MESSAGE, "RAW")) == size
    key = loaded("ECC_NIST_EDWARDS25519")
    assert len(A.sign(key, "ED25519_SHA_512", MESSAGE, "RAW")) == 64


# --- RSA encryption --------------------------------------------------------

AWS_OAEP_LIMITS = {
    ("RSA_2048", "RSAES_OAEP_SHA_1"): 214,
    ("RSA_2048", "RSAES_OAEP_SHA_256"): 190,
    ("RSA_3072", "RSAES_OAEP_SHA_1"): 342,
    ("RSA_3072", "RSAES_OAEP_SHA_256"): 318,
    ("RSA_4096", "RSAES_OAEP_SHA_1"): 470,
    ("RSA_4096", "RSAES_OAEP_SHA_256"): 446,
}


@pytest.mark.parametrize(("spec", "algorithm"), list(AWS_OAEP_LIMITS))
def test_oaep_round_trip_and_aws_limits(spec, algorithm):
    limit = AWS_OAEP_LIMITS[(spec, algorithm)]
    assert A.max_plaintext_length(spec, algorithm) == limit
    key = loaded(spec)
    for plaintext in (b"x", bytes(range(256)) * 2):
        plaintext = plaintext[:limit]
        ciphertext = A.rsa_encrypt(key, algorithm, plaintext)
        assert len(ciphertext) * 8 == KEY_SPECS[spec].key_bits
        assert A.rsa_decrypt(key, algorithm, ciphertext) == plaintext
    with pytest.raises(ValidationException, match=f"at most {limit} bytes"):
        A.rsa_encrypt(key, algorithm, bytes(limit + 1))
    # Encryption is randomized.
    assert A.rsa_encrypt(key, algorithm, b"x") != A.rsa_encrypt(key, algorithm, b"x")


@pytest.mark.parametrize(("spec", "algorithm"), list(AWS_OAEP_LIMITS))
def test_data_encrypted_offline_with_the_public_key_decrypts(spec, algorithm):
    key = loaded(spec)
    public = serialization.load_der_public_key(key.public_key_der())
    h = hashes.SHA1() if algorithm.endswith("SHA_1") else hashes.SHA256()
    ciphertext = public.encrypt(b"offline secret", padding.OAEP(padding.MGF1(h), h, None))
    assert A.rsa_decrypt(key, algorithm, ciphertext) == b"offline secret"
    # And what kmscore encrypts, plain cryptography decrypts.
    private = serialization.load_der_private_key(material(spec), None)
    ours = A.rsa_encrypt(key, algorithm, b"to the client")
    assert private.decrypt(ours, padding.OAEP(padding.MGF1(h), h, None)) == b"to the client"


def test_decrypting_with_the_other_algorithm_or_key_fails_opaquely():
    key = loaded("RSA_2048")
    ciphertext = A.rsa_encrypt(key, "RSAES_OAEP_SHA_256", b"secret")
    messages = set()
    for alg, k, ct in [
        ("RSAES_OAEP_SHA_1", key, ciphertext),
        ("RSAES_OAEP_SHA_256", A.LoadedKey.load("RSA_2048", A.generate_private_key("RSA_2048")),
         ciphertext),
        ("RSAES_OAEP_SHA_256", key, ciphertext[:-1]),
        ("RSAES_OAEP_SHA_256", key, ciphertext + b"\x00"),
        ("RSAES_OAEP_SHA_256", key, b""),
        ("RSAES_OAEP_SHA_256", key, b"\xff" * 256),
    ]:  # fmt: skip
        with pytest.raises(InvalidCiphertextException) as info:
            A.rsa_decrypt(k, alg, ct)
        assert info.value.__cause__ is None and info.value.__suppress_context__
        messages.add(info.value.message)
    assert len(messages) == 1


def test_wrong_encryption_algorithm():
    key = loaded("RSA_2048")
    with pytest.raises(InvalidKeyUsageException):
        A.rsa_encrypt(key, "SYMMETRIC_DEFAULT", b"x")
    with pytest.raises(InvalidKeyUsageException):
        A.rsa_encrypt(key, "SM2PKE", b"x")
    with pytest.raises(ValidationException, match="'encryptionAlgorithm'"):
        A.rsa_encrypt(key, "RSAES_OAEP_SHA_512", b"x")
    with pytest.raises(InvalidKeyUsageException):
        A.rsa_encrypt(loaded("ECC_NIST_P256"), "RSAES_OAEP_SHA_256", b"x")
    with pytest.raises(InvalidKeyUsageException):
        A.rsa_decrypt(loaded("ECC_NIST_P256"), "RSAES_OAEP_SHA_256", b"x")
    with pytest.raises(InvalidKeyUsageException):
        A.max_plaintext_length("SYMMETRIC_DEFAULT", "SYMMETRIC_DEFAULT")


def test_public_only_key_encrypts():
    public = A.LoadedKey.load_public("RSA_3072", loaded("RSA_3072").public_key_der())
    ciphertext = A.rsa_encrypt(public, "RSAES_OAEP_SHA_1", b"hi")
    assert A.rsa_decrypt(loaded("RSA_3072"), "RSAES_OAEP_SHA_1", ciphertext) == b"hi"


# --- HMAC ------------------------------------------------------------------


@pytest.mark.parametrize("spec", HMAC_SPECS)
def test_hmac_round_trip_and_interop(spec):
    key = loaded(spec)
    (algorithm,) = KEY_SPECS[spec].mac_algorithms
    mac = A.generate_mac(key, algorithm, MESSAGE)
    h = {"224": hashes.SHA224(), "256": hashes.SHA256(), "384": hashes.SHA384()}.get(
        spec[-3:], hashes.SHA512()
    )
    plain = hmac.HMAC(material(spec), h)
    plain.update(MESSAGE)
    assert mac == plain.finalize()
    assert len(mac) * 8 == KEY_SPECS[spec].key_bits
    assert A.verify_mac(key, algorithm, MESSAGE, mac)
    assert not A.verify_mac(key, algorithm, MESSAGE + b"!", mac)
    assert not A.verify_mac(key, algorithm, MESSAGE, mac[:-1])  # never truncated
    assert not A.verify_mac(key, algorithm, MESSAGE, mac + b"\x00")
    assert not A.verify_mac(key, algorithm, MESSAGE, b"")
    assert A.generate_mac(key, algorithm, bytes(4096))
    with pytest.raises(ValidationException, match="4096"):
        A.generate_mac(key, algorithm, bytes(4097))
    with pytest.raises(ValidationException, match="4096"):
        A.verify_mac(key, algorithm, bytes(4097), mac)


def test_wrong_mac_algorithm():
    with pytest.raises(InvalidKeyUsageException, match=r"HMAC_SHA_512.*HMAC_256"):
        A.generate_mac(loaded("HMAC_256"), "HMAC_SHA_512", MESSAGE)
    with pytest.raises(InvalidKeyUsageException):
        A.verify_mac(loaded("HMAC_384"), "HMAC_SHA_256", MESSAGE, bytes(32))
    with pytest.raises(InvalidKeyUsageException):
        A.generate_mac(loaded("ECC_NIST_P256"), "HMAC_SHA_256", MESSAGE)
    with pytest.raises(ValidationException, match="'macAlgorithm'"):
        A.generate_mac(loaded("HMAC_256"), "HMAC_SHA_1", MESSAGE)


def test_imported_hmac_keys_of_other_lengths_work():
    key = A.LoadedKey.load("HMAC_256", b"k" * 100)
    mac = A.generate_mac(key, "HMAC_SHA_256", MESSAGE)
    assert A.verify_mac(key, "HMAC_SHA_256", MESSAGE, mac)


# --- ECDH ------------------------------------------------------------------


@pytest.mark.parametrize("spec", NIST_CURVES)
def test_ecdh_agrees_with_a_peer_outside_kms(spec):
    key = loaded(spec)
    curve = type(serialization.load_der_private_key(material(spec), None).curve)
    peer = ec.generate_private_key(curve())
    peer_spki = peer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secret = A.derive_shared_secret(key, "ECDH", peer_spki)
    ours = serialization.load_der_public_key(key.public_key_der())
    assert secret == peer.exchange(ec.ECDH(), ours)
    assert len(secret) == (curve.key_size + 7) // 8


def test_ecdh_peer_key_errors():
    key = loaded("ECC_NIST_P256")
    with pytest.raises(ValidationException, match=r"curve secp384r1.*secp256r1"):
        A.derive_shared_secret(key, "ECDH", loaded("ECC_NIST_P384").public_key_der())
    with pytest.raises(ValidationException, match="secp256k1"):
        A.derive_shared_secret(key, "ECDH", loaded("ECC_SECG_P256K1").public_key_der())
    with pytest.raises(ValidationException, match="must be an elliptic curve key"):
        A.derive_shared_secret(key, "ECDH", loaded("RSA_2048").public_key_der())
    with pytest.raises(ValidationException, match="must be an elliptic curve key"):
        A.derive_shared_secret(key, "ECDH", loaded("ECC_NIST_EDWARDS25519").public_key_der())
    for junk in (b"", b"\x30\x00", b"not a key", key.public_key_der() + b"\x00"):
        with pytest.raises(ValidationException, match="not a valid DER"):
            A.derive_shared_secret(key, "ECDH", junk)
    # A raw uncompressed point is not SPKI: AWS wants the DER SubjectPublicKeyInfo.
    point = serialization.load_der_public_key(key.public_key_der()).public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    with pytest.raises(ValidationException):
        A.derive_shared_secret(key, "ECDH", point)


def test_ecdh_point_not_on_the_curve_is_rejected():
    spki = bytearray(loaded("ECC_NIST_P256").public_key_der())
    spki[-1] ^= 0x01  # y no longer matches x
    with pytest.raises(ValidationException):
        A.derive_shared_secret(loaded("ECC_NIST_P256"), "ECDH", bytes(spki))


@pytest.mark.parametrize(
    "spec", ["ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519", "RSA_2048", "ML_DSA_44", "HMAC_256"]
)
def test_ecdh_needs_a_nist_curve_key(spec):
    with pytest.raises(InvalidKeyUsageException, match="ECDH"):
        A.derive_shared_secret(loaded(spec), "ECDH", loaded("ECC_NIST_P256").public_key_der())


def test_ecdh_algorithm_name():
    with pytest.raises(ValidationException, match="'keyAgreementAlgorithm'"):
        A.derive_shared_secret(loaded("ECC_NIST_P256"), "X25519", b"")
