"""The data dir's format version, in ``<data-dir>/FORMAT``.

A release that changes what a data dir holds (files, their layout, the
store's schema) raises :data:`DATA_DIR_FORMAT` and knows how to bring every
older data dir up to it. Opening a data dir migrates it: the store runs its
schema migrations (:mod:`kmscore.store.migrations`, numbered), then the
file records the format reached. A data dir of a newer format than this
release reads is refused, never guessed at.

Formats:

1. Every data dir made before the file existed (the store's schema, up to
   migration 4, says the rest).
2. The file exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from kmscore.fsutil import replace_private_file

__all__ = ["DATA_DIR_FORMAT", "FORMAT_FILE", "read_format", "record_format"]

FORMAT_FILE: Final = "FORMAT"
DATA_DIR_FORMAT: Final = 2
_PREFIX: Final = "kmscore data dir format "


def read_format(data_dir: Path) -> int | None:
    """The format a data dir records, 1 for one made before the file, None for a new dir.

    Raises:
        ValueError: the file is not one this release wrote, or it names a
            format newer than :data:`DATA_DIR_FORMAT`.
    """
    path = data_dir / FORMAT_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        made = any((data_dir / name).exists() for name in ("kms.db", "store.url", "root.key"))
        return 1 if made else None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    number = text.removeprefix(_PREFIX)
    if not text.startswith(_PREFIX) or not number.isdigit():
        raise ValueError(f"{path} does not name a data dir format: {text[:40]!r}")
    found = int(number)
    if found > DATA_DIR_FORMAT:
        raise ValueError(
            f"{data_dir} has data dir format {found}, made by a newer kmscore; "
            f"this one reads formats up to {DATA_DIR_FORMAT}"
        )
    return found


def record_format(data_dir: Path, found: int | None) -> None:
    """Record :data:`DATA_DIR_FORMAT` once the dir is migrated (``found``: what it had)."""
    if found != DATA_DIR_FORMAT:
        replace_private_file(data_dir / FORMAT_FILE, f"{_PREFIX}{DATA_DIR_FORMAT}\n".encode())
