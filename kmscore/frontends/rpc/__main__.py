"""``python -m kmscore.frontends.rpc``: the daemon without the ``kms`` command.

Prints one JSON line on stdout once listening (socket, data dir, credentials
file, pid, event loop), so scripts and tests can wait for it; ``kms serve``
is the command for people.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from kmscore.service.refusals import RefusalLimits

from ..limits import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, ConnectionLimits
from .server import run


def _mode(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode") from None


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the daemon; returns its exit status."""
    parser = argparse.ArgumentParser(prog="python -m kmscore.frontends.rpc", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--socket", type=Path, default=None)
    parser.add_argument("--socket-mode", type=_mode, default=0o600, help="600, 660 or 666")
    parser.add_argument("--no-audit", action="store_true", help="record nothing (benchmarks)")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT)
    defaults = RefusalLimits()
    parser.add_argument("--refusal-burst", type=int, default=defaults.burst)
    parser.add_argument("--refusal-window", type=float, default=defaults.window)
    args = parser.parse_args(argv)
    try:
        limits = ConnectionLimits(args.max_connections, args.idle_timeout)
        refusal_limits = RefusalLimits(args.refusal_burst, args.refusal_window)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="kmscore-rpc: %(levelname)s %(message)s")

    def ready(info: dict[str, Any]) -> None:
        print(json.dumps(info), flush=True)

    return run(
        args.data_dir,
        args.socket,
        args.socket_mode,
        audit=not args.no_audit,
        ready=ready,
        passphrase=os.environ.get("KMS_PASSPHRASE"),
        limits=limits,
        refusal_limits=refusal_limits,
    )


if __name__ == "__main__":
    sys.exit(main())
