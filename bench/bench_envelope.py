"""Envelope encryption throughput (issue 7), as ratios in one run.

Measures, at 64 KiB frames, on the same data and KMS key:

- raw: cryptography's AESGCM.encrypt/decrypt on 64 KiB chunks in a plain loop
  (its output stays in cache), "raw stored": encrypt_into/decrypt_into a
  preallocated buffer of the whole size, so the output goes to RAM as the
  envelope's must, and "raw file": the same loop from a file to a new file
  (readinto, encrypt_into, write), the I/O that ``kms encrypt-file`` does with
  nothing else: no header, no frame layout, no data key, no atomic rename,
  and "raw file + SHA-384", that loop hashing its output as the signed suite
  0x0578 must (its ECDSA signature is over the SHA-384 of the whole message);
- kmscore envelope encrypt/decrypt from and to memory, and from and to files
  (in /dev/shm when it exists), for suites 0x0478 and 0x0578;
- the aws-encryption-sdk package encrypting/decrypting the same bytes, in memory
  and as a stream from a file to a new file (its ``stream`` API, 64 KiB reads),
  so each kmscore contender has an SDK contender doing the same I/O;
- "sha384": SHA-384 over the same bytes in memory, the ceiling of any 0x0578
  encryptor on one core (the hash is sequential, and 0x0578 hashes it all).

KMS is this service over its HTTP endpoint (in-thread), reached by boto3 on
both sides, so each message costs the same one or two KMS calls.

Targets: envelope >= 80% of raw AES-GCM; >= 3x the aws-encryption-sdk. The
file contenders are compared with the raw file loop too: a file's bytes must be
read and written, which the in-cache raw loop never does.

Run: ``python bench/bench_envelope.py [--mib 1024] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_awsjson_support import running_endpoint

from kmscore import envelope as E
from kmscore.bench.timing import elapsed_ns

FRAME = 64 * 1024


def timed(fn: Callable[[], object]) -> float:
    return elapsed_ns(fn) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-esdk", action="store_true")
    args = parser.parse_args()
    size = args.mib * 1024 * 1024
    data = os.urandom(size)
    tmpdir = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    src = tmpdir / "plain.bin"
    src.write_bytes(data)
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[name]
    with running_endpoint(Path(tempfile.mkdtemp()) / "kms", audit=False) as ep:
        os.environ["AWS_ENDPOINT_URL_KMS"] = ep.url
        kms = ep.client()
        arn = kms.create_key()["KeyMetadata"]["Arn"]
        ring = E.KmsKeyring(kms, [arn])
        key = AESGCM(os.urandom(32))
        iv, aad = bytes(12), b"a" * 80
        chunks = [data[i : i + FRAME] for i in range(0, size, FRAME)]
        sealed_chunks = [key.encrypt(iv, c, aad) for c in chunks]

        def raw_enc() -> None:
            for c in chunks:
                key.encrypt(iv, c, aad)

        def raw_dec() -> None:
            for c in sealed_chunks:
                key.decrypt(iv, c, aad)

        stored = memoryview(bytearray(size + len(chunks) * 16))

        def raw_enc_stored() -> None:
            pos = 0
            for c in chunks:
                key.encrypt_into(iv, c, aad, stored[pos : pos + len(c) + 16])
                pos += len(c) + 16

        def raw_dec_stored() -> None:
            pos = 0
            for c in sealed_chunks:
                key.decrypt_into(iv, c, aad, stored[pos : pos + len(c) - 16])
                pos += len(c) - 16

        raw_sealed = tmpdir / "raw-sealed.bin"
        raw_sealed.write_bytes(b"".join(sealed_chunks))

        def raw_file(
            path: Path, piece: int, grow: int, fn: Callable[..., object], hashed: bool = False
        ) -> None:
            inbuf = memoryview(bytearray(piece))
            outbuf = memoryview(bytearray(piece + grow))
            h = hashes.Hash(hashes.SHA384())  # as the envelope hashes
            with open(path, "rb", buffering=0) as f, open(tmpdir / "raw.out", "wb") as o:
                while n := f.readinto(inbuf):
                    fn(iv, inbuf[:n], aad, outbuf[: n + grow])
                    o.write(outbuf[: n + grow])
                    if hashed:
                        h.update(outbuf[: n + grow] if grow > 0 else inbuf[:n])

        def raw_enc_file() -> None:
            raw_file(src, FRAME, 16, key.encrypt_into)

        def raw_dec_file() -> None:
            raw_file(raw_sealed, FRAME + 16, -16, key.decrypt_into)

        def raw_enc_file_sha() -> None:
            raw_file(src, FRAME, 16, key.encrypt_into, hashed=True)

        def raw_dec_file_sha() -> None:
            raw_file(raw_sealed, FRAME + 16, -16, key.decrypt_into, hashed=True)

        cases: dict[str, Callable[[], object]] = {"raw AES-GCM encrypt": raw_enc}
        cases["raw AES-GCM decrypt"] = raw_dec
        cases["raw AES-GCM encrypt stored"] = raw_enc_stored
        cases["raw AES-GCM decrypt stored"] = raw_dec_stored
        cases["raw AES-GCM encrypt file"] = raw_enc_file
        cases["raw AES-GCM decrypt file"] = raw_dec_file
        cases["raw AES-GCM encrypt file+sha384"] = raw_enc_file_sha
        cases["raw AES-GCM decrypt file+sha384"] = raw_dec_file_sha

        def sha384() -> None:
            h = hashes.Hash(hashes.SHA384())
            for c in chunks:
                h.update(c)
            h.finalize()

        cases["sha384 alone"] = sha384
        for suite in (E.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, E.SUITES[0x0578]):
            tag = f"{suite.suite_id:04x}"
            msg = E.encrypt(data, ring, suite=suite, frame_length=FRAME)
            sealed = tmpdir / f"sealed-{tag}.bin"
            sealed.write_bytes(msg)
            cases[f"envelope {tag} encrypt mem"] = lambda s=suite: E.encrypt(
                data, ring, suite=s, frame_length=FRAME
            )
            cases[f"envelope {tag} decrypt mem"] = lambda m=msg: E.decrypt(m, ring)
            cases[f"envelope {tag} encrypt file"] = lambda s=suite: E.encrypt_file(
                src, tmpdir / "out.enc", ring, suite=s, frame_length=FRAME
            )
            cases[f"envelope {tag} decrypt file"] = lambda p=sealed: E.decrypt_file(
                p, tmpdir / "out.bin", ring
            )
        if not args.no_esdk:
            import aws_encryption_sdk
            import botocore.session
            from aws_encryption_sdk.identifiers import Algorithm

            session = botocore.session.Session()
            session.set_credentials(ep.access_key_id, ep.secret)
            client = aws_encryption_sdk.EncryptionSDKClient()
            provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(
                key_ids=[arn], botocore_session=session
            )
            for alg, tag in [
                (Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, "0478"),
                (Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384, "0578"),
            ]:
                msg = E.encrypt(data, ring, suite=E.SUITES[int(tag, 16)], frame_length=FRAME)
                cases[f"esdk {tag} encrypt mem"] = lambda a=alg: client.encrypt(
                    source=data, key_provider=provider, algorithm=a, frame_length=FRAME
                )
                cases[f"esdk {tag} decrypt mem"] = lambda m=msg: client.decrypt(
                    source=m, key_provider=provider
                )
                cases[f"esdk {tag} encrypt file"] = lambda a=alg: esdk_file(
                    src, "e", algorithm=a, frame_length=FRAME
                )
                cases[f"esdk {tag} decrypt file"] = lambda t=tag: esdk_file(
                    tmpdir / f"sealed-{t}.bin", "d"
                )

            def esdk_file(path: Path, mode: str, **kw: object) -> None:
                with (
                    open(path, "rb") as f,
                    open(tmpdir / "esdk.out", "wb") as o,
                    client.stream(mode=mode, source=f, key_provider=provider, **kw) as s,
                ):
                    while piece := s.read(FRAME):
                        o.write(piece)

        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, fn in cases.items():  # interleaved rounds: noise hits all alike
                times[name].append(timed(fn))
    mib = size / (1024 * 1024)
    rate = {name: mib / statistics.median(t) for name, t in times.items()}
    print(f"{args.mib} MiB, {FRAME // 1024} KiB frames, median of {args.rounds} rounds")
    for name, r in rate.items():
        print(f"  {name:32s} {r:8.0f} MiB/s")
    print("ratios:")
    for name, r in rate.items():
        if name.startswith("envelope"):
            op = "encrypt" if "encrypt" in name else "decrypt"
            line = f"  {name:32s} {r / rate[f'raw AES-GCM {op}']:.2f}x raw"
            line += f", {r / rate[f'raw AES-GCM {op} stored']:.2f}x raw stored"
            if name.endswith("file"):
                line += f", {r / rate[f'raw AES-GCM {op} file']:.2f}x raw file"
                if name.split()[1] == "0578":
                    line += f", {r / rate[f'raw AES-GCM {op} file+sha384']:.2f}x raw file+sha384"
            if name.split()[1] == "0578":
                line += f", {r / rate['sha384 alone']:.2f}x sha384"
            where = "file" if name.endswith("file") else "mem"
            esdk = rate.get(f"esdk {name.split()[1]} {op} {where}")
            if esdk:
                line += f", {r / esdk:.1f}x esdk {where}"
            print(line)
    for p in tmpdir.iterdir():
        p.unlink()
    tmpdir.rmdir()


if __name__ == "__main__":
    main()
