"""Garbage on the socket: the daemon answers or closes, never crashes, stays bounded.

Each test talks raw bytes to a real daemon process, then checks that the daemon
still serves a normal client. The last test compares the daemon's resident
memory with what it was before all of them.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from test_rpc_support import EVENT_LOOPS, DaemonProcess, running_daemon, wait_for

from kmscore import connect

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module", params=EVENT_LOOPS)
def daemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("rpc") / "data", loop=request.param) as d:
        with connect(d.socket) as kms:  # warm up before the baseline
            key_id = kms.create_key()["KeyMetadata"]["KeyId"]
            for _ in range(200):
                kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
                kms.generate_data_keys(KeyId=key_id, Count=100, KeySpec="AES_256")
        d.info["baseline_rss_kb"] = d.rss_kb()
        d.info["key_id"] = key_id
        yield d


def raw(daemon: DaemonProcess) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(30)
    sock.connect(str(daemon.socket))
    return sock


def request(msgid: Any, method: Any, params: Any, kind: Any = 0) -> bytes:
    return msgpack.packb([kind, msgid, method, params], use_bin_type=True)


def answers(sock: socket.socket, count: int) -> list[Any]:
    unpacker = msgpack.Unpacker(raw=False, timestamp=3)
    out: list[Any] = []
    while len(out) < count:
        data = sock.recv(1 << 16)
        assert data, f"closed after {len(out)} answers"
        unpacker.feed(data)
        out.extend(unpacker)
    return out


def closed_by_daemon(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True when the daemon closes the connection (after any answers)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(1 << 16):
            pass
    except ConnectionResetError:
        pass
    return True


def still_serves(daemon: DaemonProcess) -> None:
    assert daemon.proc.poll() is None, daemon.stderr()
    with connect(daemon.socket, timeout=30) as kms:
        assert len(kms.generate_random(NumberOfBytes=16)["Plaintext"]) == 16
        dk = kms.generate_data_key(KeyId=daemon.info["key_id"], KeySpec="AES_256")
        assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]


def test_random_bytes_close_the_connection(daemon: DaemonProcess) -> None:
    for seed in range(20):
        with raw(daemon) as sock:
            try:
                sock.sendall(os.urandom(64 + seed * 997))
                # Random bytes may end inside what reads as a long frame's
                # header: the daemon waits for the rest, until EOF.
                sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert closed_by_daemon(sock)
    still_serves(daemon)


@pytest.mark.parametrize(
    "message",
    [
        {"a": 1},  # not an array
        [0, 1, "GenerateRandom"],  # three elements
        [0, "1", "GenerateRandom", {}],  # msgid not an integer
        [0, -1, "GenerateRandom", {}],  # msgid negative
        [0, 1 << 32, "GenerateRandom", {}],  # msgid over 32 bits
        [1, 1, "GenerateRandom", {}],  # a response, not a request
        [2, "GenerateRandom", {}],  # a notification: never answered
        17,
        None,
    ],
    ids=repr,
)
def test_messages_without_a_usable_msgid_close_the_connection(
    daemon: DaemonProcess, message: Any
) -> None:
    with raw(daemon) as sock:
        sock.sendall(msgpack.packb(message, use_bin_type=True))
        assert closed_by_daemon(sock)
    still_serves(daemon)


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        (123, {}, "UnknownOperationException"),
        ("", {}, "UnknownOperationException"),
        ("x" * 5000, {}, "UnknownOperationException"),
        ("NoSuchOperation", {}, "UnknownOperationException"),
        ("Encrypt", [1, 2], "SerializationException"),
        ("Encrypt", None, "SerializationException"),
        ("Encrypt", {}, "ValidationException"),  # KeyId, Plaintext missing
        ("Encrypt", {"KeyId": "alias/x", "Plaintext": 5}, "ValidationException"),
        ("Encrypt", {"KeyId": 5, "Plaintext": b"x"}, "ValidationException"),
        (
            "Encrypt",
            {"KeyId": "alias/x", "Plaintext": msgpack.ExtType(5, b"x")},
            "ValidationException",
        ),
        ("GenerateRandom", {"NumberOfBytes": 1.5}, "ValidationException"),
        ("GenerateRandom", {b"NumberOfBytes": 1}, "ValidationException"),
        ("CreateKey", {"Tags": "nope"}, "ValidationException"),
    ],
)
def test_wrong_types_get_error_answers_on_a_connection_that_stays_open(
    daemon: DaemonProcess, method: Any, params: Any, code: str
) -> None:
    with raw(daemon) as sock:
        sock.sendall(
            request(41, method, params) + request(42, "GenerateRandom", {"NumberOfBytes": 3})
        )
        first, second = sorted(answers(sock, 2), key=lambda a: a[1])
        assert first[:2] == [1, 41] and first[3] is None
        assert first[2]["Code"] == code, first
        assert second[1] == 42 and len(second[3]["Plaintext"]) == 3


@pytest.mark.parametrize(
    "frame",
    [
        b"\xdd\xff\xff\xff\xff",  # array 32 of 4 G elements
        b"\x94\x00\x01\xa7Encrypt\xdf\xff\xff\xff\xff",  # map 32 of 4 G pairs
        b"\x94\x00\x01\xa7Encrypt\x81\xa9Plaintext\xc6\xff\xff\xff\xff",  # bin 32 of 4 GB
        b"\x94\x00\x01\xdb\xff\xff\xff\xff",  # str 32 of 4 GB
    ],
    ids=["array32", "map32", "bin32", "str32"],
)
def test_huge_length_prefixes_are_cut_at_the_frame_limit(
    daemon: DaemonProcess, frame: bytes
) -> None:
    with raw(daemon) as sock:
        sock.sendall(frame)
        # The daemon buffers at most the frame limit (1 MiB), then closes.
        sent = 0
        try:
            while sent < 8 << 20:
                sock.sendall(b"\x00" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < 4 << 20, "the daemon kept reading a frame over the limit"
        assert closed_by_daemon(sock)
    still_serves(daemon)


def test_a_complete_frame_over_the_limit_closes_the_connection(daemon: DaemonProcess) -> None:
    with raw(daemon) as sock:
        big = request(1, "Encrypt", {"KeyId": "alias/x", "Plaintext": b"x" * (2 << 20)})
        try:
            sock.sendall(big)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_by_daemon(sock)
    still_serves(daemon)


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",  # never used
        b"\x94\x00\x01\xa7Encrypt\x81\xa9Plaintext\xa2\xff\xfe",  # str not UTF-8
        b"\x94\x00\x01\xa7Encrypt\x81\x01\x02",  # map key an integer
        b"\x91" * 100_000,  # nested too deep
    ],
    ids=["c1", "utf8", "intkey", "deep"],
)
def test_malformed_msgpack_closes_the_connection(daemon: DaemonProcess, data: bytes) -> None:
    with raw(daemon) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_by_daemon(sock)
    still_serves(daemon)


def test_truncated_frames_are_never_answered(daemon: DaemonProcess) -> None:
    whole = request(5, "GenerateRandom", {"NumberOfBytes": 8})
    for cut in range(1, len(whole)):
        with raw(daemon) as sock:
            sock.sendall(whole[:cut])
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(10)
            assert sock.recv(100) == b""
    # A frame that arrives in pieces is answered once whole.
    with raw(daemon) as sock:
        for byte in whole:
            sock.sendall(bytes([byte]))
            time.sleep(0.001)
        assert answers(sock, 1)[0][1] == 5
    still_serves(daemon)


def test_a_client_that_leaves_mid_request_harms_nothing(daemon: DaemonProcess) -> None:
    for i in range(20):
        with raw(daemon) as sock:
            sock.sendall(
                request(1, "CreateKey", {"Description": f"left-{i}"})
                + request(2, "GenerateDataKeys", {"KeyId": daemon.info["key_id"], "Count": 10000,
                                                  "KeySpec": "AES_256"})
            )  # fmt: skip
        # Closed at once: the keys are still made (in worker threads, so
        # perhaps a moment later), the answers go nowhere.
    with connect(daemon.socket) as kms:

        def all_made() -> bool:
            keys = kms.list_keys(Limit=1000)["Keys"]
            descriptions = {
                kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["Description"] for k in keys
            }
            return {f"left-{i}" for i in range(20)} <= descriptions

        wait_for(all_made, timeout=30)
    still_serves(daemon)


def _send_until_stalled(sock: socket.socket, data: bytes, stall: float = 1.0) -> int:
    """Send without blocking until the peer stops taking bytes; returns bytes sent."""
    sock.setblocking(False)
    view, sent = memoryview(data), 0
    while sent < len(data):
        _, writable, _ = select.select([], [sock], [], stall)
        if not writable:
            break
        try:
            sent += sock.send(view[sent:])
        except BlockingIOError:
            continue
    sock.setblocking(True)
    return sent


def test_a_client_that_never_reads_its_answers(daemon: DaemonProcess) -> None:
    frames = [request(i, "GenerateRandom", {"NumberOfBytes": 1024}) for i in range(10_000)]
    data = b"".join(frames)
    with raw(daemon) as stalled:
        sent = _send_until_stalled(stalled, data)
        time.sleep(0.3)
        still_serves(daemon)
        # 10,000 answers would be over 10 MB; the daemon holds about its
        # write buffer's high-water mark (1 MiB) of them, the kernel the rest.
        grown = daemon.rss_kb() - daemon.info["baseline_rss_kb"]
        print(f"RSS growth with 10,000 unread answers: {grown} kB")
        assert grown < 100 * 1024
        # Now read: every request the daemon took is answered, and the rest
        # goes through as the answers drain.
        # Sending only when the socket takes bytes: a blocking send could wait
        # on a daemon that in turn waits for this test to read its answers.
        stalled.setblocking(False)
        unpacker = msgpack.Unpacker(raw=False)
        got = 0
        rest = memoryview(data)[sent:]
        deadline = time.monotonic() + 60
        while got < len(frames):
            assert time.monotonic() < deadline, f"{got} of {len(frames)} answers came"
            readable, writable, _ = select.select([stalled], [stalled] if rest else [], [], 30)
            assert readable or writable, f"nothing moved for 30 s after {got} answers"
            if writable:
                try:
                    rest = rest[stalled.send(rest[: 1 << 16]) :]
                except BlockingIOError:
                    pass
            if readable:
                try:
                    chunk = stalled.recv(1 << 20)
                except BlockingIOError:
                    continue
                assert chunk
                unpacker.feed(chunk)
                for message in unpacker:
                    assert message[1] == got and len(message[3]["Plaintext"]) == 1024
                    got += 1
        assert got == 10_000


def test_big_answers_to_a_client_that_never_reads(daemon: DaemonProcess) -> None:
    # Each answer is about 21 MB (10,000 keys of 1,024 bytes with their blobs);
    # the daemon stops after the first one fills the write buffer.
    frame = request(
        1, "GenerateDataKeys",
        {"KeyId": daemon.info["key_id"], "Count": 10_000, "NumberOfBytes": 1024},
    )  # fmt: skip
    with raw(daemon) as stalled:
        _send_until_stalled(stalled, frame * 50)
        time.sleep(0.5)
        still_serves(daemon)
        assert daemon.rss_kb() - daemon.info["baseline_rss_kb"] < 100 * 1024


def test_memory_stays_bounded_after_all_the_garbage(daemon: DaemonProcess) -> None:
    still_serves(daemon)
    grown = daemon.rss_kb() - daemon.info["baseline_rss_kb"]
    print(f"RSS growth after all the garbage: {grown} kB")
    assert grown < 100 * 1024, f"RSS grew by {grown} kB"


def test_peer_credentials_struct() -> None:
    from kmscore.frontends.rpc.protocol import PeerCredentials, peer_credentials

    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        creds = peer_credentials(left)
    assert creds == PeerCredentials(pid=os.getpid(), uid=os.getuid(), gid=os.getgid())
    assert struct.calcsize("3i") == 12
