"""``kms serve --config FILE``: every flag of ``kms serve`` in a TOML file, under the environment.

Precedence, highest first: a flag on the command line, the environment
variable ``KMS_<FLAG>`` (``--max-connections`` is ``KMS_MAX_CONNECTIONS``),
the file's key (the flag's name without its dashes: ``max-connections =
4096``), the flag's default. The file is flat: one key per flag, no tables.

Every key and value is checked before anything starts: an unknown key, a
value of the wrong type or out of range stops start-up with the file, the
line and the reason (:class:`ConfigError`). A wrong environment variable
names the variable.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import click

__all__ = ["ENV_PREFIX", "ConfigError", "env_name", "key_name", "settings_for"]

ENV_PREFIX: Final = "KMS_"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})
_LINE_COLUMN: Final = re.compile(r"\(at line (\d+), column \d+\)")


class ConfigError(click.UsageError):
    """A setting that stops start-up: where it is and what is wrong."""


def key_name(param: click.Parameter) -> str:
    """The file key of a flag: its long name without the dashes."""
    assert isinstance(param, click.Option)
    long = [opt for opt in param.opts if opt.startswith("--")]
    return long[0][2:] if long else str(param.name)


def env_name(param: click.Parameter) -> str:
    """The environment variable of a flag (``KMS_MAX_CONNECTIONS``)."""
    return ENV_PREFIX + key_name(param).replace("-", "_").upper()


def _line_of(text: str, key: str, table: bool = False) -> int:
    name = rf"(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')"
    pattern = re.compile(rf"^\s*\[+\s*{name}\s*\]" if table else rf"^\s*{name}\s*=")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number
    return 0


def _convert(param: click.Option, value: Any, ctx: click.Context, *, from_env: bool = False) -> Any:
    """``value`` checked against the flag's type (raises click.BadParameter)."""
    if param.multiple and not param.is_flag:
        # A repeatable flag: an array in the file, whitespace-separated in a variable.
        items = value.split() if from_env and isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise click.BadParameter(f"{value!r} is not a list of values")
        single = copy.copy(param)
        single.multiple = False
        return tuple(_convert(single, item, ctx) for item in items)
    if param.is_flag and not param.multiple:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise click.BadParameter(f"{value!r} is not true or false")
    if isinstance(value, bool) or isinstance(value, dict | list):
        raise click.BadParameter(f"{value!r} is not a {param.type.name}")
    if isinstance(param.type, click.types.StringParamType | click.Choice | click.Path):
        if not isinstance(value, str):
            raise click.BadParameter(f"{value!r} is not a string")
    if isinstance(param.type, click.types.FloatParamType) and isinstance(value, int):
        value = float(value)
    return param.type.convert(value, param, ctx)


def _options(command: click.Command, skip: set[str]) -> dict[str, click.Option]:
    found: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in skip and not param.hidden:
            found[key_name(param)] = param
    return found


def settings_for(
    command: click.Command,
    ctx: click.Context,
    config: Path | None,
    environ: Mapping[str, str],
    *,
    skip: set[str],
) -> dict[str, Any]:
    """The defaults a command runs with: its config file's, then the environment's over them.

    Args:
        command: The command whose flags the file and variables set.
        ctx: Its context (for click's type conversions).
        config: The TOML file, or None.
        environ: The environment.
        skip: Parameter names neither may set (``config`` itself, ``help``).

    Returns:
        Parameter name -> value, for ``ctx.default_map``: the flags on the
        command line still win.

    Raises:
        ConfigError: the file cannot be read or parsed, or names an unknown
            key or a wrong value; or a variable holds a wrong value.
    """
    options = _options(command, skip)
    values: dict[str, Any] = {}
    if config is not None:
        try:
            text = config.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config}: cannot read it: {exc}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            found = _LINE_COLUMN.search(str(exc))
            where = f"{config}:{found.group(1)}" if found else str(config)
            reason = _LINE_COLUMN.sub("", str(exc)).strip()
            raise ConfigError(f"{where}: not valid TOML: {reason}") from None
        for key, value in data.items():
            line = _line_of(text, key, table=isinstance(value, dict | list))
            where = f"{config}:{line}" if line else str(config)
            param = options.get(key)
            if param is None:
                if isinstance(value, dict):
                    reason = f"[{key}] is a table; the settings are top-level keys"
                else:
                    reason = f"unknown key {key!r}; the keys are: {', '.join(sorted(options))}"
                raise ConfigError(f"{where}: {reason}")
            try:
                values[str(param.name)] = _convert(param, value, ctx)
            except click.BadParameter as exc:
                raise ConfigError(f"{where}: {key}: {exc.message}") from None
    for param in options.values():
        name = env_name(param)
        if name in environ:
            try:
                values[str(param.name)] = _convert(param, environ[name], ctx, from_env=True)
            except click.BadParameter as exc:
                raise ConfigError(f"${name}: {exc.message}") from None
    return values
