"""The pure-Python twin of the native journal writer (``KMSCORE_PUREPYTHON=1``).

Same entries, same chain, same scrubbing rule as :mod:`kmscore.engine._journal`;
the MessagePack bytes may differ in their integer and map-head widths, which no
reader depends on. Use :mod:`kmscore.engine.journal`, not this module.
"""

from __future__ import annotations

import errno
import hashlib
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]

from kmscore.engine._journal_base import JournalFull

__all__ = ["CallRecorder", "JournalWriter", "prefault_writable"]

_ENTRY_HEAD: Final = 24
_DIGEST_LEN: Final = 16
_MAX_DEPTH: Final = 32
_SECRET, _CONTEXT, _OTHER = 0, 1, 2
_DEFINE, _CALL, _EVENT = 0, 1, 2
_HEAD: Final = struct.Struct("<II")
_COUNT: Final = struct.Struct("<Q")
_ID_LEN, _ID_PREFIX = 36, 24
_MADV_POPULATE_WRITE: Final = 23
_PAGE: Final = 4096


def _check(value: Any, depth: int) -> None:
    """Refuse what the native writer refuses: unknown types, deep nesting."""
    if depth > _MAX_DEPTH:
        raise ValueError("a journaled value is nested too deeply")
    if value is None or type(value) in (bool, str, int, float, bytes):
        if type(value) is int and value < -(2**63):
            raise OverflowError("an integer below -2**63 cannot be journaled")
        return
    if type(value) in (list, tuple):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check(k, depth + 1)
            _check(v, depth + 1)
        return
    if isinstance(value, (str, int)):
        return
    raise TypeError(f"cannot journal a {type(value).__name__}")


