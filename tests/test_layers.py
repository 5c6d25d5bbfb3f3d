"""The socket clients stand apart from the server: importing them loads no engine or store."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SERVER_PACKAGES = ("kmscore.engine", "kmscore.store", "kmscore.service", "kmscore.operations")


@pytest.mark.parametrize("module", ["kmscore.client.remote", "kmscore.client.aio"])
def test_the_socket_clients_load_none_of_the_server(module: str) -> None:
    probe = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    assert module in loaded
    server = [m for m in loaded if m.startswith(SERVER_PACKAGES) or m in {"sqlite3", "nacl"}]
    assert server == []


def test_the_in_process_client_does_load_the_server() -> None:
    # The probe above can fail: LocalKMS needs the engine and the store.
    probe = "import json, sys, kmscore.client.local; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    assert "kmscore.engine" in loaded and "kmscore.store" in loaded
