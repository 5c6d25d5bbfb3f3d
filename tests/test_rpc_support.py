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
import traceback
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
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        args = [sys.executable, "-m", "kmscore.frontends.rpc", "--data-dir", str(data_dir)]
        if socket_path is not None:
            args += ["--socket", str(socket_path)]
        args += ["--socket-mode", f"{mode:o}"]
        if not audit:
            args.append("--no-audit")
        args += extra_args or []
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


def _setpriv_prefix(uid: int) -> list[str] | None:
    """``setpriv ... python`` as ``uid``, if that uid can import kmscore with it."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable]
    probe = subprocess.run(
        [*prefix, "-c", "import kmscore.client.remote"],
        capture_output=True,
        env=dict(os.environ, HOME="/tmp"),
        timeout=60,
    )
    return prefix if probe.returncode == 0 else None


def run_as_uid(uid: int, source: str, argv: list[str]) -> tuple[int, str, str]:
    """Run Python ``source`` as another user; returns (status, stdout, stderr).

    With ``setpriv --reuid --regid --clear-groups`` when that user can read
    this interpreter and kmscore (not here: they live under a 0700 /root), else
    in a forked child that drops to the uid and gid (and no groups) before it
    runs ``source`` with the modules this process already imported. Either
    way the kernel records the client's uid at ``connect()``, which is what
    SO_PEERCRED reports. Needs root; skips otherwise.
    """
    if os.geteuid() != 0:
        pytest.skip("running a client as another uid needs root")
    prefix = _setpriv_prefix(uid)
    if prefix is not None:
        proc = subprocess.run(
            [*prefix, "-c", source, *argv],
            capture_output=True,
            text=True,
            env=dict(os.environ, HOME="/tmp"),
            timeout=60,
        )
        return proc.returncode, proc.stdout, proc.stderr
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its pipes
        status = 1
        try:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            sys.argv = ["-c", *argv]
            exec(compile(source, "<client>", "exec"), {"__name__": "__main__"})
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err:
        stdout, stderr = out.read(), err.read()
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status), stdout.decode(), stderr.decode()


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
