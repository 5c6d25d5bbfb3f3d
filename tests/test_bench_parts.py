"""kms bench's parts: the bill's arithmetic, the parsers (fuzzed), the timing loops."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmscore.bench.bill import SECONDS_PER_MONTH, monthly_bill, request_rate
from kmscore.bench.operations import Operation, parse_mix, parse_operation, schedule
from kmscore.bench.timing import Latency, closed_loop, error_code, open_loop, per_op_ns
from kmscore.errors import NotFoundException

SYM = "SYMMETRIC_DEFAULT"


def test_the_seeds_costing_sample():
    # 5M GenerateDataKey + 50M Decrypt a month: 5,500 x $0.03 = $165 in requests,
    # plus $1 a key-month; the 20,000 free requests take $0.06 off.
    bill = monthly_bill({("GenerateDataKey", SYM): 5e6, ("Decrypt", SYM): 50e6}, keys=1)
    assert bill["request_cost"]["gross"] == 165.0
    assert bill["request_cost"]["free_tier"] == 0.06
    assert bill["request_cost"]["net"] == 164.94
    assert bill["key_cost"] == 1.0
    assert bill["total"] == 165.94
    assert bill["requests"] == {"GenerateDataKey": 5_000_000, "Decrypt": 50_000_000}


def test_cache_and_batch_savings():
    bill = monthly_bill(
        {("GenerateDataKey", SYM): 5e6, ("Decrypt", SYM): 50e6}, keys=1, reuse=100, batch=10
    )
    # Reusing each data key for 100 messages: 550,000 requests, 20,000 of them free.
    assert bill["with_cache"]["request_cost"] == pytest.approx(530_000 / 10_000 * 0.03)
    assert bill["with_cache"]["saving"] == pytest.approx(164.94 - 1.59)
    assert bill["with_batches"]["request_cost"] == pytest.approx(5_480_000 / 10_000 * 0.03)
    # Nothing to save without a cache or batches.
    plain = monthly_bill({("GenerateDataKey", SYM): 5e6}, keys=2)
    assert plain["with_cache"]["saving"] == 0 and plain["with_batches"]["saving"] == 0
    assert plain["key_cost"] == 2.0


def test_asymmetric_and_hmac_rates_and_the_free_tier():
    assert request_rate(None) == request_rate(SYM) == request_rate("HMAC_256") == 0.03
    assert request_rate("RSA_2048") == 0.03
    assert request_rate("ECC_NIST_P256") == request_rate("RSA_4096") == 0.15
    bill = monthly_bill({("Sign", "ECC_NIST_P256"): 100_000}, keys=1)
    # Asymmetric requests get no free tier.
    assert bill["request_cost"] == {"gross": 1.5, "free_tier": 0.0, "net": 1.5}
    small = monthly_bill({("GenerateMac", "HMAC_256"): 15_000}, keys=0)
    assert small["request_cost"]["net"] == 0.0  # all within the 20,000 free
    assert SECONDS_PER_MONTH == 730 * 3600
    with pytest.raises(ValueError):
        monthly_bill({}, keys=1, reuse=0)


def test_operations_parse():
    assert parse_operation("Sign") == Operation("Sign", "ECC_NIST_P256")
    assert parse_operation("Sign:RSA_3072").label == "Sign:RSA_3072"
    assert parse_operation("GenerateMac:HMAC_256").label == "GenerateMac"
    mix = parse_mix("GenerateDataKey=1, Decrypt=10")
    assert [(o.name, o.weight) for o in mix] == [("GenerateDataKey", 1), ("Decrypt", 10)]
    assert sorted(schedule(mix, seed=3)) == [0] + [1] * 10
    for bad in ("Decrypt:RSA_2048", "Encrypt=x", "Decrypt,Decrypt", "", "Verify:ML_DSA_99"):
        with pytest.raises(ValueError):
            parse_mix(bad)
    assert parse_operation("EncryptFile", envelope=True).key_spec is None
    with pytest.raises(ValueError):
        parse_operation("Decrypt", envelope=True)


@given(st.text(max_size=60))
def test_mix_parser_fuzz(text):
    try:
        ops = parse_mix(text)
    except ValueError as exc:
        assert str(exc)
        return
    assert ops and all(o.weight >= 1 for o in ops)
    assert len({o.label for o in ops}) == len(ops)


@given(st.text(alphabet="GenerateDataKeysDcrypt:=,0123456789_SYMETRICDFAUL ", max_size=40))
def test_mix_parser_fuzz_near_misses(text):
    try:
        parse_mix(text)
    except ValueError:
        pass


def test_histogram_percentiles():
    h = Latency()
    h.record(list(range(1_000, 101_000, 1_000)))  # 1..100 us
    s = h.summary_us()
    assert s["p50"] == pytest.approx(50, rel=0.01)
    assert s["p99"] == pytest.approx(99, rel=0.01)
    assert s["max"] == pytest.approx(100, rel=0.01)
    assert h.count == 100
    assert Latency().summary_us()["p99"] == 0.0


def test_closed_loop_counts_errors_by_code():
    state = {"n": 0}

    def flaky() -> None:
        state["n"] += 1
        if state["n"] % 4 == 0:
            raise NotFoundException("no such key")

    part = closed_loop([[(0, flaky)]], 1, requests=100)
    assert part.calls == 75 and part.errors == {"NotFoundException": 25}
    assert error_code(ValueError("x")) == "ValueError"


def test_open_loop_charges_a_stall_to_the_calls_it_held_up():
    # One call stalls for 100 ms at 500 calls/s: the ~50 calls due meanwhile wait for
    # it. Measured from when they were due, they show the wait; measured from when
    # they began (what a closed-loop tool reports), they do not.
    stalled = {"done": False}

    def call() -> None:
        if not stalled["done"]:
            stalled["done"] = True
            time.sleep(0.1)

    part = open_loop([[(0, call)]], 1, rate=500, requests=200)
    corrected, service = Latency(), Latency()
    corrected.record(part.latencies[0])
    service.record(part.service_times[0])
    assert part.calls == 200
    assert corrected.percentile(90) > 20_000_000  # > 20 ms: the backlog is counted
    assert service.percentile(90) < 5_000_000  # the calls themselves were quick


def test_per_op_ns_divides_by_calls_and_items():
    ns = per_op_ns(lambda: time.sleep(0.001), 5, per_call=10)
    assert 90_000 <= ns < 1_000_000


def test_http_client_reads_chunked_answers_and_reconnects_after_close():
    import base64
    import json
    import socket
    import threading

    from kmscore.bench.http import AWSError, HttpKMS

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        # First connection: a chunked answer, then "Connection: close".
        # Second: an error answer with Content-Length.
        for answer in (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            b"",
        ):
            conn, _ = listener.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            seen.append(data)
            if answer:
                body = json.dumps({"CiphertextBlob": base64.b64encode(b"blob").decode()})
                half = len(body) // 2
                chunks = [body[:half].encode(), body[half:].encode()]
                out = answer + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
                conn.sendall(out + b"0\r\n\r\n")
            else:
                body = b'{"__type":"NotFoundException","message":"no such key"}'
                conn.sendall(
                    b"HTTP/1.1 400 Bad\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = HttpKMS(f"http://127.0.0.1:{port}", "us-east-1", "AKIAEXAMPLE", "s" * 40)
    assert client.encrypt(KeyId="k", Plaintext=b"x")["CiphertextBlob"] == b"blob"
    send = client.prepared("Decrypt", {"CiphertextBlob": b"blob"})
    with pytest.raises(AWSError) as caught:
        send()
    assert caught.value.code == "NotFoundException" and caught.value.status == 400
    thread.join(5)
    listener.close()
    assert seen[0].startswith(b"POST / HTTP/1.1\r\n") and b"TrentService.Encrypt" in seen[0]
    assert b"Authorization: AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/" in seen[1]
