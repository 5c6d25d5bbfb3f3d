from collections.abc import Callable, Mapping
from typing import Any

class JournalWriter:
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
    ) -> None: ...
    def release(self) -> None: ...
    @property
    def offset(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def digest(self) -> bytes: ...
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
    ) -> int: ...
    def append_service_call(
        self,
        call: Any,
        request: Mapping[str, Any] | None,
        response: Mapping[str, Any] | None,
        error: Any,
        extra: Mapping[str, Any] | None,
    ) -> int: ...
    def append_event(self, event: Any) -> int: ...

class CallRecorder:
    def __init__(
        self,
        journal: Any,
        fallback: Callable[..., None],
        batches: frozenset[str] | set[str] | tuple[str, ...],
        batch_extra: Callable[[str, Any], Any],
    ) -> None: ...
    def record(
        self,
        call: Any,
        request: Mapping[str, Any],
        response: Mapping[str, Any] | None,
        error: Any,
    ) -> None: ...

def prefault_writable(mapping: Any, offset: int, length: int) -> bool: ...
