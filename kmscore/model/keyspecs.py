"""The table of AWS KMS key specs: what each key spec is and which algorithms it allows.

One row per ``KeySpec`` of the AWS KMS API. Each row says whether the key spec is
asymmetric, whether kmscore supports it, which ``KeyUsage`` values ``CreateKey``
accepts with it, and, per key usage, the algorithm lists that ``DescribeKey``
returns (``EncryptionAlgorithms``, ``SigningAlgorithms``, ``MacAlgorithms``,
``KeyAgreementAlgorithms``), in AWS's order.

This module is pure data: it imports no cryptography, so the service can answer
``DescribeKey`` and check requests without loading any key.

Names are :class:`enum.StrEnum` members, so they compare and hash equal to the
plain strings of the wire protocol: ``KeySpec.RSA_2048 == "RSA_2048"``. Every
lookup accepts either form and raises
:class:`~kmscore.errors.ValidationException` for a name that is not in the AWS
model, with the wording AWS uses for enum violations.

Sources: the AWS KMS API reference and botocore's ``kms/2014-11-01`` model
(``tests/test_keyspecs.py`` checks every name here against the model).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, TypeVar

from kmscore.errors import (
    InvalidKeyUsageException,
    UnsupportedOperationException,
    ValidationException,
)

__all__ = [
    "DATA_KEY_PAIR_SPECS",
    "KEY_SPECS",
    "EncapsulationAlgorithm",
    "EncryptionAlgorithm",
    "KeyAgreementAlgorithm",
    "KeyAlgorithms",
    "KeyFamily",
    "KeySpec",
    "KeySpecInfo",
    "KeyUsage",
    "MacAlgorithm",
    "MessageType",
    "SigningAlgorithm",
    "algorithms_for",
    "check_algorithm",
    "parse_enum",
    "require_supported",
    "spec_info",
]


class KeySpec(enum.StrEnum):
    """The ``KeySpec`` of a KMS key (AWS enum ``KeySpec``)."""

    SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
    RSA_2048 = "RSA_2048"
    RSA_3072 = "RSA_3072"
    RSA_4096 = "RSA_4096"
    ECC_NIST_P256 = "ECC_NIST_P256"
    ECC_NIST_P384 = "ECC_NIST_P384"
    ECC_NIST_P521 = "ECC_NIST_P521"
    ECC_SECG_P256K1 = "ECC_SECG_P256K1"
    ECC_NIST_EDWARDS25519 = "ECC_NIST_EDWARDS25519"
    HMAC_224 = "HMAC_224"
    HMAC_256 = "HMAC_256"
    HMAC_384 = "HMAC_384"
    HMAC_512 = "HMAC_512"
    ML_DSA_44 = "ML_DSA_44"
    ML_DSA_65 = "ML_DSA_65"
    ML_DSA_87 = "ML_DSA_87"
    ML_KEM_512 = "ML_KEM_512"
    ML_KEM_768 = "ML_KEM_768"
    ML_KEM_1024 = "ML_KEM_1024"
    SM2 = "SM2"


class KeyUsage(enum.StrEnum):
    """The ``KeyUsage`` of a KMS key (AWS enum ``KeyUsageType``)."""

    ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"
    SIGN_VERIFY = "SIGN_VERIFY"
    GENERATE_VERIFY_MAC = "GENERATE_VERIFY_MAC"
    KEY_AGREEMENT = "KEY_AGREEMENT"
    ENCAPSULATE_DECAPSULATE = "ENCAPSULATE_DECAPSULATE"


class EncryptionAlgorithm(enum.StrEnum):
    """AWS enum ``EncryptionAlgorithmSpec``."""

    SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
    RSAES_OAEP_SHA_1 = "RSAES_OAEP_SHA_1"
    RSAES_OAEP_SHA_256 = "RSAES_OAEP_SHA_256"
    SM2PKE = "SM2PKE"


class SigningAlgorithm(enum.StrEnum):
    """AWS enum ``SigningAlgorithmSpec``."""

    RSASSA_PSS_SHA_256 = "RSASSA_PSS_SHA_256"
    RSASSA_PSS_SHA_384 = "RSASSA_PSS_SHA_384"
    RSASSA_PSS_SHA_512 = "RSASSA_PSS_SHA_512"
    RSASSA_PKCS1_V1_5_SHA_256 = "RSASSA_PKCS1_V1_5_SHA_256"
    RSASSA_PKCS1_V1_5_SHA_384 = "RSASSA_PKCS1_V1_5_SHA_384"
    RSASSA_PKCS1_V1_5_SHA_512 = "RSASSA_PKCS1_V1_5_SHA_512"
    ECDSA_SHA_256 = "ECDSA_SHA_256"
    ECDSA_SHA_384 = "ECDSA_SHA_384"
    ECDSA_SHA_512 = "ECDSA_SHA_512"
    ED25519_SHA_512 = "ED25519_SHA_512"
    ED25519_PH_SHA_512 = "ED25519_PH_SHA_512"
    ML_DSA_SHAKE_256 = "ML_DSA_SHAKE_256"
    SM2DSA = "SM2DSA"


class MacAlgorithm(enum.StrEnum):
    """AWS enum ``MacAlgorithmSpec``."""

    HMAC_SHA_224 = "HMAC_SHA_224"
    HMAC_SHA_256 = "HMAC_SHA_256"
    HMAC_SHA_384 = "HMAC_SHA_384"
    HMAC_SHA_512 = "HMAC_SHA_512"


class KeyAgreementAlgorithm(enum.StrEnum):
    """AWS enum ``KeyAgreementAlgorithmSpec``."""

    ECDH = "ECDH"


class EncapsulationAlgorithm(enum.StrEnum):
    """AWS enum ``EncapsulationAlgorithmSpec``."""

    ML_KEM = "ML_KEM"


class MessageType(enum.StrEnum):
    """AWS enum ``MessageType`` of ``Sign`` and ``Verify``."""

    RAW = "RAW"
    DIGEST = "DIGEST"
    EXTERNAL_MU = "EXTERNAL_MU"


class KeyFamily(enum.StrEnum):
    """The kind of key material behind a key spec (kmscore's grouping, not an AWS name)."""

    SYMMETRIC = "SYMMETRIC"
    RSA = "RSA"
    ECC = "ECC"
    EDWARDS = "EDWARDS"
    HMAC = "HMAC"
    ML_DSA = "ML_DSA"
    ML_KEM = "ML_KEM"
    SM2 = "SM2"


Algorithm = (
    EncryptionAlgorithm
    | SigningAlgorithm
    | MacAlgorithm
    | KeyAgreementAlgorithm
    | EncapsulationAlgorithm
)


@dataclass(frozen=True, slots=True)
class KeyAlgorithms:
    """The algorithms one key spec allows under one key usage.

    Exactly one of the tuples is non-empty: the one ``DescribeKey`` returns for a
    key of this spec and usage.

    Attributes:
        key_usage: The key usage these algorithms belong to.
        encryption_algorithms: ``EncryptionAlgorithms`` of ``DescribeKey``.
        signing_algorithms: ``SigningAlgorithms`` of ``DescribeKey``.
        mac_algorithms: ``MacAlgorithms`` of ``DescribeKey``.
        key_agreement_algorithms: ``KeyAgreementAlgorithms`` of ``DescribeKey``.
        encapsulation_algorithms: ``EncapsulationAlgorithms`` of ``DescribeKey``.
    """

    key_usage: KeyUsage
    encryption_algorithms: tuple[EncryptionAlgorithm, ...] = ()
    signing_algorithms: tuple[SigningAlgorithm, ...] = ()
    mac_algorithms: tuple[MacAlgorithm, ...] = ()
    key_agreement_algorithms: tuple[KeyAgreementAlgorithm, ...] = ()
    encapsulation_algorithms: tuple[EncapsulationAlgorithm, ...] = ()

    @property
    def all(self) -> tuple[Algorithm, ...]:
        """Every algorithm of this key usage, whatever its kind."""
        return (
            *self.encryption_algorithms,
            *self.signing_algorithms,
            *self.mac_algorithms,
            *self.key_agreement_algorithms,
            *self.encapsulation_algorithms,
        )

    def allows(self, algorithm: str) -> bool:
        """Whether ``algorithm`` (a name of any algorithm enum) is allowed here."""
        return algorithm in self.all

    def describe_key_fields(self) -> dict[str, list[str]]:
        """The algorithm members of ``KeyMetadata`` as ``DescribeKey`` returns them.

        Returns:
            For example ``{"SigningAlgorithms": ["ECDSA_SHA_256"]}``; empty lists
            are left out, as AWS leaves them out.
        """
        fields = {
            "EncryptionAlgorithms": self.encryption_algorithms,
            "SigningAlgorithms": self.signing_algorithms,
            "MacAlgorithms": self.mac_algorithms,
            "KeyAgreementAlgorithms": self.key_agreement_algorithms,
            "EncapsulationAlgorithms": self.encapsulation_algorithms,
        }
        return {name: [str(a) for a in algs] for name, algs in fields.items() if algs}


@dataclass(frozen=True, slots=True)
class KeySpecInfo:
    """One row of the key spec table.

    Attributes:
        key_spec: The key spec.
        family: The kind of key material.
        asymmetric: True for key pairs (RSA, ECC, Edwards, ML-DSA, ML-KEM, SM2).
        supported: False for key specs kmscore cannot serve (SM2, China Regions only).
        key_bits: Length of the key in bits where AWS names one: the AES key of
            SYMMETRIC_DEFAULT, the RSA modulus, the HMAC key that kmscore
            generates, the size of an elliptic curve; None for ML-DSA and ML-KEM.
        data_key_pair: True when the name is also a ``DataKeyPairSpec``
            (``GenerateDataKeyPair``'s ``KeyPairSpec``).
        algorithms: Per allowed key usage, the algorithms AWS allows, in
            ``CreateKey``'s order of key usages.
    """

    key_spec: KeySpec
    family: KeyFamily
    asymmetric: bool
    supported: bool
    key_bits: int | None
    data_key_pair: bool
    # Left out of eq and hash: a mapping is not hashable, and key_spec decides anyway.
    algorithms: Mapping[KeyUsage, KeyAlgorithms] = field(repr=False, compare=False)

    @property
    def key_usages(self) -> tuple[KeyUsage, ...]:
        """The key usages ``CreateKey`` accepts with this key spec."""
        return tuple(self.algorithms)

    @property
    def encryption_algorithms(self) -> tuple[EncryptionAlgorithm, ...]:
        """``EncryptionAlgorithms`` of a key of this spec with usage ENCRYPT_DECRYPT."""
        usage = self.algorithms.get(KeyUsage.ENCRYPT_DECRYPT)
        return usage.encryption_algorithms if usage else ()

    @property
    def signing_algorithms(self) -> tuple[SigningAlgorithm, ...]:
        """``SigningAlgorithms`` of a key of this spec with usage SIGN_VERIFY."""
        usage = self.algorithms.get(KeyUsage.SIGN_VERIFY)
        return usage.signing_algorithms if usage else ()

    @property
    def mac_algorithms(self) -> tuple[MacAlgorithm, ...]:
        """``MacAlgorithms`` of a key of this spec with usage GENERATE_VERIFY_MAC."""
        usage = self.algorithms.get(KeyUsage.GENERATE_VERIFY_MAC)
        return usage.mac_algorithms if usage else ()

    @property
    def key_agreement_algorithms(self) -> tuple[KeyAgreementAlgorithm, ...]:
        """``KeyAgreementAlgorithms`` of a key of this spec with usage KEY_AGREEMENT."""
        usage = self.algorithms.get(KeyUsage.KEY_AGREEMENT)
        return usage.key_agreement_algorithms if usage else ()


# --- the table ---------------------------------------------------------------

_E = EncryptionAlgorithm
_S = SigningAlgorithm
_U = KeyUsage

_RSA_ENCRYPT = KeyAlgorithms(_U.ENCRYPT_DECRYPT, encryption_algorithms=(
    _E.RSAES_OAEP_SHA_1, _E.RSAES_OAEP_SHA_256,
))  # fmt: skip
# DescribeKey lists PKCS#1 v1.5 before PSS for RSA signing keys.
_RSA_SIGN = KeyAlgorithms(_U.SIGN_VERIFY, signing_algorithms=(
    _S.RSASSA_PKCS1_V1_5_SHA_256, _S.RSASSA_PKCS1_V1_5_SHA_384, _S.RSASSA_PKCS1_V1_5_SHA_512,
    _S.RSASSA_PSS_SHA_256, _S.RSASSA_PSS_SHA_384, _S.RSASSA_PSS_SHA_512,
))  # fmt: skip
_ECDH = KeyAlgorithms(_U.KEY_AGREEMENT, key_agreement_algorithms=(KeyAgreementAlgorithm.ECDH,))


def _row(
    key_spec: KeySpec,
    family: KeyFamily,
    *usages: KeyAlgorithms,
    key_bits: int | None = None,
    data_key_pair: bool = False,
    supported: bool = True,
) -> KeySpecInfo:
    return KeySpecInfo(
        key_spec=key_spec,
        family=family,
        asymmetric=family not in (KeyFamily.SYMMETRIC, KeyFamily.HMAC),
        supported=supported,
        key_bits=key_bits,
        data_key_pair=data_key_pair,
        algorithms=MappingProxyType({u.key_usage: u for u in usages}),
    )


def _hmac(key_spec: KeySpec, mac: MacAlgorithm, bits: int) -> KeySpecInfo:
    usage = KeyAlgorithms(_U.GENERATE_VERIFY_MAC, mac_algorithms=(mac,))
    return _row(key_spec, KeyFamily.HMAC, usage, key_bits=bits)


def _ecdsa(key_spec: KeySpec, alg: SigningAlgorithm, bits: int, ecdh: bool) -> KeySpecInfo:
    sign = KeyAlgorithms(_U.SIGN_VERIFY, signing_algorithms=(alg,))
    usages = (sign, _ECDH) if ecdh else (sign,)
    return _row(key_spec, KeyFamily.ECC, *usages, key_bits=bits, data_key_pair=True)


def _mldsa(key_spec: KeySpec) -> KeySpecInfo:
    sign = KeyAlgorithms(_U.SIGN_VERIFY, signing_algorithms=(_S.ML_DSA_SHAKE_256,))
    return _row(key_spec, KeyFamily.ML_DSA, sign)


def _mlkem(key_spec: KeySpec) -> KeySpecInfo:
    kem = KeyAlgorithms(
        _U.ENCAPSULATE_DECAPSULATE, encapsulation_algorithms=(EncapsulationAlgorithm.ML_KEM,)
    )
    return _row(key_spec, KeyFamily.ML_KEM, kem, data_key_pair=True)


_K = KeySpec

KEY_SPECS: Final[Mapping[KeySpec, KeySpecInfo]] = MappingProxyType({
    _K.SYMMETRIC_DEFAULT: _row(
        _K.SYMMETRIC_DEFAULT, KeyFamily.SYMMETRIC,
        KeyAlgorithms(_U.ENCRYPT_DECRYPT, encryption_algorithms=(_E.SYMMETRIC_DEFAULT,)),
        key_bits=256,
    ),
    _K.RSA_2048: _row(_K.RSA_2048, KeyFamily.RSA, _RSA_ENCRYPT, _RSA_SIGN,
                      key_bits=2048, data_key_pair=True),
    _K.RSA_3072: _row(_K.RSA_3072, KeyFamily.RSA, _RSA_ENCRYPT, _RSA_SIGN,
                      key_bits=3072, data_key_pair=True),
    _K.RSA_4096: _row(_K.RSA_4096, KeyFamily.RSA, _RSA_ENCRYPT, _RSA_SIGN,
                      key_bits=4096, data_key_pair=True),
    # Each NIST curve is paired with one digest; secp256k1 cannot do key agreement.
    _K.ECC_NIST_P256: _ecdsa(_K.ECC_NIST_P256, _S.ECDSA_SHA_256, 256, ecdh=True),
    _K.ECC_NIST_P384: _ecdsa(_K.ECC_NIST_P384, _S.ECDSA_SHA_384, 384, ecdh=True),
    _K.ECC_NIST_P521: _ecdsa(_K.ECC_NIST_P521, _S.ECDSA_SHA_512, 521, ecdh=True),
    _K.ECC_SECG_P256K1: _ecdsa(_K.ECC_SECG_P256K1, _S.ECDSA_SHA_256, 256, ecdh=False),
    # Ed25519 keys sign only: no key agreement, although it is a "NIST" curve name.
    _K.ECC_NIST_EDWARDS25519: _row(
        _K.ECC_NIST_EDWARDS25519, KeyFamily.EDWARDS,
        KeyAlgorithms(_U.SIGN_VERIFY, signing_algorithms=(_S.ED25519_SHA_512,
                                                          _S.ED25519_PH_SHA_512)),
        key_bits=255, data_key_pair=True,
    ),
    _K.HMAC_224: _hmac(_K.HMAC_224, MacAlgorithm.HMAC_SHA_224, 224),
    _K.HMAC_256: _hmac(_K.HMAC_256, MacAlgorithm.HMAC_SHA_256, 256),
    _K.HMAC_384: _hmac(_K.HMAC_384, MacAlgorithm.HMAC_SHA_384, 384),
    _K.HMAC_512: _hmac(_K.HMAC_512, MacAlgorithm.HMAC_SHA_512, 512),
    _K.ML_DSA_44: _mldsa(_K.ML_DSA_44),
    _K.ML_DSA_65: _mldsa(_K.ML_DSA_65),
    _K.ML_DSA_87: _mldsa(_K.ML_DSA_87),
    _K.ML_KEM_512: _mlkem(_K.ML_KEM_512),
    _K.ML_KEM_768: _mlkem(_K.ML_KEM_768),
    _K.ML_KEM_1024: _mlkem(_K.ML_KEM_1024),
    # China Regions only in AWS; kmscore lists it so DescribeKey-shaped answers and
    # error messages can name it, but never makes or uses SM2 keys.
    _K.SM2: _row(
        _K.SM2, KeyFamily.SM2,
        KeyAlgorithms(_U.ENCRYPT_DECRYPT, encryption_algorithms=(_E.SM2PKE,)),
        KeyAlgorithms(_U.SIGN_VERIFY, signing_algorithms=(_S.SM2DSA,)),
        _ECDH,
        key_bits=256, data_key_pair=True, supported=False,
    ),
})  # fmt: skip

DATA_KEY_PAIR_SPECS: Final[tuple[KeySpec, ...]] = tuple(
    spec for spec, info in KEY_SPECS.items() if info.data_key_pair
)
"""The ``DataKeyPairSpec`` values of ``GenerateDataKeyPair`` (SM2 among them, unsupported)."""


_ALGORITHM_NAMES: Final[frozenset[str]] = frozenset(
    member.value
    for enum_type in (
        EncryptionAlgorithm,
        SigningAlgorithm,
        MacAlgorithm,
        KeyAgreementAlgorithm,
        EncapsulationAlgorithm,
    )
    for member in enum_type
)

# --- lookups -----------------------------------------------------------------

_EnumT = TypeVar("_EnumT", bound=enum.StrEnum)


def parse_enum(enum_type: type[_EnumT], value: str, member: str) -> _EnumT:
    """Turn a wire string into a member of one of this module's enums.

    Args:
        enum_type: The enum, for example :class:`SigningAlgorithm`.
        value: The string from the request.
        member: The request member's name for the message, e.g. ``"signingAlgorithm"``.

    Returns:
        The enum member.

    Raises:
        ValidationException: ``value`` is not one of the enum's names.
    """
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_type)
        raise ValidationException(
            f"1 validation error detected: Value {value!r} at {member!r} failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{allowed}]"
        ) from None


