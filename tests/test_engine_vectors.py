"""Known-answer tests: every Wycheproof AES-GCM and NIST CAVP AES-256-GCM vector.

Each vector is its own test, run on both backends. Valid vectors must seal to
``ct || tag`` exactly and open to ``msg``; invalid ones must raise
InvalidCiphertextException. Vectors with parameters the engine does not serve
(keys other than 256 bits, IVs other than 96 bits, tags other than 128 bits)
must be refused with a clear error, never accepted.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import vectors
from vectors import AeadVector

from kmscore.errors import InvalidCiphertextException

WYCHEPROOF = vectors.wycheproof_aead()
NIST_ENCRYPT, NIST_DECRYPT = vectors.nist_gcm()


def _ids(cases: list[AeadVector]) -> list[str]:
    return [c.test_id for c in cases]


def check_vector(engine: ModuleType, v: AeadVector) -> None:
    """Apply one vector to one backend, both directions where it has an answer."""
    if len(v.key) != engine.KEY_LENGTH:
        with pytest.raises(ValueError, match="32 bytes"):
            engine.AesGcmKey(v.key)
        return

    key = engine.AesGcmKey(v.key)
    if len(v.iv) != engine.IV_LENGTH:
        # Sealing with a foreign IV size is a caller bug; opening is an opaque failure.
        if v.msg is not None:
            with pytest.raises(ValueError, match="12 bytes"):
                key.seal(v.iv, v.msg, v.aad)
        with pytest.raises(InvalidCiphertextException):
            key.open(v.iv, v.ct + v.tag, v.aad)
        assert key.open_many([v.iv + v.ct + v.tag], [v.aad]) == [None]
        return

    if v.valid and len(v.tag) == engine.TAG_LENGTH:
        assert v.msg is not None
        assert key.seal(v.iv, v.msg, v.aad) == v.ct + v.tag
        assert key.open(v.iv, v.ct + v.tag, v.aad) == v.msg
        # The batch path must agree with the single path on the same input.
        assert key.open_many([v.iv + v.ct + v.tag], [v.aad]) == [v.msg]
        return

    # Invalid vectors, and valid ones whose tag is not 128 bits (the engine
    # reads exactly 16 tag bytes, so a shorter or longer tag cannot verify).
    with pytest.raises(InvalidCiphertextException):
        key.open(v.iv, v.ct + v.tag, v.aad)
    assert key.open_many([v.iv + v.ct + v.tag], [v.aad]) == [None]
    if v.msg is not None:
        # What the engine makes from the same input is not what the vector presents.
        assert key.seal(v.iv, v.msg, v.aad) != v.ct + v.tag


@pytest.mark.parametrize("v", WYCHEPROOF, ids=_ids(WYCHEPROOF))
def test_wycheproof_aes_gcm(engine: ModuleType, v: AeadVector) -> None:
    check_vector(engine, v)


@pytest.mark.parametrize("v", NIST_ENCRYPT, ids=_ids(NIST_ENCRYPT))
def test_nist_encrypt(engine: ModuleType, v: AeadVector) -> None:
    assert v.sizes_supported and v.valid
    check_vector(engine, v)


@pytest.mark.parametrize("v", NIST_DECRYPT, ids=_ids(NIST_DECRYPT))
def test_nist_decrypt(engine: ModuleType, v: AeadVector) -> None:
    assert v.sizes_supported
    check_vector(engine, v)


# --- the loader itself: a loader that dropped vectors would make the above vacuous


def test_every_wycheproof_vector_is_loaded() -> None:
    assert len(WYCHEPROOF) == vectors.wycheproof_declared_count()
    assert len({v.test_id for v in WYCHEPROOF}) == len(WYCHEPROOF)


def test_vectors_cover_the_served_parameters_both_ways() -> None:
    served = [v for v in WYCHEPROOF if v.sizes_supported]
    assert any(v.valid for v in served)
    assert any(not v.valid for v in served)
    assert any(not v.sizes_supported for v in WYCHEPROOF)
    assert NIST_ENCRYPT
    assert any(v.valid for v in NIST_DECRYPT)
    assert any(not v.valid for v in NIST_DECRYPT)
    assert all(v.msg is None for v in NIST_DECRYPT if not v.valid)


def test_missing_vectors_fail_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(vectors.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(vectors.VectorsNotFoundError, match=vectors.ENV_VAR):
        vectors.wycheproof_aead()
    monkeypatch.setenv(vectors.ENV_VAR, str(tmp_path))
    with pytest.raises(vectors.VectorsNotFoundError, match=r"aes_gcm_test\.json"):
        vectors.wycheproof_aead()
