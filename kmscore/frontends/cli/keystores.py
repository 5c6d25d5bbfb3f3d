"""``kms hsm register`` and ``kms xks credential create``: custom key store setup.

Both open the data dir directly (they change what only its owner may change:
which tokens exist, which users sign XKS requests), so run them with the
daemon stopped or beside it; a running daemon sees the change within 50 ms.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from kmscore.service import KeyService, open_service

from ._common import data_dir_option, echo_json, existing_data_dir, kms_errors

__all__ = ["register"]


def _open(data_dir: Path | None) -> KeyService:
    passphrase = os.environ.get("KMS_PASSPHRASE") or None
    return open_service(existing_data_dir(data_dir), passphrase=passphrase)


@click.group()
def hsm() -> None:
    """PKCS#11 tokens that HSM key stores (AWS_CLOUDHSM) can name."""


@hsm.command("register")
@data_dir_option
@click.option("--module", required=True, help="The PKCS#11 module (the vendor's .so), absolute.")
@click.option("--token-label", required=True, help="The label of the token in that module.")
@click.option(
    "--trust-anchor",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A certificate CreateCustomKeyStore's TrustAnchorCertificate must then match.",
)
@kms_errors
def hsm_register(
    data_dir: Path | None, module: str, token_label: str, trust_anchor: Path | None
) -> None:
    """Register a token; prints the CloudHsmClusterId for CreateCustomKeyStore."""
    from kmscore.service.hsm_clusters import register_cluster

    svc = _open(data_dir)
    try:
        anchor = trust_anchor.read_text() if trust_anchor is not None else None
        cluster = register_cluster(svc.store, module, token_label, anchor)
    finally:
        svc.close()
    echo_json({"CloudHsmClusterId": cluster.cluster_id, "Module": module, "Token": token_label})


@click.group()
def xks() -> None:
    """Kmscore as an external key store proxy (kms serve --xks)."""


@xks.group("credential")
def credential() -> None:
    """The credentials AWS KMS signs XKS proxy requests with."""


@credential.command("create")
@data_dir_option
@click.option("--name", default="xks-proxy", show_default=True, help="The user it belongs to.")
@click.option(
    "--uri-path",
    default="/kms/xks/v1",
    show_default=True,
    help="The XksProxyUriPath kms serve --xks serves.",
)
@kms_errors
def credential_create(data_dir: Path | None, name: str, uri_path: str) -> None:
    """Make a proxy credential; prints the AWS KMS console's XKS configuration file.

    The secret is shown once: keep the output where only you can read it.
    """
    from kmscore.service.xks_proxy import create_proxy_credential

    svc = _open(data_dir)
    try:
        access_key_id, secret = create_proxy_credential(svc, name)
    finally:
        svc.close()
    echo_json(
        {
            "XksProxyUriPath": uri_path,
            "XksProxyAuthenticationCredential": {
                "AccessKeyId": access_key_id,
                "RawSecretAccessKey": secret,
            },
        }
    )


def register(group: click.Group) -> None:
    """Add ``hsm`` and ``xks`` to the ``kms`` group."""
    group.add_command(hsm)
    group.add_command(xks)
