"""What the native journal writer and its pure-Python twin share."""

from __future__ import annotations

__all__ = ["JournalFull"]


class JournalFull(Exception):
    """The entry does not fit in what is left of the mapping; nothing was written."""
