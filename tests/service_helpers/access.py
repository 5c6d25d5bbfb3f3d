"""Principals, policies and fixtures shared by the access tests.

The admin is the user a new data dir makes for this uid (identity policy
``kms:*``); other users are added with ``principals.add`` and act through
LocalKMS instances of their own. Another instance sees a change within 50 ms,
so tests wait :func:`settle` between a change and a check elsewhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kmscore.client import LocalKMS

ACCOUNT = "111122223333"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"


def user(name: str) -> str:
    """The ARN of a user of the test account."""
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


def settle() -> None:
    """Wait until every other instance on the data dir sees the last change."""
    time.sleep(0.1)


def identity(*actions: str, effect: str = "Allow") -> str:
    """An identity policy with one statement on every resource."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": effect, "Action": list(actions), "Resource": "*"}],
        }
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "kms"


@pytest.fixture
def admin(data_dir: Path) -> Iterator[LocalKMS]:
    with LocalKMS(data_dir, audit=False) as kms:
        yield kms


@pytest.fixture
def as_user(data_dir: Path, admin: LocalKMS) -> Iterator[Callable[..., LocalKMS]]:
    """Add a user (unless ``add=False``; policy: its identity policy), open a client as it."""
    opened: list[LocalKMS] = []

    def make(name: str, policy: str | None = None, *, add: bool = True) -> LocalKMS:
        if add:
            admin.service.principals.add(name, policy=policy)
        client = LocalKMS(data_dir, principal=user(name), audit=False)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()
