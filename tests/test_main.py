"""``python -m kmscore``: the README's start command checks engine and service."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def _run(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KMSCORE_PUREPYTHON"}
    return subprocess.run(
        [sys.executable, "-m", "kmscore", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_start_command_initializes_and_round_trips(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = _run(data_dir)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "engine backend: native" in first.stdout
    assert "GenerateDataKey/Decrypt round trip: ok" in first.stdout
    assert (data_dir / "kms.db").exists() and (data_dir / "credentials").exists()
    assert oct((data_dir).stat().st_mode & 0o777) == "0o700"
    key_arn = re.search(r"^key: (\S+)", first.stdout, re.M)
    assert key_arn is not None

    second = _run(data_dir)
    assert second.returncode == 0, second.stdout + second.stderr
    # The self-check key is made once and found again by its alias.
    assert f"key: {key_arn.group(1)}" in second.stdout
    assert "keys in this data dir: 1" in second.stdout


def test_start_command_fails_on_a_wrong_root_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert _run(data_dir).returncode == 0
    root_key = data_dir / "root.key"
    root_key.write_bytes(os.urandom(32))
    broken = _run(data_dir)
    assert broken.returncode != 0
    assert "root key does not match" in (broken.stdout + broken.stderr)
