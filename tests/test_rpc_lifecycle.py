"""The daemon's life: start, one daemon per socket, stale sockets, restarts, SIGTERM.

SIGTERM during load: every call a client saw answered is in the audit trail,
the trail verifies, the socket file is gone and the exit status is 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_rpc_support import DaemonProcess, running_daemon, shared_socket_dir

import kmscore
from kmscore import audit, errors
from kmscore.client.remote import RemoteConnectionError, RemoteKMS
from kmscore.frontends.rpc import server


def test_default_socket_is_private_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_daemon(data_dir) as daemon:
        assert daemon.socket == data_dir / "kms.sock"
        assert stat.S_ISSOCK(os.lstat(daemon.socket).st_mode)
        assert stat.S_IMODE(os.lstat(daemon.socket).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
        assert daemon.info["data_dir"] == str(data_dir)
        assert Path(daemon.info["credentials"]).is_file()
        with kmscore.connect(data_dir=data_dir) as kms:
            kms.create_key()
    assert not daemon.socket.exists()


def test_sigterm_during_load_loses_no_acknowledged_call(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    daemon = DaemonProcess(data_dir).wait_ready()
    acked: dict[str, set[str]] = {"GenerateDataKey": set(), "CreateKey": set(), "Encrypt": set()}
    lock = threading.Lock()
    stop = threading.Event()
    with kmscore.connect(daemon.socket) as kms:
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]

    def blocking(worker: int) -> None:
        kms = RemoteKMS(daemon.socket, reconnect_wait=0.0)
        try:
            for i in range(100_000):
                tag = f"{worker}-{i}"
                try:
                    if i % 10 == 0:
                        kms.create_key(Description=tag)
                        name = "CreateKey"
                    else:
                        ctx = {"tag": tag}
                        kms.generate_data_key(
                            KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx
                        )
                        name = "GenerateDataKey"
                except (RemoteConnectionError, errors.KMSError, TimeoutError):
                    return
                with lock:
                    acked[name].add(tag)
        finally:
            kms.close()

    async def pipelined() -> None:
        async with kmscore.AsyncRemoteKMS(daemon.socket, reconnect_wait=0.0) as kms:

            async def one(tag: str) -> None:
                try:
                    await kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext={"tag": tag})
                except (RemoteConnectionError, errors.KMSError, TimeoutError):
                    stop.set()
                    return
                with lock:
                    acked["Encrypt"].add(tag)

            batch = 0
            while not stop.is_set():
                await asyncio.gather(*(one(f"a{batch}-{j}") for j in range(64)))
                batch += 1

    threads = [threading.Thread(target=blocking, args=(n,)) for n in range(3)]
    threads.append(threading.Thread(target=lambda: asyncio.run(pipelined())))
    for t in threads:
        t.start()
    time.sleep(1.0)
    code = daemon.stop(signal.SIGTERM)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert code == 0, daemon.stderr()
    assert not daemon.socket.exists()
    assert all(acked.values()), {k: len(v) for k, v in acked.items()}
    print({k: len(v) for k, v in acked.items()})

    report = audit.verify(data_dir)
    assert report.unsealed == 0  # the last checkpoint seals everything
    found: dict[str, set[str]] = {name: set() for name in acked}
    for record in audit.query(data_dir, error_code=False):
        name = record["eventName"]
        params = record.get("requestParameters") or {}
        if name == "CreateKey":
            found[name].add(params.get("description"))
        elif name in found:
            found[name].add((params.get("encryptionContext") or {}).get("tag"))
    for name, tags in acked.items():
        missing = tags - found[name]
        assert not missing, f"{len(missing)} acknowledged {name} calls not in the trail"


def test_a_second_daemon_on_the_same_socket_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_daemon(data_dir) as first:
        second = DaemonProcess(data_dir)
        assert second.proc.wait(timeout=60) == 1
        message = second.stderr()
        assert f"another kmscore daemon (pid {first.pid}) is serving" in message, message
        with kmscore.connect(first.socket) as kms:  # the first one is unharmed
            kms.generate_random(NumberOfBytes=1)
        assert first.socket.exists()


def test_a_live_listener_without_the_lock_is_not_replaced(tmp_path: Path) -> None:
    with shared_socket_dir() as socket_dir:
        path = socket_dir / "kms.sock"
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(path))
            listener.listen()
            daemon = DaemonProcess(tmp_path / "data", path)
            assert daemon.proc.wait(timeout=60) == 1
            assert "another kmscore daemon is serving" in daemon.stderr()
            assert path.exists()


def test_a_file_that_is_not_a_socket_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "kms.sock"
    path.write_text("precious")
    daemon = DaemonProcess(tmp_path / "data", path)
    assert daemon.proc.wait(timeout=60) == 1
    assert "is not a socket" in daemon.stderr()
    assert path.read_text() == "precious"


def test_a_stale_socket_of_a_killed_daemon_is_replaced(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    killed = DaemonProcess(data_dir).wait_ready()
    killed.stop(signal.SIGKILL)
    assert killed.socket.exists()  # left behind
    with pytest.raises(RemoteConnectionError):
        kmscore.connect(killed.socket)
    with running_daemon(data_dir) as daemon:
        assert daemon.socket == killed.socket
        with kmscore.connect(daemon.socket) as kms:
            assert len(kms.generate_random(NumberOfBytes=4)["Plaintext"]) == 4
        assert "replacing the stale socket" in daemon.stderr()


def test_clients_reconnect_after_a_daemon_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = DaemonProcess(data_dir).wait_ready()
    kms = kmscore.connect(first.socket)
    loop = asyncio.new_event_loop()
    akms = loop.run_until_complete(kmscore.connect_async(first.socket))
    try:
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        assert first.stop() == 0
        with running_daemon(data_dir) as second:
            assert second.pid != first.pid
            # Broken before the request went out: any operation is sent again.
            assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"] == key_id
            assert kms.create_key()["KeyMetadata"]["KeyState"] == "Enabled"
            result = loop.run_until_complete(akms.describe_key(KeyId=key_id))
            assert result["KeyMetadata"]["KeyId"] == key_id
            assert loop.run_until_complete(akms.create_key())["KeyMetadata"]["Enabled"]
    finally:
        kms.close()
        loop.run_until_complete(akms.close())
        loop.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--socket-mode", "644"], "socket mode 0o644 is not one of"),
        (["--socket", "/nonexistent-dir/kms.sock"], "does not exist"),
        (["--socket", "/tmp/" + "x" * 120], "longer than 107 bytes"),
    ],
)
def test_bad_socket_options_exit_non_zero(tmp_path: Path, args: list[str], message: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "kmscore.frontends.rpc", "--data-dir", str(tmp_path / "d"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert message in proc.stderr


def test_run_in_process_with_startup_hooks(tmp_path: Path) -> None:
    events: list[Any] = []

    class Extra:
        def close(self) -> None:
            events.append("extra closed")

        async def wait_closed(self) -> None:
            events.append("extra waited")

    async def extra_start(service: Any, loop: asyncio.AbstractEventLoop) -> Extra:
        assert loop is asyncio.get_running_loop()
        events.append(("extra started", service.data_dir))
        return Extra()

    def client(socket_path: str) -> None:
        with kmscore.connect(socket_path) as kms:
            events.append(len(kms.generate_random(NumberOfBytes=5)["Plaintext"]))
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the daemon's loop

    def ready(info: dict[str, Any]) -> None:
        # Called on the daemon's loop: the client must run elsewhere.
        events.append(("ready", info["socket"]))
        threading.Thread(target=client, args=(info["socket"],)).start()

    socket_path = tmp_path / "s.sock"
    code = server.run(tmp_path / "data", socket_path, ready=ready, extra_startup=[extra_start])
    assert code == 0
    assert events == [
        ("extra started", tmp_path / "data"),
        ("ready", str(socket_path)),
        5,
        "extra closed",
        "extra waited",
    ]
    assert not socket_path.exists()
    assert audit.verify(tmp_path / "data").records >= 1


@pytest.mark.parametrize("mode", [0o600, 0o660, 0o666])
def test_socket_is_born_with_the_mode_asked(tmp_path: Path, mode: int) -> None:
    with (
        shared_socket_dir() as socket_dir,
        running_daemon(tmp_path / "data", socket_dir / "kms.sock", mode=mode) as daemon,
    ):
        st = os.lstat(daemon.socket)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == mode
        assert stat.S_IMODE(os.lstat(str(daemon.socket) + ".lock").st_mode) == 0o600
