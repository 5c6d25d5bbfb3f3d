"""``python -m kmscore [--data-dir DIR]``: open the KMS on its embedded store and prove it works.

Prints the version, the AES-GCM engine backend and its OpenSSL, and checks the
engine with a seal/open round trip and a tampered ciphertext. Then it opens the
data dir (``--data-dir``, else ``$KMS_DATA_DIR``, else
``~/.local/share/kmscore``), initializing it when new (root key, SQLite store,
an admin user for you with a credentials file, the audit trail), and runs a
GenerateDataKey/Decrypt round trip under the key ``alias/kmscore/self-check``
(created on first run), through the same operations every frontend uses.
This becomes ``kms serve`` when the daemon lands.
"""

from __future__ import annotations

import argparse
import os
import sys

from kmscore import __version__, engine
from kmscore.errors import InvalidCiphertextException, KMSError, NotFoundException

SELF_CHECK_ALIAS = "alias/kmscore/self-check"


def _verdict(ok: bool) -> str:
    return "ok" if ok else "FAILED"


def check_engine() -> bool:
    """Seal and open under a fresh key, and refuse a tampered ciphertext."""
    key = engine.AesGcmKey(os.urandom(engine.KEY_LENGTH))
    iv = os.urandom(engine.IV_LENGTH)
    plaintext = b"kmscore engine self-check"
    aad = b"python -m kmscore"
    sealed = key.seal(iv, plaintext, aad)
    round_trip = engine.constant_time_equals(key.open(iv, sealed, aad), plaintext)
    tampered = bytes([sealed[0] ^ 1]) + sealed[1:]
    try:
        key.open(iv, tampered, aad)
        tamper_refused = False
    except InvalidCiphertextException:
        tamper_refused = True
    print(f"engine backend: {engine.BACKEND} (OpenSSL: {engine.openssl_version()})")
    print(f"engine seal/open round trip: {_verdict(round_trip)}")
    print(f"engine refuses a tampered ciphertext: {_verdict(tamper_refused)}")
    return round_trip and tamper_refused


def check_service(data_dir: str | None) -> bool:
    """Open the data dir and run a data-key round trip through the operations."""
    from kmscore import LocalKMS

    with LocalKMS(data_dir, audit=True) as kms:
        svc = kms.service
        print(f"data dir: {svc.data_dir} (region {svc.region}, account {svc.account})")
        print(f"acting as: {kms.caller.arn}")
        try:
            key = kms.describe_key(KeyId=SELF_CHECK_ALIAS)["KeyMetadata"]
        except NotFoundException:
            key = kms.create_key(Description="kmscore self-check")["KeyMetadata"]
            kms.create_alias(AliasName=SELF_CHECK_ALIAS, TargetKeyId=key["KeyId"])
        context = {"purpose": "self-check"}
        data_key = kms.generate_data_key(
            KeyId=SELF_CHECK_ALIAS, KeySpec="AES_256", EncryptionContext=context
        )
        opened = kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext=context)
        ok = engine.constant_time_equals(opened["Plaintext"], data_key["Plaintext"])
        print(f"key: {key['Arn']} ({key['KeyState']})")
        print(f"GenerateDataKey/Decrypt round trip: {_verdict(ok)}")
        keys = kms.list_keys(Limit=1000)["Keys"]
        print(f"keys in this data dir: {len(keys)}")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Check the engine, then the service on its data dir.

    Returns:
        The exit status: 0 when every check passed, 1 otherwise.
    """
    parser = argparse.ArgumentParser(prog="python -m kmscore", description=__doc__)
    parser.add_argument("--data-dir", default=None, help="data directory")
    parser.add_argument("--engine-only", action="store_true", help="skip the data dir")
    args = parser.parse_args(argv)
    print(f"kmscore {__version__}")
    ok = check_engine()
    if not args.engine_only:
        try:
            ok = check_service(args.data_dir) and ok
        except KMSError as exc:
            print(f"service check FAILED: {exc.code}: {exc.message}")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