def spec_info(key_spec: str) -> KeySpecInfo:
    """The table row of a key spec.

    Args:
        key_spec: A ``KeySpec`` name.

    Returns:
        Its :class:`KeySpecInfo` (also for SM2, whose ``supported`` is False).

    Raises:
        ValidationException: ``key_spec`` is not a ``KeySpec`` name.
    """
    return KEY_SPECS[parse_enum(KeySpec, key_spec, "keySpec")]


def require_supported(key_spec: str) -> KeySpecInfo:
    """The table row of a key spec that kmscore can serve.

    Raises:
        ValidationException: ``key_spec`` is not a ``KeySpec`` name.
        UnsupportedOperationException: The key spec exists in AWS but not here (SM2).
    """
    info = spec_info(key_spec)
    if not info.supported:
        raise UnsupportedOperationException(
            f"KeySpec {info.key_spec} is available only in AWS China Regions and is not "
            "supported by kmscore."
        )
    return info


def algorithms_for(key_spec: str, key_usage: str) -> KeyAlgorithms:
    """The algorithms ``DescribeKey`` lists for a key of this spec and usage.

    Args:
        key_spec: A ``KeySpec`` name.
        key_usage: A ``KeyUsage`` name.

    Returns:
        The :class:`KeyAlgorithms` for the pair.

    Raises:
        ValidationException: Either name is unknown, or AWS does not allow this key
            usage with this key spec (``CreateKey`` rejects the pair).
    """
    info = spec_info(key_spec)
    usage = parse_enum(KeyUsage, key_usage, "keyUsage")
    found = info.algorithms.get(usage)
    if found is None:
        allowed = ", ".join(info.key_usages)
        raise ValidationException(
            f"KeyUsage {usage} is not compatible with KeySpec {info.key_spec}; "
            f"valid key usages: {allowed}."
        )
    return found


