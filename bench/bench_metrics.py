"""What the Prometheus counters cost a request on the HTTP endpoint's hot path.

The endpoint's handler (``KMSHandler``, as the HTTP connection calls it) answers
signed GenerateDataKey requests in a loop, in one process, audit off, in
rounds of three handlers in turn: one with the real counters
(``RequestMetrics.observe``: one dict lookup, a bucket search, two list
updates) and two whose ``observe`` does nothing. The two that do nothing are
the control: how far apart two identical handlers land is the noise floor of
the comparison. ``observe`` alone and the two ``perf_counter`` reads around
each request are also timed in a loop. Best of the rounds of each; the ratio
is against the whole request in the same run.

Run: ``python bench/bench_metrics.py [--requests 20000] [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from kmscore.frontends.awsjson.app import KMSHandler
from kmscore.frontends.awsjson.protocol import HttpRequest
from kmscore.frontends.ops.metrics import RequestMetrics
from kmscore.service import open_service
from tests.test_awsjson_support import admin_credentials


class NoMetrics(RequestMetrics):
    def observe(self, operation: str, outcome: str, seconds: float) -> None:
        return None


def signed(key_id: str, secret: str, kms_key: str, count: int) -> list[HttpRequest]:
    out = []
    for i in range(count):
        body = json.dumps(
            {"KeyId": kms_key, "KeySpec": "AES_256", "EncryptionContext": {"n": str(i)}}
        ).encode()
        request = AWSRequest(
            method="POST",
            url="http://127.0.0.1:4599/",
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "TrentService.GenerateDataKey",
            },
        )
        SigV4Auth(Credentials(key_id, secret), "kms", "us-east-1").add_auth(request)
        headers = CIMultiDict([("Host", "127.0.0.1:4599"), *request.headers.items()])
        out.append(HttpRequest("POST", "/", headers, body, "127.0.0.1"))
    return out


def per_request_ns(handler: KMSHandler, requests: list[HttpRequest]) -> float:
    start = time.perf_counter_ns()
    for request in requests:
        answer = handler(request)
        assert answer.status == 200  # type: ignore[union-attr]
    return (time.perf_counter_ns() - start) / len(requests)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, "data")
        service = open_service(data_dir, audit=False)
        from pathlib import Path

        key_id, secret = admin_credentials(Path(data_dir))
        from kmscore.client import LocalKMS

        with LocalKMS(data_dir, audit=False) as local:
            kms_key_id = local.create_key()["KeyMetadata"]["KeyId"]
        requests = signed(key_id, secret, kms_key_id, args.requests)
        handlers = {
            "on": KMSHandler(service, metrics=RequestMetrics("bench")),
            "off": KMSHandler(service, metrics=NoMetrics("bench")),
            "off (control)": KMSHandler(service, metrics=NoMetrics("bench")),
        }
        for handler in handlers.values():
            per_request_ns(handler, requests[:2000])
        times: dict[str, list[float]] = {name: [] for name in handlers}
        order = list(handlers)
        for _ in range(args.rounds):
            for name in order:
                times[name].append(per_request_ns(handlers[name], requests))
            order = order[1:] + order[:1]
        counter = RequestMetrics("alone")
        observe_start = time.perf_counter_ns()
        for _ in range(1_000_000):
            counter.observe("GenerateDataKey", "Success", 0.00003)
        alone_ns = (time.perf_counter_ns() - observe_start) / 1_000_000
        clock_start = time.perf_counter_ns()
        for _ in range(1_000_000):
            time.perf_counter()
        clock_ns = (time.perf_counter_ns() - clock_start) / 1_000_000
        for handler in handlers.values():
            handler.close()
        service.close()
    best = {name: min(values) for name, values in times.items()}
    for name, value in best.items():
        print(f"a request through the handler, counters {name:14}: {value:8.0f} ns")
    floor = abs(best["off"] - best["off (control)"])
    print(
        f"on - off: {best['on'] - best['off']:6.0f} ns; noise floor (off - control): {floor:.0f} ns"
    )
    total = alone_ns + 2 * clock_ns
    print(f"observe() alone, in a loop: {alone_ns:6.0f} ns")
    print(f"two perf_counter() reads  : {2 * clock_ns:6.0f} ns")
    print(f"metrics per request       : {total:6.0f} ns = {100 * total / best['on']:.1f}% of one")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
