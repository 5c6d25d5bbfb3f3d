"""ML-KEM against NIST's FIPS 203 ACVP vectors (tests/vectors/acvp/README.md says whence).

What each library kmscore uses is checked on:

- keyGen (75): the key pair kmscore derives from the seed ``d || z`` has NIST's
  encapsulation key; for ML-KEM-512 (kyber-py) NIST's decapsulation key too.
- encapsulation (75, all three parameter sets): kyber-py's deterministic
  ``Encaps_internal(ek, m)`` gives NIST's ciphertext and key.
- decapsulation (30, valid and modified ciphertexts): kyber-py with NIST's
  decapsulation key gives NIST's key, implicit rejection included.
- ``cryptography`` (ML-KEM-768/1024) cannot take an expanded decapsulation key or
  a fixed ``m``, so it is tied to the vectors through the keyGen seeds: for each
  NIST key pair, what ``cryptography`` decapsulates equals what NIST's ``dk``
  decapsulates, for kyber-py's ciphertexts (valid and altered) and for its own.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kyber_py.ml_kem import ML_KEM_512, ML_KEM_768, ML_KEM_1024

from kmscore.crypto.asymmetric import mlkem
from kmscore.errors import InvalidCiphertextException
from kmscore.model.keyspecs import KeySpec

VECTORS = Path(__file__).resolve().parent / "vectors" / "acvp"
SPECS = {
    "ML-KEM-512": (KeySpec.ML_KEM_512, ML_KEM_512),
    "ML-KEM-768": (KeySpec.ML_KEM_768, ML_KEM_768),
    "ML-KEM-1024": (KeySpec.ML_KEM_1024, ML_KEM_1024),
}


@cache
def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"ML-KEM-{name}-FIPS203.json").read_text())
    return data


def _cases(
    name: str, function: str | None = None
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for group in _load(name)["testGroups"]:
        if function is None or group.get("function") == function:
            out += [(group["parameterSet"], group, test) for test in group["tests"]]
    return out


def _ids(cases: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> list[str]:
    return [f"{p}-{t['tcId']}" for p, _, t in cases]


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


def test_the_vector_files_hold_every_group() -> None:
    assert len(_cases("keyGen")) == 75
    assert len(_cases("encapDecap", "encapsulation")) == 75
    assert len(_cases("encapDecap", "decapsulation")) == 30


KEYGEN = _cases("keyGen")


@pytest.mark.parametrize(("param", "group", "test"), KEYGEN, ids=_ids(KEYGEN))
def test_keygen_from_seed(param: str, group: dict[str, Any], test: dict[str, Any]) -> None:
    spec, kyber = SPECS[param]
    seed = _h(test["d"]) + _h(test["z"])
    key = mlkem.from_seed(spec, seed)
    assert key.public_key().public_bytes_raw() == _h(test["ek"])
    ek, dk = kyber._keygen_internal(_h(test["d"]), _h(test["z"]))
    assert (ek, dk) == (_h(test["ek"]), _h(test["dk"]))
    # The stored form round-trips through kmscore's own loader.
    der = mlkem.pkcs8_seed_der(spec, seed)
    loaded = mlkem.load_private_der(spec, der)
    assert loaded is not None
    assert loaded.public_key().public_bytes_raw() == _h(test["ek"])


ENCAPS = _cases("encapDecap", "encapsulation")


@pytest.mark.parametrize(("param", "group", "test"), ENCAPS, ids=_ids(ENCAPS))
def test_encapsulation(param: str, group: dict[str, Any], test: dict[str, Any]) -> None:
    _, kyber = SPECS[param]
    k, c = kyber._encaps_internal(_h(test["ek"]), _h(test["m"]))
    assert (k, c) == (_h(test["k"]), _h(test["c"]))
    assert kyber.decaps(_h(test["dk"]), c) == _h(test["k"])


DECAPS = _cases("encapDecap", "decapsulation")


@pytest.mark.parametrize(("param", "group", "test"), DECAPS, ids=_ids(DECAPS))
def test_decapsulation(param: str, group: dict[str, Any], test: dict[str, Any]) -> None:
    _, kyber = SPECS[param]
    assert kyber.decaps(_h(group["dk"]), _h(test["c"])) == _h(test["k"])


CROSS = [case for case in KEYGEN if case[0] != "ML-KEM-512"][::5]


@pytest.mark.parametrize(("param", "group", "test"), CROSS, ids=_ids(CROSS))
def test_cryptography_agrees_with_nist_keys(
    param: str, group: dict[str, Any], test: dict[str, Any]
) -> None:
    spec, kyber = SPECS[param]
    key = mlkem.from_seed(spec, _h(test["d"]) + _h(test["z"]))
    nist_dk = _h(test["dk"])
    k, c = kyber._encaps_internal(_h(test["ek"]), bytes(range(32)))
    assert mlkem.decapsulate(spec, key, c) == k
    altered = bytes([c[0] ^ 1]) + c[1:]
    rejected = mlkem.decapsulate(spec, key, altered)
    assert rejected == kyber.decaps(nist_dk, altered) != k
    public = key.public_key()
    assert isinstance(public, mlkem.MLKEMPublicKey)
    secret, ciphertext = mlkem.encapsulate(spec, public)
    assert kyber.decaps(nist_dk, ciphertext) == secret


def test_kmscore_ml_kem_512_is_the_nist_one() -> None:
    _, _, test = next(case for case in KEYGEN if case[0] == "ML-KEM-512")
    key = mlkem.from_seed(KeySpec.ML_KEM_512, _h(test["d"]) + _h(test["z"]))
    secret, ciphertext = key.public_key().encapsulate()
    assert ML_KEM_512.decaps(_h(test["dk"]), ciphertext) == secret
    assert mlkem.decapsulate(KeySpec.ML_KEM_512, key, ciphertext) == secret


# --- the parsers of stored and given ML-KEM keys, fuzzed ----------------------------------


_SPECS = st.sampled_from([KeySpec.ML_KEM_512, KeySpec.ML_KEM_768, KeySpec.ML_KEM_1024])


def _mutations(spec: KeySpec) -> st.SearchStrategy[bytes]:
    """DER of the right form with bytes flipped, cut or added, and plain noise."""
    good = mlkem.pkcs8_seed_der(spec, bytes(range(64)))
    flipped = st.tuples(st.integers(0, len(good) - 1), st.integers(1, 255)).map(
        lambda t: good[: t[0]] + bytes([good[t[0]] ^ t[1]]) + good[t[0] + 1 :]
    )
    return st.one_of(
        st.binary(max_size=200), flipped, st.integers(0, len(good) - 1).map(lambda n: good[:n])
    )


@settings(max_examples=150, deadline=None)
@given(data=st.data(), spec=_SPECS)
def test_private_key_parser_takes_only_its_own_form(data: st.DataObject, spec: KeySpec) -> None:
    material = data.draw(_mutations(spec))
    key = mlkem.load_private_der(spec, material)
    good = mlkem.pkcs8_seed_der(spec, bytes(range(64)))
    if material[:-64] != good[:-64] or len(material) != len(good):
        assert key is None
    elif key is not None:
        assert len(key.public_key().public_bytes_raw()) in (800, 1184, 1568)


@settings(max_examples=150, deadline=None)
@given(spec=_SPECS, blob=st.binary(max_size=2000))
def test_public_key_parser_refuses_noise(spec: KeySpec, blob: bytes) -> None:
    assert mlkem.load_public_der(spec, blob) is None


@settings(max_examples=60, deadline=None)
@given(spec=_SPECS, size=st.integers(0, 1600))
def test_decapsulate_takes_any_blob(spec: KeySpec, size: int) -> None:
    key = mlkem.from_seed(spec, bytes(64))
    blob = bytes((i * 7) & 0xFF for i in range(size))
    if size == mlkem.CIPHERTEXT_LENGTHS[spec]:
        assert len(mlkem.decapsulate(spec, key, blob)) == 32
    else:
        with pytest.raises(InvalidCiphertextException):
            mlkem.decapsulate(spec, key, blob)
