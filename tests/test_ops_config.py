"""``kms serve --config``: the file, the KMS_* variables over it, the flags over both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmscore.frontends.cli.serve import serve
from kmscore.frontends.ops import logs
from kmscore.frontends.ops.config import ConfigError, env_name, key_name, settings_for
from kmscore.frontends.rpc import server as rpc_server


@pytest.fixture(autouse=True)
def _no_kms_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's own KMS_* variables (KMS_DATA_DIR, say) would outrank the file."""
    import os

    for name in [n for n in os.environ if n.startswith("KMS_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``kms serve`` would run the daemon with (the daemon is not started)."""
    seen: dict[str, Any] = {}

    def run(data_dir: Path, socket_path: Any, socket_mode: int, **kwargs: Any) -> int:
        seen.update(kwargs, data_dir=data_dir, socket_path=socket_path, socket_mode=socket_mode)
        return 0

    monkeypatch.setattr(rpc_server, "run", run)
    monkeypatch.setattr(logs, "configure_logging", lambda fmt, level: seen.update(log=(fmt, level)))
    return seen


def invoke(args: list[str], env: dict[str, str] | None = None) -> click.testing.Result:
    return CliRunner().invoke(serve, args, env=env or {}, catch_exceptions=False)


def test_precedence_flag_over_env_over_file(tmp_path: Path, captured: dict[str, Any]) -> None:
    config = tmp_path / "kms.toml"
    config.write_text(
        f'data-dir = "{tmp_path / "from-file"}"\n'
        "max-connections = 10\n"
        "idle-timeout = 7\n"
        'socket-mode = "group"\n'
    )
    result = invoke(["--config", str(config)])
    assert result.exit_code == 0, result.output
    assert captured["limits"].max_connections == 10
    assert captured["limits"].idle_timeout == 7.0
    assert captured["socket_mode"] == 0o660
    assert captured["data_dir"] == tmp_path / "from-file"

    result = invoke(["--config", str(config)], env={"KMS_MAX_CONNECTIONS": "20"})
    assert result.exit_code == 0, result.output
    assert captured["limits"].max_connections == 20
    assert captured["limits"].idle_timeout == 7.0  # the file's, no variable for it

    result = invoke(
        ["--config", str(config), "--max-connections", "30"], env={"KMS_MAX_CONNECTIONS": "20"}
    )
    assert result.exit_code == 0, result.output
    assert captured["limits"].max_connections == 30
    # The variables work without a file too.
    result = invoke([], env={"KMS_DATA_DIR": str(tmp_path / "from-env"), "KMS_IDLE_TIMEOUT": "3"})
    assert result.exit_code == 0, result.output
    assert captured["data_dir"] == tmp_path / "from-env"
    assert captured["limits"].idle_timeout == 3.0


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('http = "127.0.0.1:8080"\n\nmax-conections = 5\n', 3, "unknown key 'max-conections'"),
        ('max-connections = "many"\n', 1, "max-connections"),
        ("\nmax-connections = 0\n", 2, "0 is not in the range x>=1"),
        ('socket-mode = "world"\n', 1, "'world' is not one of"),
        ("dev = 3\n", 1, "3 is not true or false"),
        ("http = 8080\n", 1, "8080 is not a string"),
        ("[server]\nhttp = '1:2'\n", 1, "is a table"),
        ("workers = 2\nhttp = \n", 2, "not valid TOML"),
    ],
)
def test_a_wrong_file_names_file_line_and_reason(
    tmp_path: Path, captured: dict[str, Any], text: str, line: int, reason: str
) -> None:
    config = tmp_path / "kms.toml"
    config.write_text(text)
    result = invoke(["--config", str(config)])
    assert result.exit_code == 2
    assert f"{config}:{line}:" in result.output
    assert reason in result.output
    assert captured == {}  # nothing started


def test_a_wrong_variable_is_named(captured: dict[str, Any]) -> None:
    result = invoke([], env={"KMS_WORKERS": "none"})
    assert result.exit_code == 2
    assert "$KMS_WORKERS" in result.output
    assert captured == {}


def test_a_missing_file(tmp_path: Path, captured: dict[str, Any]) -> None:
    result = invoke(["--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "cannot read it" in result.output


def test_every_flag_has_a_key_and_a_variable(tmp_path: Path, captured: dict[str, Any]) -> None:
    # Values for the flags without a default (those that need a variable, a
    # PostgreSQL server or a witness are left out).
    samples = {
        "socket_path": str(tmp_path / "k.sock"),
        "http": "127.0.0.1:0",
        "workers": 1,
        "metrics_listen": "127.0.0.1:0",
    }
    lines = []
    for param in serve.params:
        if not isinstance(param, click.Option) or param.name in ("config", "help"):
            continue
        assert env_name(param) == "KMS_" + key_name(param).replace("-", "_").upper()
        default = samples.get(str(param.name), param.default)
        if default is None:
            continue
        if isinstance(default, tuple):  # a repeatable flag: an array
            items = ", ".join(f'"{item}"' for item in default)
            lines.append(f"{key_name(param)} = [{items}]")
        elif isinstance(default, bool):
            lines.append(f"{key_name(param)} = {'true' if default else 'false'}")
        elif isinstance(default, str):
            lines.append(f'{key_name(param)} = "{default}"')
        else:
            lines.append(f"{key_name(param)} = {default}")
    config = tmp_path / "all.toml"
    config.write_text("\n".join(lines) + f'\ndata-dir = "{tmp_path / "d"}"\n')
    result = invoke(["--config", str(config)])
    assert result.exit_code == 0, result.output
    assert len(lines) >= 13
    assert captured["extra_startup"]  # the HTTP endpoint and the metrics address


def test_a_repeatable_flag_takes_an_array_or_a_spaced_variable(
    tmp_path: Path, captured: dict[str, Any]
) -> None:
    ctx = click.Context(serve)
    config = tmp_path / "kms.toml"
    config.write_text('xks-uri-path = ["/kms/xks/v1", "/tenant-b/kms/xks/v1"]\n')
    found = settings_for(serve, ctx, config, {}, skip={"config", "help"})
    assert found["xks_uri_path"] == ("/kms/xks/v1", "/tenant-b/kms/xks/v1")
    found = settings_for(serve, ctx, None, {"KMS_XKS_URI_PATH": "/a/kms/xks/v1 /b"}, skip=set())
    assert found["xks_uri_path"] == ("/a/kms/xks/v1", "/b")
    config.write_text('xks-uri-path = "/kms/xks/v1"\n')
    with pytest.raises(ConfigError, match=r"kms.toml:1: xks-uri-path: .* not a list"):
        settings_for(serve, ctx, config, {}, skip={"config", "help"})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_the_file_parser_never_fails_another_way(text: str) -> None:
    ctx = click.Context(serve)
    path = Path("/nonexistent-kms-config")

    class Fake:
        def read_text(self, encoding: str) -> str:
            return text

        def __str__(self) -> str:
            return str(path)

    try:
        found = settings_for(serve, ctx, Fake(), {}, skip={"config", "help"})  # type: ignore[arg-type]
    except ConfigError as exc:
        assert str(path) in exc.message
    else:
        assert isinstance(found, dict)
