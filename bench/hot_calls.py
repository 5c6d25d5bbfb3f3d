"""A fixed number of GenerateDataKey and Decrypt calls through LocalKMS, for
instruction counts (``valgrind --tool=callgrind``), which the shared machine's
noise does not move.

Compares one checkout with another: run it under callgrind in each and divide
the totals (after subtracting a run with ``0`` calls, the start-up cost).

Run: ``valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/hot_calls.py 2000``
"""

from __future__ import annotations

import os
import sys
import tempfile

from kmscore import LocalKMS


def main() -> int:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        kms = LocalKMS(os.path.join(tmp, "data"), audit=False)
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        ctx = {"purpose": "bench", "tenant": "t-0042"}
        blob = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx)[
            "CiphertextBlob"
        ]
        for _ in range(calls):
            kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx)
        for _ in range(calls):
            kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
        kms.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
