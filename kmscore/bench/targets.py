"""What ``kms bench`` measures: the targets, and the baselines run beside them.

A :class:`Contender` is anything timed: per thread, a schedule of calls, and
what one call of each operation delivers (data keys, or bytes for the
envelope). The targets:

- ``library``: :class:`~kmscore.client.LocalKMS` in this process, on a
  temporary data dir unless one is given, audit trail on as shipped;
- ``socket``: :class:`~kmscore.client.RemoteKMS` against a daemon this
  command starts (``python -m kmscore.frontends.rpc``), or a running one;
- ``http``: :class:`~kmscore.bench.http.HttpKMS` against ``kms serve --http``
  started here, or any endpoint URL;
- ``envelope``: :mod:`kmscore.envelope` messages of ``size`` bytes, in memory
  and in files, on an in-process LocalKMS.

The baselines: the raw engine, a plain ``cryptography`` AES-GCM loop, moto's
KMS backend called in this process (when moto is installed), and further
endpoint URLs; each runs the operations of the mix it can do.
"""

from __future__ import annotations

import configparser
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmscore.bench.operations import (
    Fixtures,
    Operation,
    calls,
    delete_keys,
    mixed,
    prepare,
    schedule,
)
from kmscore.bench.timing import Call

__all__ = ["BenchSetupError", "Contender", "Server", "Workspace"]


class BenchSetupError(Exception):
    """A target or baseline could not be set up (the message says why, in one line)."""


@dataclass
class Contender:
    """One thing timed, with its schedules and what each call delivers.

    Attributes:
        name: The row label.
        role: ``target`` or ``baseline``.
        operations: The operations it runs (a subset of the mix for a baseline).
        schedules: One schedule per thread.
        items: Per operation, what one call delivers (data keys, or bytes).
        unit: ``keys`` or ``bytes``.
        server_pid: The server process whose CPU is counted, if one was started.
        pipeline: For pipelined asyncio load instead of threads: how to connect an
            asyncio client, how to build the schedule on it, and the calls in flight.
        pool: A :class:`kmscore.bench.processes.WorkerPool` that runs the turns
            in worker processes instead (``--processes``).
        cleanup: Schedules the deletion of the keys the run made.
    """

    name: str
    role: str
    operations: list[Operation]
    schedules: list[list[Call]]
    items: list[float]
    unit: str = "keys"
    server_pid: int | None = None
    pipeline: tuple[Callable[[], Any], Callable[[Any], list[Call]], int] | None = None
    pool: Any = None
    cleanup: Callable[[], None] | None = None


@dataclass
class Server:
    """A server process this command started (stopped by :meth:`stop`)."""

    process: subprocess.Popen[str]
    info: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Workspace:
    """Temporary data dirs and servers, all removed by :meth:`close`."""

    def __init__(self) -> None:
        """Make the temporary directory."""
        self.root = Path(tempfile.mkdtemp(prefix="kms-bench-"))
        self.servers: list[Server] = []
        self.closers: list[Callable[[], object]] = []

    def data_dir(self, name: str) -> Path:
        """A fresh data dir path inside the workspace."""
        return self.root / name

    def close(self) -> None:
        """Close clients, stop servers, remove the directory."""
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # noqa: S110 - best effort at exit
                pass
        for server in self.servers:
            server.stop()
        self._wait_for_chainers()
        shutil.rmtree(self.root, ignore_errors=True)

    def _wait_for_chainers(self, wait: float = 10.0) -> None:
        # A data dir's audit chainer process outlives its last writer by about
        # 2 s; removing the directory under it would make it report a broken chain.
        from kmscore.audit.chainer import chainer_running

        deadline = time.monotonic() + wait
        for data_dir in (p for p in self.root.iterdir() if p.is_dir()):
            while chainer_running(data_dir) and time.monotonic() < deadline:
                time.sleep(0.05)

    def start(self, argv: list[str], ready: Callable[[str], bool], what: str) -> Server:
        """Start a server and wait (60 s at most) for the stdout line ``ready`` accepts.

        Raises:
            BenchSetupError: It exited or printed no such line.
        """
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        server = Server(process)
        self.servers.append(server)
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                raise BenchSetupError(f"{what} exited before it was ready")
            if ready(line.strip()):
                server.info["line"] = line.strip()
                return server
        raise BenchSetupError(f"{what} was not ready within 60 s")