class JournalWriter:
    """Appends entries to one journal mapping; see the native writer."""

    def __init__(
        self,
        mapping: Any,
        offset: int,
        seq: int,
        digest: bytes,
        count_at: int,
        classify: Callable[[str], int],
        scrub: Callable[[str, Any], Any],
        drop: object,
        describe: Callable[[Any], Any],
    ) -> None:
        if len(digest) != _DIGEST_LEN:
            raise ValueError("a journal digest is 16 bytes")
        self._outer: memoryview | None = memoryview(mapping)
        self._view: memoryview | None = self._outer.cast("B")
        if self._view.readonly:
            raise TypeError("a journal mapping must be writable")
        self._capacity = len(self._view)
        if offset % 8 or offset > self._capacity or count_at + 8 > offset:
            raise ValueError("a journal offset is past the header and 8-aligned")
        self._offset = offset
        self._seq = seq
        self._digest = digest
        self._count_at = count_at
        self._refs: dict[Any, int] = {}
        self._kinds: dict[str, int] = {}
        self._classify = classify
        self._scrub = scrub
        self._drop = drop
        self._describe = describe

    def release(self) -> None:
        """Let go of the mapping."""
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._outer is not None:
            self._outer.release()
            self._outer = None
        self._capacity = 0

    @property
    def offset(self) -> int:
        """Where the next entry goes."""
        return self._offset

    @property
    def seq(self) -> int:
        """The seq the next entry gets (entries so far)."""
        return self._seq

    @property
    def digest(self) -> bytes:
        return self._digest

    def _commit(self, body: bytes) -> None:
        view = self._view
        if view is None:
            raise JournalFull()  # released: the owner rolls to a new file
        total = (_ENTRY_HEAD + len(body) + 7) & ~7
        if self._offset + total + 8 > self._capacity or len(body) > 0x7FFFFFFF:
            raise JournalFull()
        digest = hashlib.sha256(self._digest + _COUNT.pack(self._seq) + body).digest()[:16]
        at = self._offset
        end = at + _ENTRY_HEAD + len(body)
        view[at + 4 : at + 8] = struct.pack("<I", self._seq & 0xFFFFFFFF)
        view[at + 8 : at + _ENTRY_HEAD] = digest
        view[at + _ENTRY_HEAD : end] = body
        view[end : at + total] = bytes(at + total - end)
        view[at : at + 4] = struct.pack("<I", len(body))  # the commit word last
        self._digest = digest
        self._offset += total
        self._seq += 1
        view[self._count_at : self._count_at + 8] = _COUNT.pack(self._seq)

    def _pack(self, value: Any) -> bytes:
        _check(value, 0)
        return bytes(msgpack.packb(value, use_bin_type=True, unicode_errors="surrogatepass"))

    def _ref(self, key: Any, value: Any = None) -> int:
        found = self._refs.get(key)
        if found is not None:
            return found
        number = len(self._refs)
        self._commit(self._pack([_DEFINE, key if value is None else value]))
        self._refs[key] = number
        return number

    def _section(self, members: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if members is None:
            return None
        if not isinstance(members, Mapping):
            clean = self._scrub("", members)
            return None if clean is self._drop else clean
        out: dict[str, Any] = {}
        for key, item in dict(members).items():
            if type(key) is not str:
                continue
            kind = self._kinds.get(key)
            if kind is None:
                kind = self._kinds[key] = self._classify(key)
            if kind == _SECRET:
                continue
            if kind == _CONTEXT and type(item) is dict:
                if all(type(k) is str and type(v) is str for k, v in item.items()):
                    out[key] = dict(item)
                    continue
            elif kind == _OTHER and (item is None or type(item) in (bool, str, int)):
                out[key] = item
                continue
            clean = self._scrub(key, item)
            if clean is not self._drop:
                out[key] = clean
        return out

    def append_call(
        self,
        time_ns: int,
        operation: str,
        request_id: str,
        caller: Any,
        region: str,
        account: str,
        resources: list[str],
        read_only: bool,
        error_code: str | None,
        error_message: str | None,
        request: Mapping[str, Any] | None,
        response: Mapping[str, Any] | None,
        extra: Mapping[str, Any] | None,
    ) -> int:
        """Record one call; returns the entry's seq.

        Raises:
            JournalFull: it does not fit (nothing of the call was written).
            TypeError, ValueError: a value that cannot be journaled.
        """
        op_ref = self._ref(operation)
        caller_ref = self._ref(caller, None if caller in self._refs else self._describe(caller))
        region_ref = self._ref(region)
        account_ref = self._ref(account)
        resource_refs = [self._ref(arn) for arn in resources]
        journaled_id: str | list[Any] = request_id
        if len(request_id) == _ID_LEN and request_id.isascii():
            journaled_id = [self._ref(request_id[:_ID_PREFIX]), request_id[_ID_PREFIX:]]
        body = self._pack(
            [
                _CALL,
                time_ns,
                op_ref,
                journaled_id,
                caller_ref,
                region_ref,
                account_ref,
                resource_refs,
                bool(read_only),
                error_code,
                error_message,
                self._section(request),
                self._section(response),
                self._section(extra),
            ]
        )
        self._commit(body)
        return self._seq - 1

    def append_service_call(
        self,
        call: Any,
        request: Mapping[str, Any] | None,
        response: Mapping[str, Any] | None,
        error: Any,
        extra: Mapping[str, Any] | None,
    ) -> int:
        """Record a service ``Call``; see the native writer.

        Raises:
            JournalFull, TypeError, ValueError: as :meth:`append_call`.
        """
        read_only = call.read_only
        return self.append_call(
            time.time_ns(),
            call.operation,
            call.request_id,
            call.caller,
            call.service.region,
            call.service.account,
            call.resources,
            read_only,
            None if error is None else error.code,
            None if error is None else error.message,
            request,
            None if read_only or not response else response,
            extra,
        )

    def append_event(self, event: Any) -> int:
        """Record one whole event, already scrubbed; returns its seq.

        Raises:
            JournalFull: it does not fit.
            TypeError, ValueError: a value that cannot be journaled.
        """
        self._commit(self._pack([_EVENT, event]))
        return self._seq - 1


class CallRecorder:
    """The auditor's hot path; see the native ``CallRecorder``."""

    def __init__(
        self,
        journal: Any,
        fallback: Callable[..., None],
        batches: frozenset[str] | set[str] | tuple[str, ...],
        batch_extra: Callable[[str, Any], Any],
    ) -> None:
        self._journal = journal
        self._fallback = fallback
        self._batches = frozenset(batches)
        self._batch_extra = batch_extra
        self._writer: JournalWriter | None = None

    def record(
        self,
        call: Any,
        request: Mapping[str, Any],
        response: Mapping[str, Any] | None,
        error: Any,
    ) -> None:
        """Record one service call before returning.

        Raises:
            KMSInternalException: from ``fallback``: it could not be recorded.
            TypeError, ValueError: a value that cannot be journaled.
        """
        extra = call.additional_event_data
        if extra is None and call.operation in self._batches:
            extra = self._batch_extra(call.operation, request)
        writer = self._writer
        if writer is not None:
            try:
                writer.append_service_call(call, request, response, error, extra)
                return
            except JournalFull:
                pass
        self._fallback(call, request, response, error, extra)
        current = self._journal.writer
        self._writer = current if isinstance(current, JournalWriter) else None


def prefault_writable(mapping: Any, offset: int, length: int) -> bool:
    """Fault part of a shared mapping in, writable; see the native one.

    Raises:
        ValueError: the range is not inside the mapping.
        OSError: the kernel refused for another reason.
    """
    size = len(mapping)
    if offset < 0 or length < 0 or offset + length > size:
        raise ValueError("the range is not inside the mapping")
    start = offset & ~(_PAGE - 1)
    end = min((offset + length + _PAGE - 1) & ~(_PAGE - 1), size & ~(_PAGE - 1))
    if end <= start:
        return True
    try:
        mapping.madvise(_MADV_POPULATE_WRITE, start, end - start)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    return True
