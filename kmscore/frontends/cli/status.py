"""``kms status``: a running server's liveness and readiness, for a person."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

import click

__all__ = ["register"]


def _get(url: str) -> tuple[int, Any]:
    """GET ``url``: the status and the JSON body (None when it is not JSON)."""
    request = urllib.request.Request(url, method="GET")  # noqa: S310 - the operator's own URL
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


@click.command()
@click.option(
    "--url",
    default=lambda: os.environ.get("KMS_STATUS_URL", "http://127.0.0.1:4599"),
    show_default="$KMS_STATUS_URL, else http://127.0.0.1:4599",
    help="The HTTP endpoint, or the --metrics address, of the server.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the answers as JSON.")
def status(url: str, as_json: bool) -> None:
    """Print whether the server is live (/health) and ready (/ready); exit 1 unless ready."""
    base = url.rstrip("/")
    try:
        live_status, _ = _get(base + "/health")
        ready_status, ready = _get(base + "/ready")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if as_json:
            click.echo(json.dumps({"live": False, "ready": False, "error": str(reason)}))
        else:
            click.echo(f"live:  no ({base} does not answer: {reason})")
            click.echo("ready: no")
        raise SystemExit(1) from None
    is_live = live_status == 200
    is_ready = ready_status == 200
    checks = (ready or {}).get("checks", {}) if isinstance(ready, dict) else {}
    if as_json:
        click.echo(json.dumps({"live": is_live, "ready": is_ready, "checks": checks}))
    else:
        click.echo(f"live:  {'yes' if is_live else f'no (HTTP {live_status})'}")
        click.echo(f"ready: {'yes' if is_ready else f'no (HTTP {ready_status})'}")
        for name, value in checks.items():
            click.echo(f"  {name}: {value}")
    if not is_ready:
        raise SystemExit(1)


def register(group: click.Group) -> None:
    """Add ``status`` to the ``kms`` group."""
    group.add_command(status)