def _schedules(
    client_for_thread: Callable[[int], Any],
    operations: Sequence[Operation],
    fixtures: Fixtures,
    threads: int,
    seed: int,
) -> list[list[Call]]:
    order = schedule(operations, seed)
    return [mixed(calls(client_for_thread(t), operations, fixtures), order) for t in range(threads)]


def _items(operations: Sequence[Operation], batch: int) -> list[float]:
    return [float(batch) if op.name == "GenerateDataKeys" else 1.0 for op in operations]


def kms_contender(
    name: str,
    role: str,
    client_for_thread: Callable[[int], Any],
    operations: Sequence[Operation],
    threads: int,
    batch: int,
    seed: int,
    server_pid: int | None = None,
) -> Contender:
    """A contender that calls KMS operations through a boto3-shaped client.

    Raises:
        BenchSetupError: The setup calls (CreateKey, Encrypt, Sign, ...) failed.
    """
    client = client_for_thread(0)
    keys: dict[str, str] = {}
    try:
        fixtures = prepare(client, operations, batch, keys)
    except (OSError, ConnectionError) as exc:
        delete_keys(client, keys)
        raise BenchSetupError(f"{name}: cannot reach the KMS: {exc}") from exc
    except Exception as exc:
        delete_keys(client, keys)
        code = getattr(exc, "code", type(exc).__name__)
        message = getattr(exc, "message", str(exc))
        raise BenchSetupError(f"{name}: setting up the keys failed: {code}: {message}") from exc
    return Contender(
        name,
        role,
        list(operations),
        _schedules(client_for_thread, operations, fixtures, threads, seed),
        _items(operations, batch),
        server_pid=server_pid,
        cleanup=lambda: delete_keys(client, keys),
    )


# --- the targets ----------------------------------------------------------------------


def library_client(ws: Workspace, data_dir: Path | None, audit: bool) -> Any:
    """A LocalKMS on ``data_dir`` or on a fresh one in the workspace."""
    from kmscore.client.local import LocalKMS

    kms = LocalKMS(data_dir or ws.data_dir("library"), audit=audit)
    ws.closers.append(kms.close)
    return kms


def socket_client(ws: Workspace, socket_path: Path | None, audit: bool) -> tuple[Any, int | None]:
    """A RemoteKMS on ``socket_path``, or on a daemon started in the workspace.

    Raises:
        BenchSetupError: No daemon answers on the socket, or the one started failed.
    """
    from kmscore.client.remote import RemoteKMS

    pid = None
    if socket_path is None:
        argv = [sys.executable, "-m", "kmscore.frontends.rpc"]
        argv += ["--data-dir", str(ws.data_dir("socket"))]
        if not audit:
            argv.append("--no-audit")
        server = ws.start(argv, lambda line: line.startswith("{"), "the socket daemon")
        info = json.loads(server.info["line"])
        socket_path, pid = Path(info["socket"]), server.process.pid
    try:
        kms = RemoteKMS(socket_path, timeout=30)
    except ConnectionError as exc:
        raise BenchSetupError(str(exc)) from exc
    ws.closers.append(kms.close)
    return kms, pid


def pipelined_socket(
    contender: Contender, socket_path: str, fixtures_client: Any, inflight: int, batch: int,
    seed: int,
) -> Contender:  # fmt: skip
    """Make ``contender`` (the socket target) run pipelined on one asyncio connection.

    Raises:
        BenchSetupError: The setup calls failed.
    """
    from kmscore.client.aio import AsyncRemoteKMS

    try:
        fixtures = prepare(fixtures_client, contender.operations, batch)
    except Exception as exc:
        raise BenchSetupError(f"{contender.name}: setting up the keys failed: {exc}") from exc
    order = schedule(contender.operations, seed)

    async def connect() -> Any:
        return await AsyncRemoteKMS(socket_path).connect()

    def build(client: Any) -> list[Call]:
        return mixed(calls(client, contender.operations, fixtures), order)

    contender.pipeline = (connect, build, inflight)
    contender.schedules = contender.schedules[:1]
    return contender


