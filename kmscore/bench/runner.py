"""Running contenders in interleaved rounds, with a live display.

Every contender first runs a warm-up that is thrown away. Then the run is cut
into rounds; in each round every contender takes one turn (in an order
shuffled per round), so a burst of load from another process on a shared
machine falls on all of them alike and their ratios stay steady. Each
contender's figures are the sum of its turns.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kmscore.bench.results import Figures
from kmscore.bench.targets import Contender
from kmscore.bench.timing import Latency, Slice, closed_loop, open_loop, pipelined, server_cpu

__all__ = ["Load", "run"]


@dataclass(frozen=True)
class Load:
    """The load shape.

    Attributes:
        seconds: Timed seconds per contender (None: ``requests`` decides).
        requests: Or calls per contender.
        rate: Open loop at this many calls per second (None: closed loop).
        rounds: Turns per contender.
        warmup: Seconds of warm-up per contender, not timed.
        seed: Shuffles the mix and the turn order.
    """

    seconds: float | None
    requests: int | None
    rate: float | None
    rounds: int
    warmup: float
    seed: int


def _turn(
    contender: Contender,
    load: Load,
    seconds: float | None,
    requests: int | None,
    tick: Callable[[float, Slice], None] | None,
) -> Slice:
    n = len(contender.operations)
    if contender.pool is not None:
        rate = load.rate if contender.role == "target" else None
        return contender.pool.turn(seconds, requests, rate)  # type: ignore[no-any-return]
    if contender.pipeline is not None:
        connect, build, inflight = contender.pipeline
        return pipelined(connect, build, inflight, n, seconds=seconds, requests=requests, tick=tick)
    if load.rate is not None and contender.role == "target":
        return open_loop(
            contender.schedules, n, load.rate, seconds=seconds, requests=requests, tick=tick
        )
    return closed_loop(contender.schedules, n, seconds=seconds, requests=requests, tick=tick)


def run(
    contenders: Sequence[Contender],
    load: Load,
    live: Any | None = None,
) -> list[Figures]:
    """Warm up, then run every contender's turns, interleaved; return their figures.

    Baselines always run closed loop (their rate is the comparison); with
    ``load.rate`` the target runs open loop.

    Args:
        contenders: The target first, then the baselines.
        load: The load shape.
        live: A :class:`kmscore.bench.display.LiveView` (or None: silent).
    """
    figures = [Figures(c) for c in contenders]
    rng = random.Random(load.seed)  # noqa: S311 - an order, not a secret
    per_turn_s = load.seconds / load.rounds if load.seconds is not None else None
    per_turn_n = None
    if load.requests is not None:
        per_turn_n = max(1, load.requests // load.rounds)
    warm_n = None if load.seconds is not None else max(1, (per_turn_n or 1) // 10)
    for c in contenders:
        if (load.warmup > 0 or warm_n) and c.pool is not None:
            c.pool.turn(load.warmup or None, warm_n, None)
        elif load.warmup > 0 or warm_n:
            closed_loop(
                c.schedules, len(c.operations), seconds=load.warmup or None, requests=warm_n
            )
        if live is not None:
            live.warmed(c.name)
    begin = time.perf_counter()
    for r in range(load.rounds):
        order = list(range(len(contenders)))
        rng.shuffle(order)
        for i in order:
            c, f = contenders[i], figures[i]
            requests = per_turn_n
            if requests is not None and r == load.rounds - 1:
                requests = load.requests - per_turn_n * (load.rounds - 1)  # type: ignore[operator]
            cpu = server_cpu(c.server_pid)
            before = cpu() if cpu else None
            started = time.perf_counter() - begin
            tick = None if live is None else (lambda s, part, f=f: live.tick(f, part, s))
            part = _turn(c, load, per_turn_s, requests, tick)
            used = cpu() - before if cpu and before is not None else None
            f.add(part, started, used)
            if live is not None:
                live.turn_done(f)
    return figures


def merged(latencies: Sequence[Latency]) -> Latency:
    """One histogram of several."""
    out = Latency()
    for h in latencies:
        out.add(h)
    return out
