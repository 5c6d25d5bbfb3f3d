"""Loading the AEAD test vectors that live outside the repository.

The vectors are data kept in ``shared/vectors/`` beside the repository (CI lays a
copy of ``shared/`` next to its fresh clone), never copied into the package. The
directory is found from this file's path, ``<repo>/../shared/vectors``, unless the
environment variable ``KMSCORE_VECTORS`` names another one.

A missing directory or file is an error, never a reason to skip: a test run
without its vectors would pass while testing nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_VAR = "KMSCORE_VECTORS"
REPO_ROOT = Path(__file__).absolute().parent.parent
DEFAULT_DIR = REPO_ROOT.parent / "shared" / "vectors"

WYCHEPROOF_AES_GCM = "wycheproof/aes_gcm_test.json"
NIST_AES256_GCM = "nist/nist_cavp_aes256_gcm_iv96_tag128_subset.json"


class VectorsNotFoundError(FileNotFoundError):
    """The test vectors are not where the tests look for them."""


@dataclass(frozen=True)
class AeadVector:
    """One AEAD test case, decoded from hex.

    ``msg`` is None for a decryption case that must fail and has no plaintext.
    """

    test_id: str
    key: bytes
    iv: bytes
    aad: bytes
    msg: bytes | None
    ct: bytes
    tag: bytes
    valid: bool
    comment: str = ""
    flags: tuple[str, ...] = ()

    @property
    def sizes_supported(self) -> bool:
        """True for the one parameter set the engine serves: 256/96/128 bits."""
        return len(self.key) == 32 and len(self.iv) == 12 and len(self.tag) == 16


def vectors_dir() -> Path:
    """The directory holding the vectors; raises VectorsNotFoundError if missing."""
    override = os.environ.get(ENV_VAR)
    where = Path(override) if override else DEFAULT_DIR
    if not where.is_dir():
        how = f"{ENV_VAR}={override!r}" if override else f"default ({ENV_VAR} is unset)"
        raise VectorsNotFoundError(
            f"test vectors not found: {where} is not a directory (looked there by {how}). "
            f"Put a copy of shared/ beside the repository so that ../shared/vectors exists, "
            f"or set {ENV_VAR} to the vectors directory."
        )
    return where


def load_json(relative: str) -> Any:
    """Parse one vector file, named relative to :func:`vectors_dir`."""
    path = vectors_dir() / relative
    if not path.is_file():
        raise VectorsNotFoundError(f"test vector file missing: {path}")
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


def wycheproof_aead(relative: str = WYCHEPROOF_AES_GCM) -> list[AeadVector]:
    """Every test of a Wycheproof AEAD file (schema ``aead_test_schema_v1``)."""
    doc = load_json(relative)
    out = []
    for group in doc["testGroups"]:
        sizes = f"k{group['keySize']}-iv{group['ivSize']}-t{group['tagSize']}"
        for t in group["tests"]:
            if t["result"] not in ("valid", "invalid"):
                # "acceptable" results would need a decision per test; none exist today.
                raise ValueError(f"tcId {t['tcId']}: unexpected result {t['result']!r}")
            out.append(
                AeadVector(
                    test_id=f"tc{t['tcId']}-{sizes}-{t['result']}",
                    key=_hex(t["key"]),
                    iv=_hex(t["iv"]),
                    aad=_hex(t["aad"]),
                    msg=_hex(t["msg"]),
                    ct=_hex(t["ct"]),
                    tag=_hex(t["tag"]),
                    valid=t["result"] == "valid",
                    comment=t["comment"],
                    flags=tuple(t["flags"]),
                )
            )
    return out


def wycheproof_declared_count(relative: str = WYCHEPROOF_AES_GCM) -> int:
    """The ``numberOfTests`` a Wycheproof file declares in its header."""
    return int(load_json(relative)["numberOfTests"])


def _nist_case(kind: str, index: int, entry: dict[str, Any]) -> AeadVector:
    fails = bool(entry.get("fail", False))
    if not fails and "PT" not in entry:
        raise ValueError(f"NIST {kind} #{index}: neither PT nor fail")
    return AeadVector(
        test_id=f"{kind}{index:03d}-{'fail' if fails else 'valid'}",
        key=_hex(entry["Key"]),
        iv=_hex(entry["IV"]),
        aad=_hex(entry["AAD"]),
        msg=None if fails else _hex(entry["PT"]),
        ct=_hex(entry["CT"]),
        tag=_hex(entry["Tag"]),
        valid=not fails,
    )


def nist_gcm(relative: str = NIST_AES256_GCM) -> tuple[list[AeadVector], list[AeadVector]]:
    """The NIST CAVP encryption and decryption cases, in file order.

    Decryption entries marked ``"fail": true`` carry no plaintext; they must be
    rejected.
    """
    doc = load_json(relative)
    encrypt = [_nist_case("encrypt", i, e) for i, e in enumerate(doc["encrypt"])]
    decrypt = [_nist_case("decrypt", i, e) for i, e in enumerate(doc["decrypt"])]
    return encrypt, decrypt
