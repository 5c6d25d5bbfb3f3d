"""Per-operation cost of keys in custom key stores, against the native engine, in one run.

Three keys of one key service (in process, ``dispatch``, audit off, so the
difference is the key store):

- native: material unwrapped once into the engine (AES-256-GCM over OpenSSL);
- hsm: an AWS_CLOUDHSM store over PKCS#11, SoftHSM2 doing CKM_AES_GCM;
- xks: an EXTERNAL_KEY_STORE whose proxy is a second kmscore data dir served
  by the XKS proxy (``kms serve --xks``) on loopback over TLS 1.3: double
  encryption, one signed HTTPS request per operation (a new TLS connection
  each, as kmscore's client makes them).

Encrypt (32 bytes), Decrypt and GenerateDataKey (AES_256) are timed in
interleaved rounds; the table gives the median per operation and the ratio
to the native key's median of the same rounds.

Needs SoftHSM2 (``apt-get install softhsm2``) and python-pkcs11.
Run: ``python bench/bench_keystores.py [--rounds N] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kmscore import engine
from kmscore.bench.timing import per_op_ns
from kmscore.frontends.xks.server import start_xks_server, tls_context
from kmscore.model.caller import Caller
from kmscore.operations import dispatch
from kmscore.service import KeyService, open_service
from kmscore.service.hsm_clusters import register_cluster
from kmscore.service.xks_proxy import create_proxy_credential

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "bench-pin-1"
ACCOUNT = "111122223333"
ROOT = Caller(arn=f"arn:aws:iam::{ACCOUNT}:root", account=ACCOUNT, principal_id=ACCOUNT)


def _softhsm(tmp: Path) -> str:
    (tmp / "tokens").mkdir()
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "bench",
         "--so-pin", "12345678", "--pin", PIN],
        check=True, capture_output=True,
    )  # fmt: skip
    return "bench"


def _certificate(tmp: Path) -> tuple[str, str]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(tmp / "c.pem"), str(tmp / "k.pem")


def _proxy(tmp: Path, loop: asyncio.AbstractEventLoop) -> tuple[KeyService, Any, str, str, str]:
    proxy = open_service(tmp / "proxy", region="us-east-1", account=ACCOUNT, audit=False)
    access_key_id, secret = create_proxy_credential(proxy, "xks")
    cert, key = _certificate(tmp)
    server = asyncio.run_coroutine_threadsafe(
        start_xks_server(proxy, "127.0.0.1", 0, ssl_context=tls_context(cert, key)), loop
    ).result(10)
    external = dispatch(proxy, "CreateKey", {}, ROOT)["KeyMetadata"]["KeyId"]
    return proxy, server, access_key_id, secret, external + "|" + cert


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="5 rounds, fewer calls")
    args = ap.parse_args()
    rounds = 5 if args.quick else args.rounds
    calls = {"native": 2000, "hsm": 500, "xks": 40}
    if args.quick:
        calls = {"native": 500, "hsm": 100, "xks": 10}
    print(f"engine backend: {engine.BACKEND}; OpenSSL {engine.openssl_version()}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        label = _softhsm(tmp)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        proxy, server, access_key_id, secret, packed = _proxy(tmp, loop)
        external, cert = packed.split("|")
        svc = open_service(tmp / "kms", region="us-east-1", account=ACCOUNT, audit=False)
        svc.custom_key_stores.xks_addresses["localhost"] = ("127.0.0.1", server.port)
        svc.custom_key_stores.xks_ca_file = cert
        cluster = register_cluster(svc.store, MODULE, label)
        hsm_store = dispatch(svc, "CreateCustomKeyStore", {
            "CustomKeyStoreName": "hsm", "CloudHsmClusterId": cluster.cluster_id,
            "TrustAnchorCertificate": "certificate", "KeyStorePassword": PIN}, ROOT,
        )["CustomKeyStoreId"]  # fmt: skip
        xks_store = dispatch(svc, "CreateCustomKeyStore", {
            "CustomKeyStoreName": "xks", "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
            "XksProxyUriEndpoint": "https://localhost", "XksProxyUriPath": "/kms/xks/v1",
            "XksProxyConnectivity": "PUBLIC_ENDPOINT",
            "XksProxyAuthenticationCredential": {"AccessKeyId": access_key_id,
                                                 "RawSecretAccessKey": secret}}, ROOT,
        )["CustomKeyStoreId"]  # fmt: skip
        for store_id in (hsm_store, xks_store):
            dispatch(svc, "ConnectCustomKeyStore", {"CustomKeyStoreId": store_id}, ROOT)
        keys = {
            "native": dispatch(svc, "CreateKey", {}, ROOT)["KeyMetadata"]["KeyId"],
            "hsm": dispatch(svc, "CreateKey", {"Origin": "AWS_CLOUDHSM",
                                               "CustomKeyStoreId": hsm_store}, ROOT),
            "xks": dispatch(svc, "CreateKey", {"Origin": "EXTERNAL_KEY_STORE",
                                               "CustomKeyStoreId": xks_store,
                                               "XksKeyId": external}, ROOT),
        }  # fmt: skip
        keys = {k: v if isinstance(v, str) else v["KeyMetadata"]["KeyId"] for k, v in keys.items()}
        blobs = {
            kind: dispatch(svc, "Encrypt", {"KeyId": key, "Plaintext": bytes(32)}, ROOT)[
                "CiphertextBlob"
            ]
            for kind, key in keys.items()
        }

        def op(name: str, kind: str) -> Callable[[], object]:
            key = keys[kind]
            if name == "Encrypt":
                return lambda: dispatch(
                    svc, "Encrypt", {"KeyId": key, "Plaintext": bytes(32)}, ROOT
                )
            if name == "Decrypt":
                return lambda: dispatch(svc, "Decrypt", {"CiphertextBlob": blobs[kind]}, ROOT)
            return lambda: dispatch(
                svc, "GenerateDataKey", {"KeyId": key, "KeySpec": "AES_256"}, ROOT
            )

        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):
            for name in ("Encrypt", "Decrypt", "GenerateDataKey"):
                for kind in ("native", "hsm", "xks"):
                    fn = op(name, kind)
                    results.setdefault((name, kind), []).append(per_op_ns(fn, calls[kind]))
        print(f"{rounds} rounds; median per operation, and ratio to the native key")
        print(f"{'operation':<17}{'native':>12}{'hsm (SoftHSM2)':>22}{'xks (proxy, TLS)':>24}")
        for name in ("Encrypt", "Decrypt", "GenerateDataKey"):
            native = statistics.median(results[(name, "native")])
            row = f"{name:<17}{native / 1000:>9.1f} us"
            for kind in ("hsm", "xks"):
                median = statistics.median(results[(name, kind)])
                row += f"{median / 1000:>12.1f} us ({median / native:>5.0f}x)"
            print(row)
        svc.close()
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        proxy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
