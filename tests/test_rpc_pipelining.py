"""Pipelining: many requests in flight on one connection, answers matched by msgid."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from test_rpc_support import EVENT_LOOPS, DaemonProcess, running_daemon

import kmscore
from kmscore import errors


@pytest.fixture(scope="module", params=EVENT_LOOPS)
def daemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("rpc") / "data", loop=request.param) as d:
        yield d


def test_a_thousand_calls_in_flight_on_one_connection(daemon: DaemonProcess) -> None:
    async def main() -> None:
        async with kmscore.AsyncRemoteKMS(daemon.socket) as kms:
            key_id = (await kms.create_key())["KeyMetadata"]["KeyId"]
            calls: list[Any] = []
            for i in range(1000):
                if i % 100 == 0:
                    # Worker-thread calls among inline ones: answers come out of order.
                    calls.append(kms.create_key(Description=f"d{i}"))
                elif i % 3 == 0:
                    ctx = {"i": str(i)}
                    calls.append(
                        kms.encrypt(KeyId=key_id, Plaintext=b"%d" % i, EncryptionContext=ctx)
                    )
                elif i % 7 == 0:
                    calls.append(kms.describe_key(KeyId=f"alias/missing-{i}"))
                else:
                    calls.append(kms.generate_random(NumberOfBytes=1 + i % 1000))
            results = await asyncio.gather(*calls, return_exceptions=True)
            blobs = {}
            for i, result in enumerate(results):
                if i % 100 == 0:
                    assert result["KeyMetadata"]["Description"] == f"d{i}"
                elif i % 3 == 0:
                    blobs[i] = result["CiphertextBlob"]
                elif i % 7 == 0:
                    assert isinstance(result, errors.NotFoundException)
                    assert f"missing-{i}" in result.message
                else:
                    assert len(result["Plaintext"]) == 1 + i % 1000
            decrypted = await asyncio.gather(
                *(
                    kms.decrypt(CiphertextBlob=blob, EncryptionContext={"i": str(i)})
                    for i, blob in blobs.items()
                )
            )
            assert [d["Plaintext"] for d in decrypted] == [b"%d" % i for i in blobs]

    asyncio.run(main())


def _request(msgid: int, method: str, params: dict[str, Any]) -> bytes:
    return msgpack.packb([0, msgid, method, params], use_bin_type=True)


def _read(sock: socket.socket, count: int) -> list[Any]:
    unpacker = msgpack.Unpacker(raw=False, timestamp=3)
    out: list[Any] = []
    while len(out) < count:
        data = sock.recv(65536)
        assert data, "the daemon closed the connection"
        unpacker.feed(data)
        out.extend(unpacker)
    return out


def test_answers_come_out_of_order_matched_by_msgid(daemon: DaemonProcess) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(daemon.socket))
        # One write: CreateKey runs in a worker thread, GenerateRandom inline.
        sock.sendall(
            _request(7, "CreateKey", {"Description": "slow"})
            + _request(8, "GenerateRandom", {"NumberOfBytes": 16})
        )
        first, second = _read(sock, 2)
    assert first[:3] == [1, 8, None] and len(first[3]["Plaintext"]) == 16
    assert second[:3] == [1, 7, None] and second[3]["KeyMetadata"]["Description"] == "slow"


def test_many_worker_calls_beyond_the_in_flight_limit_all_answered(daemon: DaemonProcess) -> None:
    # 600 ListKeys (worker threads) in one burst: the daemon stops reading at
    # 256 in flight and resumes as answers drain; none is lost.
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(60)
        sock.connect(str(daemon.socket))
        sock.sendall(b"".join(_request(i, "ListKeys", {"Limit": 1}) for i in range(600)))
        answers = _read(sock, 600)
    assert sorted(a[1] for a in answers) == list(range(600))
    assert all(a[2] is None and len(a[3]["Keys"]) == 1 for a in answers)


def test_half_closed_client_still_gets_its_answers(daemon: DaemonProcess) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(daemon.socket))
        sock.sendall(
            _request(1, "CreateKey", {}) + _request(2, "GenerateRandom", {"NumberOfBytes": 1})
        )
        sock.shutdown(socket.SHUT_WR)
        answers = _read(sock, 2)
        assert sorted(a[1] for a in answers) == [1, 2]
        assert sock.recv(1) == b""  # then the daemon closes