def start_http_server(ws: Workspace, workers: int) -> tuple[str, tuple[str, str, None], int]:
    """``kms serve --http 127.0.0.1:0`` on a fresh data dir: URL, admin credentials, pid.

    Raises:
        BenchSetupError: The server did not start.
    """
    data_dir = ws.data_dir("http")
    argv = [sys.executable, "-c", "from kmscore.frontends.cli import main; main()", "serve"]
    argv += ["--data-dir", str(data_dir), "--http", "127.0.0.1:0", "--workers", str(workers)]
    server = ws.start(
        argv, lambda line: line.startswith("AWS_ENDPOINT_URL_KMS="), "kms serve --http"
    )
    url = server.info["line"].split("=", 1)[1]
    parser = configparser.ConfigParser()
    parser.read(data_dir / "credentials")
    section = parser["default"]
    return (
        url,
        (section["aws_access_key_id"], section["aws_secret_access_key"], None),
        (server.process.pid),
    )


def http_clients(
    url: str, region: str, credentials: tuple[str, str, str | None], threads: int
) -> Callable[[int], Any]:
    """One :class:`HttpKMS` per thread (each its own keep-alive connection).

    Raises:
        BenchSetupError: botocore is missing, or the URL is not http(s).
    """
    try:
        from kmscore.bench.http import HttpKMS
    except ImportError as exc:  # pragma: no cover - botocore is in the bench extra
        raise BenchSetupError(
            "the http target needs botocore: pip install 'kmscore[bench]'"
        ) from exc
    try:
        clients = [HttpKMS(url, region, *credentials) for _ in range(max(threads, 1))]
    except ImportError as exc:
        raise BenchSetupError(
            "the http target needs botocore: pip install 'kmscore[bench]'"
        ) from exc
    except ValueError as exc:
        raise BenchSetupError(str(exc)) from exc
    return lambda t: clients[t]


def envelope_contender(
    ws: Workspace,
    operations: Sequence[Operation],
    size: int,
    threads: int,
    seed: int,
    audit: bool,
    cache: bool,
) -> Contender:
    """Envelope messages of ``size`` bytes: in memory (Stream) and in files (File)."""
    from kmscore import envelope as E

    kms = library_client(ws, None, audit)
    key = kms.create_key(Description="kms bench envelope")["KeyMetadata"]["Arn"]
    ring: Any = E.KmsKeyring(kms, [key])
    if cache:
        ring = E.DataKeyCache(ring, max_age=300.0)
    context = {"purpose": "kms bench"}
    data = os.urandom(size)
    message = E.encrypt(data, ring, encryption_context=context)
    files = ws.root / "envelope"
    files.mkdir()
    (files / "plain.bin").write_bytes(data)
    (files / "sealed.bin").write_bytes(message)

    def for_thread(t: int) -> list[Callable[[], object]]:
        out: list[Callable[[], object]] = []
        for op in operations:
            if op.name == "EncryptStream":
                out.append(lambda: E.encrypt(data, ring, encryption_context=context))
            elif op.name == "DecryptStream":
                out.append(lambda: E.decrypt(message, ring, encryption_context=context))
            elif op.name == "EncryptFile":
                out.append(
                    functools.partial(
                        E.encrypt_file,
                        files / "plain.bin",
                        files / f"out-{t}.enc",
                        ring,
                        encryption_context=context,
                    )
                )
            else:
                out.append(
                    functools.partial(
                        E.decrypt_file,
                        files / "sealed.bin",
                        files / f"out-{t}.bin",
                        ring,
                        encryption_context=context,
                    )
                )
        return out

    order = schedule(operations, seed)
    schedules = [mixed([[fn] for fn in for_thread(t)], order) for t in range(threads)]
    return Contender(
        "envelope", "target", list(operations), schedules, [float(size)] * len(operations), "bytes"
    )


# --- the baselines ----------------------------------------------------------------------

_AAD = b"\xc5\x01" + bytes(20) + b"\x00\x02" + b"x" * 30  # the size of a blob's AAD


def engine_baseline(operations: Sequence[Operation], batch: int) -> Contender | None:
    """The raw engine doing what each symmetric operation does to a data key."""
    from kmscore import engine

    key = engine.AesGcmKey(os.urandom(engine.KEY_LENGTH))
    iv = os.urandom(engine.IV_LENGTH)
    sealed = key.seal(iv, os.urandom(32), _AAD)

    def reencrypt() -> object:
        return key.seal(os.urandom(12), key.open(iv, sealed, _AAD), _AAD)

    table: dict[str, Callable[[], object]] = {
        "GenerateDataKey": lambda: key.generate_data_keys(1, 32, _AAD),
        "GenerateDataKeys": lambda: key.generate_data_keys(batch, 32, _AAD),
        "Encrypt": lambda: key.seal(os.urandom(12), sealed[:32], _AAD),
        "Decrypt": lambda: key.open(iv, sealed, _AAD),
        "ReEncrypt": reencrypt,
    }
    return _local_baseline("raw engine", table, operations, batch)


