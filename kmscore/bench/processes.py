"""``--processes N``: the target's load from N worker processes, past the GIL.

Each worker (started with ``spawn``, so it shares nothing with this process
but its arguments) opens its own client: a LocalKMS on the same data dir
(processes share a data dir, each with its own audit journal), a RemoteKMS on
the socket, or an HTTP client on the endpoint. It makes its own keys and
inputs, then waits for turns. For each turn this process sends every worker
the same command, the workers run it with :mod:`kmscore.bench.timing`, and
their slices are merged into one: latencies and errors added up, the wall
time the longest of theirs, the CPU time the sum.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from kmscore.bench.operations import Operation, calls, delete_keys, mixed, prepare, schedule
from kmscore.bench.timing import Slice, closed_loop, open_loop

__all__ = ["ClientSpec", "WorkerPool"]


@dataclass(frozen=True)
class ClientSpec:
    """How a worker reaches the KMS.

    Attributes:
        kind: ``library``, ``socket`` or ``http``.
        where: The data dir, socket path or endpoint URL.
        audit: LocalKMS with its audit trail (library).
        region: The signing region (http).
        credentials: Access key, secret and token (http).
    """

    kind: str
    where: str
    audit: bool = True
    region: str = "us-east-1"
    credentials: tuple[str, str, str | None] | None = None


def _client(spec: ClientSpec, threads: int) -> list[Any]:
    if spec.kind == "library":
        from kmscore.client.local import LocalKMS

        return [LocalKMS(spec.where, audit=spec.audit)] * threads
    if spec.kind == "socket":
        from kmscore.client.remote import RemoteKMS

        return [RemoteKMS(spec.where, timeout=30)] * threads
    from kmscore.bench.http import HttpKMS

    assert spec.credentials is not None
    return [HttpKMS(spec.where, spec.region, *spec.credentials) for _ in range(threads)]


def _worker(
    conn: Connection,
    spec: ClientSpec,
    operations: Sequence[Operation],
    threads: int,
    batch: int,
    seed: int,
) -> None:
    """A worker process: set up, say ready, then run each turn it is sent."""
    keys: dict[str, str] = {}
    clients: list[Any] = []
    try:
        clients = _client(spec, threads)
        fixtures = prepare(clients[0], operations, batch, keys)
        order = schedule(operations, seed)
        schedules = [mixed(calls(c, operations, fixtures), order) for c in clients]
    except Exception as exc:
        if clients:
            delete_keys(clients[0], keys)
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    n = len(operations)
    while True:
        command = conn.recv()
        if command is None:
            break
        seconds, requests, rate = command
        if rate is None:
            part = closed_loop(schedules, n, seconds=seconds, requests=requests)
        else:
            part = open_loop(schedules, n, rate, seconds=seconds, requests=requests)
        conn.send(("slice", part))
    delete_keys(clients[0], keys)
    for client in {id(c): c for c in clients}.values():
        client.close()


class WorkerPool:
    """N worker processes running the same contender.

    Raises:
        RuntimeError: A worker could not set up (the message says why).
    """

    def __init__(
        self,
        processes: int,
        spec: ClientSpec,
        operations: Sequence[Operation],
        threads: int,
        batch: int,
        seed: int,
    ) -> None:
        """Start the workers and wait until each has its keys and inputs."""
        context = multiprocessing.get_context("spawn")
        self.processes = processes
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for k in range(processes):
            mine, theirs = context.Pipe()
            proc = context.Process(
                target=_worker,
                args=(theirs, spec, list(operations), threads, batch, seed + k),
                daemon=True,
            )
            proc.start()
            theirs.close()
            self._conns.append(mine)
            self._procs.append(proc)
        for conn in self._conns:
            kind, detail = conn.recv()
            if kind != "ready":
                self.close()
                raise RuntimeError(f"a worker process could not start: {detail}")

    @property
    def pids(self) -> list[int]:
        """The workers' process ids."""
        return [p.pid for p in self._procs]

    def turn(self, seconds: float | None, requests: int | None, rate: float | None) -> Slice:
        """One turn in every worker at once (requests and rate split among them)."""
        n = self.processes
        share = None if requests is None else max(1, requests // n)
        for k, conn in enumerate(self._conns):
            mine = share
            if requests is not None and k == n - 1:
                mine = requests - (share or 0) * (n - 1)
            conn.send((seconds, mine, None if rate is None else rate / n))
        parts: list[Slice] = [conn.recv()[1] for conn in self._conns]
        merged = Slice([[] for _ in parts[0].latencies], [[] for _ in parts[0].service_times])
        for part in parts:
            for i, values in enumerate(part.latencies):
                merged.latencies[i] += values
            for i, values in enumerate(part.service_times):
                merged.service_times[i] += values
            merged.errors.update(part.errors)
            merged.completions.update(part.completions)
            merged.cpu += part.cpu
            merged.elapsed = max(merged.elapsed, part.elapsed)
        return merged

    def close(self) -> None:
        """Stop the workers."""
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
