"""Structured logs: one JSON object a line, with the level and, when known, the request id.

``kms serve --log-format json`` installs :class:`JsonFormatter` on the root
logger. A record's ``request_id`` (``log.info(..., extra={"request_id": r})``)
goes out as its own member. What is logged is the message and the names the
code chose to put in it: kmscore never passes key material, plaintexts,
secrets or request bodies to a logger (the HTTP endpoint's internal-error log
names only the target and the request id), and the formatter drops any
``extra`` member whose name says it is a secret, as the audit scrubber does.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Final

import orjson

__all__ = ["LEVELS", "JsonFormatter", "configure_logging"]

LEVELS: Final = ("debug", "info", "warning", "error")
#: Attributes every LogRecord has: not copied as extra members.
_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_HANDLER_NAME: Final = "kmscore-serve"
_SECRET_WORDS: Final = ("plaintext", "secret", "password", "passphrase", "material", "token")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line."""
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name in _STANDARD or name.startswith("_"):
                continue
            if any(word in name.lower() for word in _SECRET_WORDS):
                continue
            line[name] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure_logging(fmt: str, level: str) -> None:
    """Send the root logger's records to stderr as ``text`` or ``json``, from ``level`` up.

    Raises:
        ValueError: an unknown format or level.
    """
    if fmt not in ("text", "json") or level not in LEVELS:
        raise ValueError(f"log format {fmt!r} / level {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)  # an earlier call's; others' handlers stay
    root.addHandler(handler)
    root.setLevel(level.upper())