def check_algorithm(key_spec: str, key_usage: str, algorithm: str) -> KeyAlgorithms:
    """Check that a request's algorithm fits the key's spec and usage.

    The service calls this after it has checked that the key usage fits the
    operation; the asymmetric functions check the key spec again on their own.

    Args:
        key_spec: The key's ``KeySpec``.
        key_usage: The key's ``KeyUsage``.
        algorithm: The algorithm named in the request (any algorithm enum).

    Returns:
        The key's :class:`KeyAlgorithms`.

    Raises:
        ValidationException: A name is unknown (the service should parse the
            algorithm with :func:`parse_enum` first, to name the request member), or
            the key's spec and usage do not go together (a corrupt key record).
        InvalidKeyUsageException: The algorithm is not one this key allows, as AWS
            answers when an algorithm does not fit the key spec.
    """
    algorithms = algorithms_for(key_spec, key_usage)
    if algorithm not in _ALGORITHM_NAMES:
        raise ValidationException(f"{algorithm!r} is not the name of an AWS KMS algorithm.")
    if not algorithms.allows(algorithm):
        allowed = ", ".join(algorithms.all)
        raise InvalidKeyUsageException(
            f"Algorithm {algorithm} is not compatible with KeySpec {key_spec} and "
            f"KeyUsage {key_usage}; this key supports: {allowed}."
        )
    return algorithms
