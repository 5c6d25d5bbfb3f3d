"""How a data directory's trail is signed and exported: ``<data_dir>/audit.json``.

Every process that writes a trail must sign it the same way, or the chain of
checkpoint signatures forks (and a witness refuses the fork). So the choice is
made once and kept in the data directory: ``audit.json`` (0600) holds the
witness's socket and its public key, pinned at first contact, and the export
sink. Every later open (the daemon, the ``kms`` command, ``LocalKMS``) reads it.
Removing the file goes back to the local key: an auditor who verifies with the
witness key sees the first checkpoint the witness did not sign.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any, Final

from nacl.signing import VerifyKey

from kmscore import fsutil
from kmscore.audit import _format as fmt
from kmscore.audit.export import CheckpointExport, parse_export
from kmscore.audit.trail import AuditTrail
from kmscore.audit.witness import CheckpointSigner, WitnessClient, WitnessError
from kmscore.errors import KMSInternalException

__all__ = ["AUDIT_CONFIG_FILE", "audit_config", "new_node_id", "open_service_trail"]

AUDIT_CONFIG_FILE: Final = "audit.json"


def audit_config(data_dir: Path) -> dict[str, Any]:
    """The data directory's audit settings ({} when there are none).

    Raises:
        KMSInternalException: The file is unsafe or not the settings' JSON.
    """
    path = data_dir / AUDIT_CONFIG_FILE
    try:
        fd = fsutil.open_private_file(path, os.O_RDONLY)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise KMSInternalException(f"cannot read {path}: {exc}") from exc
    try:
        config = json.loads(os.read(fd, 1 << 16))
    except ValueError:
        config = None
    finally:
        os.close(fd)
    if not isinstance(config, dict):
        raise KMSInternalException(f"{path} is not a JSON object")
    return config


def new_node_id() -> str:
    """``$KMS_NODE_ID``, else this host's name and four random hex digits."""
    return os.environ.get("KMS_NODE_ID") or f"{socket.gethostname()}-{secrets.token_hex(2)}"


def _save(data_dir: Path, config: dict[str, Any]) -> None:
    text = json.dumps(config, indent=1, sort_keys=True).encode() + b"\n"
    fsutil.replace_private_file(data_dir / AUDIT_CONFIG_FILE, text)


def open_service_trail(
    data_dir: str | os.PathLike[str],
    *,
    witness: str | None = None,
    export: str | None = None,
    **trail_options: Any,
) -> AuditTrail:
    """Open the data directory's trail with its signer and export sink.

    Args:
        data_dir: The data directory.
        witness: A witness socket to sign checkpoints from now on (saved in
            ``audit.json``); None to use the saved one, if any.
        export: An export sink (``file:<path>``, ``syslog``) to use from now on
            (saved); None for the saved one, if any.
        **trail_options: Passed to :meth:`AuditTrail.open`.

    Returns:
        The open trail.

    Raises:
        KMSInternalException: The witness is unreachable or holds another key
            than the pinned one, the sink cannot be opened, or the trail cannot.
    """
    data = Path(data_dir)
    try:
        fsutil.ensure_private_dir(data)
    except OSError as exc:
        raise KMSInternalException(f"cannot create the data directory: {exc}") from exc
    config = audit_config(data)
    changed = False
    if not config.get("node"):
        # The id this trail goes by when a fleet's trails are read together.
        config["node"] = new_node_id()
        changed = True
    if witness is not None and (config.get("witness") or {}).get("socket") != witness:
        # A new socket keeps the pinned key: another witness is refused.
        config["witness"] = {**(config.get("witness") or {}), "socket": witness}
        changed = True
    if export is not None and config.get("export") != export:
        config["export"] = export
        changed = True
    signer: CheckpointSigner | None = None
    sink: CheckpointExport | None = None
    try:
        if config.get("witness"):
            entry = config["witness"]
            pinned = entry.get("public_key")
            local = data / fmt.PUBLIC_KEY_FILE
            also = None
            if local.exists():
                from kmscore.audit.keys import load_public_key

                also = load_public_key(data)
            client = WitnessClient(
                entry["socket"],
                public_key=VerifyKey(bytes.fromhex(pinned)) if pinned else None,
                also_accept=also,
            )
            if not pinned:
                entry["public_key"] = client.public_key.encode().hex()
                changed = True
            signer = client
        if config.get("export"):
            sink = parse_export(str(config["export"]))
        if changed:
            _save(data, config)
    except (WitnessError, OSError, ValueError) as exc:
        raise KMSInternalException(f"cannot set up audit signing or export: {exc}") from exc
    return AuditTrail.open(data, signer=signer, export=sink, **trail_options)
