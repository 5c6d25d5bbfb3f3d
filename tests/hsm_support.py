"""SoftHSM2 for the HSM key store tests: one configuration per test process.

A PKCS#11 module reads its configuration once, at C_Initialize, so every
test of a process shares one SoftHSM2 token directory (made here, under the
session's temporary directory) and makes its own tokens in it, each under a
fresh label. Debian's ``softhsm2`` package provides the module and
``softhsm2-util``; CI installs it (.ci/run). Without it the tests are
skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)
SO_PIN = "87654321"
PIN = "hsm-user-pin-1"


def softhsm_module() -> str:
    """The SoftHSM2 module's path; skips (fails under CI) when it is missing."""
    for path in MODULE_CANDIDATES:
        if os.path.exists(path) and shutil.which("softhsm2-util"):
            return path
    if os.environ.get("CI"):
        pytest.fail("SoftHSM2 is not installed (apt-get install softhsm2; .ci/run does it)")
    pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")


_CONF_DIR: Path | None = None
#: Tokens made before the module was loaded: SoftHSM2 lists its tokens when
#: the module is initialized, so a token made later is not seen by this
#: process (nor one deleted later missed).
_POOL: list[str] = []
POOL_SIZE = 24
#: The label of a token that was made and deleted again: no slot holds it.
REMOVED_TOKEN = "t-removed"


def _init_token(conf: Path, label: str, pin: str) -> None:
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label,
         "--so-pin", SO_PIN, "--pin", pin],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )  # fmt: skip


def softhsm_conf() -> Path:
    """This process's SoftHSM2 configuration and tokens (made once, SOFTHSM2_CONF set).

    Call it before anything loads the module in this process.
    """
    global _CONF_DIR
    if _CONF_DIR is None:
        softhsm_module()
        _CONF_DIR = Path(tempfile.mkdtemp(prefix="kmscore-softhsm-"))
        (_CONF_DIR / "tokens").mkdir()
        conf = _CONF_DIR / "softhsm2.conf"
        conf.write_text(
            f"directories.tokendir = {_CONF_DIR / 'tokens'}\n"
            "objectstore.backend = file\nlog.level = ERROR\n"
        )
        os.environ["SOFTHSM2_CONF"] = str(conf)
        for _ in range(POOL_SIZE):
            label = "t-" + uuid.uuid4().hex[:12]
            _init_token(conf, label, PIN)
            _POOL.append(label)
        _init_token(conf, REMOVED_TOKEN, PIN)
        subprocess.run(
            ["softhsm2-util", "--delete-token", "--token", REMOVED_TOKEN],
            check=True,
            capture_output=True,
            env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        )
    return _CONF_DIR / "softhsm2.conf"


def new_token() -> str:
    """A fresh token (user PIN :data:`PIN`) nobody has used; its label."""
    softhsm_conf()
    if not _POOL:
        raise RuntimeError("hsm_support: the token pool is used up; raise POOL_SIZE")
    return _POOL.pop()


def custom_key_store_calls(service: Callable[[], Any]) -> dict[str, Callable[[Any], Any]]:
    """One working boto3 call per custom key store operation (test_awsjson_boto3's table).

    ``service`` gives the endpoint's key service, where the clusters are
    registered. Only ConnectCustomKeyStore needs a real token.
    """
    from kmscore.service.hsm_clusters import register_cluster

    def create(kms: Any, label: str | None = None) -> Any:
        module = softhsm_module() if label is not None else MODULE_CANDIDATES[0]
        cluster = register_cluster(service().store, module, label or "no-such-token")
        return kms.create_custom_key_store(
            CustomKeyStoreName="s-" + uuid.uuid4().hex,
            CloudHsmClusterId=cluster.cluster_id,
            TrustAnchorCertificate="certificate",
            KeyStorePassword=PIN,
        )

    def store(kms: Any, label: str | None = None) -> str:
        return str(create(kms, label)["CustomKeyStoreId"])

    def connect(kms: Any) -> Any:
        return kms.connect_custom_key_store(CustomKeyStoreId=store(kms, new_token()))

    return {
        "CreateCustomKeyStore": create,
        "ConnectCustomKeyStore": connect,
        "DisconnectCustomKeyStore": lambda kms: kms.disconnect_custom_key_store(
            CustomKeyStoreId=store(kms)
        ),
        "DescribeCustomKeyStores": lambda kms: kms.describe_custom_key_stores(
            CustomKeyStoreId=store(kms)
        ),
        "UpdateCustomKeyStore": lambda kms: kms.update_custom_key_store(
            CustomKeyStoreId=store(kms), NewCustomKeyStoreName="n-" + uuid.uuid4().hex
        ),
        "DeleteCustomKeyStore": lambda kms: kms.delete_custom_key_store(
            CustomKeyStoreId=store(kms)
        ),
    }
