"""The ``kms`` command: the KMS for people.

Every subcommand takes ``--data-dir`` (default ``$KMS_DATA_DIR``, then
``~/.local/share/kmscore``) and prints tables, or the AWS-shaped JSON with
``--json``. Failures exit non-zero with the AWS error code and message.
"""

from .main import cli, main

__all__ = ["cli", "main"]
