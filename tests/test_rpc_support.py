"""Helpers shared by the daemon tests (no tests here).

:class:`DaemonProcess` runs ``python -m kmscore.frontends.rpc`` as a real
subprocess on a data dir and socket of the test's choosing, waits for the JSON
line it prints once listening, and stops it with a signal.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT = 30.0

#: Event loops to run the daemon on: uvloop only where it is installed.
try:
    import uvloop  # noqa: F401

    EVENT_LOOPS = ["uvloop", "asyncio"]
except ImportError:  # pragma: no cover - depends on the environment
    EVENT_LOOPS = ["asyncio"]


class DaemonProcess:
    """A daemon subprocess; ``info`` is the JSON it printed once listening."""

    def __init__(
        self,
        data_dir: Path,
        socket_path: Path | None = None,
        *,
        mode: int = 0o600,
        loop: str | None = None,
        audit: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        args = [sys.executable, "-m", "kmscore.frontends.rpc", "--data-dir", str(data_dir)]
        if socket_path is not None:
            args += ["--socket", str(socket_path)]
        args += ["--socket-mode", f"{mode:o}"]
        if not audit:
            args.append("--no-audit")
        environ = dict(os.environ, **(env or {}))
        environ.pop("KMS_DATA_DIR", None)
        if loop is not None:
            environ["KMSCORE_EVENT_LOOP"] = loop
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.stderr_file, env=environ
        )
        self.info: dict[str, Any] = {}

    def wait_ready(self, timeout: float = START_TIMEOUT) -> DaemonProcess:
        assert self.proc.stdout is not None
        line = _read_line(self.proc.stdout, timeout)
        if not line:
            code = self.proc.wait(timeout=timeout)
            raise AssertionError(f"daemon exited with {code} before ready: {self.stderr()}")
        self.info = json.loads(line)
        return self

    @property
    def socket(self) -> Path:
        return Path(self.info["socket"])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode(errors="replace")

    def rss_kb(self) -> int:
        text = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
        assert match is not None
        return int(match[1])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _read_line(stream: Any, timeout: float) -> bytes:
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"daemon not ready within {timeout} s")
    line: bytes = stream.readline()
    return line


@contextlib.contextmanager
def running_daemon(
    data_dir: Path, socket_path: Path | None = None, **kw: Any
) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(data_dir, socket_path, **kw)
    try:
        yield daemon.wait_ready()
    finally:
        try:
            code = daemon.stop()
        finally:
            daemon.kill()
        assert code == 0, daemon.stderr()


@contextlib.contextmanager
def shared_socket_dir() -> Iterator[Path]:
    """A directory in /tmp that every user may traverse (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="kms-rpc-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def other_uid_python(uid: int) -> list[str]:
    """The command prefix that runs this Python as ``uid`` (root only), or skip."""
    if os.geteuid() != 0:
        pytest.skip("running a client as another uid needs root")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    prefix = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable]
    probe = subprocess.run(
        [*prefix, "-c", "import kmscore.remote"],
        capture_output=True,
        text=True,
        env=dict(os.environ, HOME="/tmp"),
        timeout=60,
    )
    if probe.returncode != 0:
        pytest.skip(f"uid {uid} cannot import kmscore here: {probe.stderr.strip()[-300:]}")
    return prefix


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX = re.compile(r"\b[0-9a-f]{64}\b")


class Normalizer:
    """Makes two runs of one scenario comparable: ids in order of appearance."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _name(self, match: re.Match[str]) -> str:
        return self.names.setdefault(match[0], f"<id{len(self.names)}>")

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, bytes):
            return ("bytes", len(value))
        if isinstance(value, datetime):
            assert value.tzinfo is not None, "naive datetime in a result"
            return "<datetime>"
        if isinstance(value, str):
            return _HEX.sub(self._name, _UUID.sub(self._name, value))
        return value


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def send_signal_later(pid: int, sig: int, delay: float) -> None:
    time.sleep(delay)
    os.kill(pid, sig)
