"""The client against a scripted fake daemon: retries, timeouts, odd answers.

Which calls are sent again after a broken connection is the client's promise
(see kmscore/remote.py): always when the request never went out; after it went
out only for read-only operations, since it may have run.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from kmscore import errors
from kmscore.client.aio import AsyncRemoteKMS
from kmscore.client.remote import RemoteConnectionError, RemoteKMS

# What the fake daemon does with each request it reads, connection by connection.
Script = Callable[[int, list[Any]], Any]


class FakeDaemon:
    """Reads msgpack-RPC requests and lets a script decide what to answer."""

    def __init__(self, path: Path, script: Script) -> None:
        self.path = path
        self.script = script
        self.requests: list[tuple[int, str]] = []
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen()
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            number = self.connections
            threading.Thread(target=self._handle, args=(conn, number), daemon=True).start()

    def _handle(self, conn: socket.socket, number: int) -> None:
        unpacker = msgpack.Unpacker(raw=False)
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                unpacker.feed(data)
                for message in unpacker:
                    self.requests.append((number, message[2]))
                    answer = self.script(number, message)
                    if answer == "close":
                        return
                    if answer is not None:
                        conn.sendall(answer)

    def close(self) -> None:
        self.listener.close()


def ok(message: list[Any]) -> bytes:
    return msgpack.packb([1, message[1], None, {"Echo": message[2]}], use_bin_type=True)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Callable[[Script], FakeDaemon]]:
    made: list[FakeDaemon] = []

    def make(script: Script) -> FakeDaemon:
        made.append(FakeDaemon(tmp_path / "fake.sock", script))
        return made[-1]

    yield make
    for daemon in made:
        daemon.close()


def first_connection_dies(number: int, message: list[Any]) -> Any:
    return "close" if number == 1 else ok(message)


def test_read_only_call_is_sent_again_after_the_connection_broke(fake: Any) -> None:
    daemon = fake(first_connection_dies)
    with RemoteKMS(daemon.path) as kms:
        assert kms.describe_key(KeyId="k") == {"Echo": "DescribeKey"}
    assert daemon.requests == [(1, "DescribeKey"), (2, "DescribeKey")]


def test_mutating_call_that_may_have_run_is_not_sent_again(fake: Any) -> None:
    daemon = fake(first_connection_dies)
    with RemoteKMS(daemon.path) as kms:
        with pytest.raises(RemoteConnectionError, match="may have run"):
            kms.create_key()
        # The next call gets a new connection.
        assert kms.create_key() == {"Echo": "CreateKey"}
    assert daemon.requests == [(1, "CreateKey"), (2, "CreateKey")]


def test_async_retry_policy_is_the_same(fake: Any) -> None:
    daemon = fake(first_connection_dies)

    async def main() -> None:
        async with AsyncRemoteKMS(daemon.path) as kms:
            with pytest.raises(RemoteConnectionError, match="may have run"):
                await kms.create_key()
            assert await kms.generate_random(NumberOfBytes=1) == {"Echo": "GenerateRandom"}

    asyncio.run(main())
    assert daemon.requests == [(1, "CreateKey"), (2, "GenerateRandom")]


def test_async_read_only_call_is_sent_again(fake: Any) -> None:
    daemon = fake(first_connection_dies)

    async def main() -> None:
        async with AsyncRemoteKMS(daemon.path) as kms:
            assert await kms.decrypt(CiphertextBlob=b"x") == {"Echo": "Decrypt"}

    asyncio.run(main())
    assert daemon.requests == [(1, "Decrypt"), (2, "Decrypt")]


def test_no_answer_within_the_timeout(fake: Any) -> None:
    daemon = fake(lambda number, message: None if number == 1 else ok(message))
    with RemoteKMS(daemon.path, timeout=0.2) as kms:
        with pytest.raises(TimeoutError, match="GenerateRandom"):
            kms.generate_random(NumberOfBytes=1)
        assert kms.generate_random(NumberOfBytes=1) == {"Echo": "GenerateRandom"}


def test_async_timeout_then_late_answer_is_dropped(fake: Any) -> None:
    late: list[bytes] = []

    def script(number: int, message: list[Any]) -> Any:
        if message[2] == "Slow":
            late.append(ok(message))
            return None
        # The slow call's answer arrives late, just before this one.
        return b"".join(late) + ok(message)

    daemon = fake(script)

    async def main() -> None:
        async with AsyncRemoteKMS(daemon.path, timeout=0.2) as kms:
            with pytest.raises(TimeoutError):
                await kms.call("Slow")
            assert await kms.generate_random(NumberOfBytes=1) == {"Echo": "GenerateRandom"}

    asyncio.run(main())
    assert daemon.connections == 1


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        ({"Code": "NotFoundException", "Message": "gone"}, errors.NotFoundException, "gone"),
        ({"Code": "SomethingNew", "Message": "m"}, errors.KMSInternalException, "SomethingNew: m"),
        ("not a map", errors.KMSInternalException, "malformed error"),
    ],
)
def test_errors_are_rebuilt_by_code(fake: Any, answer: Any, error: type, text: str) -> None:
    daemon = fake(lambda n, m: msgpack.packb([1, m[1], answer, None], use_bin_type=True))
    with RemoteKMS(daemon.path) as kms:
        with pytest.raises(error, match=text):
            kms.describe_key(KeyId="k")


@pytest.mark.parametrize(
    "answer",
    [
        lambda m: msgpack.packb([1, m[1] + 1, None, {}]),  # another msgid
        lambda m: msgpack.packb([0, m[1], None, {}]),  # not a response
        lambda m: msgpack.packb([1, m[1], None, "x"]),  # result not a map
        lambda m: b"\xc1",  # not msgpack
    ],
    ids=["msgid", "kind", "result", "garbage"],
)
def test_odd_answers_are_internal_errors(fake: Any, answer: Any) -> None:
    daemon = fake(lambda n, m: answer(m))
    with RemoteKMS(daemon.path) as kms:
        with pytest.raises(errors.KMSInternalException):
            kms.describe_key(KeyId="k")


def test_fork_gets_its_own_connection(fake: Any) -> None:
    import os

    daemon = fake(lambda n, m: ok(m))
    with RemoteKMS(daemon.path) as kms:
        kms.describe_key(KeyId="k")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - reported through the exit status
            status = 1
            try:
                status = 0 if kms.describe_key(KeyId="k") == {"Echo": "DescribeKey"} else 1
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert daemon.connections == 2