def cryptography_baseline(operations: Sequence[Operation], batch: int) -> Contender | None:
    """A plain ``cryptography`` AESGCM loop: fresh key and IV, seal; or open."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(os.urandom(32))
    iv = os.urandom(12)
    sealed = aead.encrypt(iv, os.urandom(32), _AAD)

    def one() -> object:
        return aead.encrypt(os.urandom(12), os.urandom(32), _AAD)

    def many() -> object:
        return [aead.encrypt(os.urandom(12), os.urandom(32), _AAD) for _ in range(batch)]

    table: dict[str, Callable[[], object]] = {
        "GenerateDataKey": one,
        "GenerateDataKeys": many,
        "Encrypt": one,
        "Decrypt": lambda: aead.decrypt(iv, sealed, _AAD),
        "ReEncrypt": lambda: aead.encrypt(os.urandom(12), aead.decrypt(iv, sealed, _AAD), _AAD),
    }
    return _local_baseline("cryptography AES-GCM", table, operations, batch)


def envelope_baseline(operations: Sequence[Operation], size: int) -> Contender:
    """``cryptography`` AES-GCM over ``size`` bytes in 4 KiB frames (the envelope's default)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from kmscore.envelope import DEFAULT_FRAME_LENGTH

    aead = AESGCM(os.urandom(32))
    iv, aad = bytes(12), b"a" * 80
    data = os.urandom(size)
    chunks = [data[i : i + DEFAULT_FRAME_LENGTH] for i in range(0, size, DEFAULT_FRAME_LENGTH)]
    sealed = [aead.encrypt(iv, c, aad) for c in chunks]

    def seal() -> object:
        return [aead.encrypt(iv, c, aad) for c in chunks]

    def unseal() -> object:
        return [aead.decrypt(iv, c, aad) for c in sealed]

    fns = [seal if op.name.startswith("Encrypt") else unseal for op in operations]
    order = schedule(operations, 0)
    return Contender(
        "cryptography AES-GCM",
        "baseline",
        list(operations),
        [mixed([[f] for f in fns], order)],
        [float(size)] * len(operations),
        "bytes",
    )


def moto_backend() -> tuple[Any, str] | None:
    """The moto in-memory KMS backend and a new symmetric key in it (None without moto)."""
    try:
        from moto.kms.models import kms_backends  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    backend: Any = kms_backends["123456789012"]["us-east-1"]
    key = backend.create_key(
        policy=None,
        key_usage="ENCRYPT_DECRYPT",
        key_spec="SYMMETRIC_DEFAULT",
        description="kms bench",
        tags=None,
    )
    return backend, str(key.id)


def moto_baseline(operations: Sequence[Operation], batch: int) -> Contender | None:
    """The moto KMS backend object called directly (None when moto is not installed)."""
    found = moto_backend()
    if found is None:
        return None
    backend, key = found
    ctx = {"purpose": "kms bench"}
    blob = backend.generate_data_key(key, ctx, None, "AES_256")[1]
    table: dict[str, Callable[[], object]] = {
        "GenerateDataKey": lambda: backend.generate_data_key(key, ctx, None, "AES_256"),
        "Encrypt": lambda: backend.encrypt(key, os.urandom(32), ctx),
        "Decrypt": lambda: backend.decrypt(blob, ctx),
    }
    return _local_baseline("moto backend", table, operations, batch)


def _local_baseline(
    name: str,
    table: dict[str, Callable[[], object]],
    operations: Sequence[Operation],
    batch: int,
) -> Contender | None:
    """A one-thread baseline over the operations of the mix it can do."""
    ops = [op for op in operations if op.name in table and op.key_spec == "SYMMETRIC_DEFAULT"]
    if not ops:
        return None
    order = schedule(ops, 0)
    return Contender(
        name, "baseline", ops, [mixed([[table[op.name]] for op in ops], order)], _items(ops, batch)
    )
