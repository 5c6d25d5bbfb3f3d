"""A loop of N GenerateDataKey or Decrypt calls through LocalKMS, for instruction counts.

Wall-clock times on a shared 2-core machine move with its load; instructions do
not. Run it under valgrind's callgrind at two loop lengths and divide the
difference by the difference in calls, so start-up cancels:

    for n in 1000 6000; do
        valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
            python bench/call_loop.py $n gdk 2>&1 | grep Collected
    done

Arguments: ``N {gdk,decrypt} [audit]``.
"""

from __future__ import annotations

import os
import sys
import tempfile

from kmscore import LocalKMS


def main() -> int:
    n, op = int(sys.argv[1]), sys.argv[2]
    audit = len(sys.argv) > 3 and sys.argv[3] == "audit"
    with tempfile.TemporaryDirectory() as tmp:
        kms = LocalKMS(os.path.join(tmp, "data"), audit=audit)
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        # Under valgrind a loop runs for minutes: keep periodic maintenance,
        # which comes due by the clock, out of the counted calls.
        kms.service.maintenance_deadline = float("inf")
        ctx = {"purpose": "bench", "tenant": "t-0042"}
        generate, decrypt = kms.generate_data_key, kms.decrypt
        blob = generate(KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx)["CiphertextBlob"]
        for _ in range(500):  # warm every cache before the counted loop
            generate(KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx)
            decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
        if op == "gdk":
            for _ in range(n):
                generate(KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx)
        else:
            for _ in range(n):
                decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
        kms.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
