"""The systemd unit (checked by systemd-analyze where it exists) and sd_notify."""

from __future__ import annotations

import configparser
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from test_cli_serve import _wait_ready

from kmscore.frontends.ops.notify import notify

DEPLOY = Path(__file__).parent.parent / "deploy"
UNIT = DEPLOY / "kmscore.service"
KMS = shutil.which("kms")
ANALYZE = shutil.which("systemd-analyze")


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_the_unit_is_notify_sandboxed_and_runs_as_its_own_user() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert service["User"] == "kmscore" and service["Group"] == "kmscore"
    for directive, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "StateDirectoryMode": "0700",
        "UMask": "0077",
    }.items():
        assert service[directive] == value, directive
    assert "kms serve --config" in service["ExecStart"]
    assert "kmscore" in (DEPLOY / "kmscore.sysusers.conf").read_text()


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.skipif(ANALYZE is None or KMS is None, reason="no systemd-analyze or kms here")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # ExecStart must name an executable that exists on this machine.
    unit = tmp_path / "kmscore.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/kms", str(KMS)))
    done = _verify(unit)
    complaints = [line for line in done.stderr.splitlines() if str(unit) in line]
    assert done.returncode == 0 and not complaints, done.stderr
    # The check can fail: a misspelt directive is reported.
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    assert "NoNewPrivilege" in _verify(broken).stderr


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    return sock, path


def test_notify_sends_to_the_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False  # not under systemd: nothing sent
    sock, path = _notify_socket(tmp_path)
    with sock:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert notify("STATUS=x") is True
        assert sock.recv(4096) == b"STATUS=x"


@pytest.mark.skipif(KMS is None, reason="the kms console script is not installed")
def test_kms_serve_says_ready_and_stopping(tmp_path: Path) -> None:
    sock, path = _notify_socket(tmp_path)
    import os

    env = {**os.environ, "NOTIFY_SOCKET": path}
    with sock:
        proc = subprocess.Popen(
            [str(KMS), "serve", "--data-dir", str(tmp_path / "data")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            _wait_ready(proc)
            ready = sock.recv(4096).decode()
            assert "READY=1" in ready.splitlines()
            assert f"MAINPID={proc.pid}" in ready.splitlines()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert sock.recv(4096) == b"STOPPING=1"
