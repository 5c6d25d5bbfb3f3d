"""Multi-Region keys: Decrypt in a replica against the primary, and replication of many keys.

Issue 15's targets: Decrypt in a replica Region costs the same as in the primary
(measured in the same run), and the replication of 1,000 keys between two local
deployments is measured.

1. One deployment with two Regions, and a second deployment peered with it (its
   own data dir, root key and HTTP port, in this process). One multi-Region key,
   replicated to the other Region and to the peer. The same ciphertexts are
   decrypted through the in-process client in the primary, in the local replica
   and in the peer's replica, interleaved in short rounds; medians of rounds,
   and the ratios replica / primary of each round.
2. Two deployments, each serving HTTP on its own port: ``--keys`` multi-Region
   keys are made in the first (not timed), then each is replicated to the
   second with ReplicateKey (sealed material, signed messages, both audit
   trails), one after the other; then one ``kms region sync`` pass over all of
   them (nothing to apply). Wall time and keys per second.

Run: ``python bench/bench_regions.py [--rounds N] [--keys N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kmscore import LocalKMS
from kmscore.bench.timing import per_op_ns
from kmscore.frontends.awsjson import start_http_server
from kmscore.model.caller import Caller
from kmscore.operations import dispatch
from kmscore.service import KeyService, open_service
from kmscore.service.peering import peering_of
from kmscore.service.regions import open_deployment
from kmscore.service.replication import converge_all

ACCOUNT = "111122223333"
ROOT = Caller(arn=f"arn:aws:iam::{ACCOUNT}:root", account=ACCOUNT, principal_id=ACCOUNT)


@contextlib.contextmanager
def serving(service: KeyService) -> Iterator[str]:
    """Serve ``service`` over HTTP on a free port, from a thread; yields its URL."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait()
    server = asyncio.run_coroutine_threadsafe(
        start_http_server(service, "127.0.0.1", 0), loop
    ).result(10)
    try:
        yield server.url
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def peer(a: KeyService, a_url: str, b: KeyService, b_url: str) -> None:
    pa, pb = peering_of(open_deployment(a)), peering_of(open_deployment(b))
    pa.add_peer("b", b_url, pb.identity.public.fingerprint)
    pb.add_peer("a", a_url, pa.identity.public.fingerprint)


def decrypt_costs(tmp: Path, rounds: int, calls: int) -> dict[str, Any]:
    east = LocalKMS(tmp / "east", region="us-east-1", audit=False, principal=ROOT.arn)
    west_local = east.in_region("us-west-2")
    far = LocalKMS(tmp / "far", region="ap-south-1", audit=False, principal=ROOT.arn)
    with serving(east.service) as east_url, serving(far.service) as far_url:
        peer(east.service, east_url, far.service, far_url)
        key_id = east.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        east.replicate_key(KeyId=key_id, ReplicaRegion="us-west-2")
        east.replicate_key(KeyId=key_id, ReplicaRegion="ap-south-1")
        blob = east.encrypt(KeyId=key_id, Plaintext=b"k" * 32, EncryptionContext={"a": "b"})[
            "CiphertextBlob"
        ]
        clients = {"primary": east, "replica (same deployment)": west_local, "replica (peer)": far}
        for client in clients.values():  # warm: keys and decisions cached
            client.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})
        samples: dict[str, list[float]] = {name: [] for name in clients}
        names = list(clients)
        for i in range(rounds):
            # Each contender goes first in turn: no place in the round is favoured.
            for name in names[i % len(names) :] + names[: i % len(names)]:
                client = clients[name]
                samples[name].append(
                    per_op_ns(
                        lambda c=client: c.decrypt(
                            CiphertextBlob=blob, EncryptionContext={"a": "b"}
                        ),
                        calls,
                    )
                )
    far.close()
    east.close()
    primary = samples["primary"]
    return {
        name: {
            "median_us": statistics.median(s) / 1000,
            "min_us": min(s) / 1000,
            "ratio_to_primary_median": statistics.median(
                x / p for x, p in zip(s, primary, strict=True)
            ),
        }
        for name, s in samples.items()
    }


def replication(tmp: Path, keys: int) -> dict[str, float]:
    a = open_service(tmp / "a", region="us-east-1", audit=True)
    b = open_service(tmp / "b", region="us-west-2", audit=True)
    try:
        with serving(a) as a_url, serving(b) as b_url:
            peer(a, a_url, b, b_url)
            ids = [
                dispatch(a, "CreateKey", {"MultiRegion": True}, ROOT)["KeyMetadata"]["KeyId"]
                for _ in range(keys)
            ]
            start = time.perf_counter()
            for key_id in ids:
                dispatch(a, "ReplicateKey", {"KeyId": key_id, "ReplicaRegion": "us-west-2"}, ROOT)
            replicated = time.perf_counter() - start
            ready = sum(
                1 for key_id in ids if (k := b.store.get_key(key_id)) and k.state.value == "Enabled"
            )
            start = time.perf_counter()
            results = converge_all(open_deployment(a))
            synced = time.perf_counter() - start
    finally:
        for svc in (a, b):
            if svc.deployment is not None:
                svc.deployment.close()
            svc.close()
    return {
        "keys": keys,
        "replicated_enabled_at_peer": ready,
        "replicate_seconds": replicated,
        "replicate_keys_per_second": keys / replicated,
        "replicate_ms_per_key": replicated / keys * 1000,
        "sync_pass_seconds": synced,
        "sync_keys_changed": len(results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        costs = decrypt_costs(Path(tmp), args.rounds, args.calls)
        print(f"Decrypt, {args.rounds} rounds of {args.calls} calls (in-process client):")
        for name, c in costs.items():
            print(
                f"  {name:28} median {c['median_us']:6.2f} us  min {c['min_us']:6.2f} us  "
                f"ratio to primary (median of rounds) {c['ratio_to_primary_median']:.3f}"
            )
    with tempfile.TemporaryDirectory() as tmp:
        r = replication(Path(tmp), args.keys)
        print(
            f"ReplicateKey of {r['keys']} keys to a peer: {r['replicate_seconds']:.2f} s "
            f"({r['replicate_keys_per_second']:.0f} keys/s, {r['replicate_ms_per_key']:.2f} ms "
            f"per key), {r['replicated_enabled_at_peer']} enabled at the peer; one sync pass "
            f"over all: {r['sync_pass_seconds']:.2f} s, {r['sync_keys_changed']} keys changed"
        )


if __name__ == "__main__":
    main()
