"""What ``kms bench`` calls: the operations, a mix of them, and their keys and inputs.

An operation is written ``Name`` or ``Name:KeySpec`` (``Sign:ECC_NIST_P384``,
``GenerateMac:HMAC_512``); a mix is ``Name=weight,...``
(``GenerateDataKey=1,Decrypt=10``). :func:`prepare` makes the keys and the
inputs once through any client with boto3's method names (LocalKMS,
RemoteKMS, the HTTP client of :mod:`kmscore.bench.http`, moto's backend
through :mod:`kmscore.bench.baselines`), and :func:`calls` binds the
operations to one thread's client.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from kmscore.model.keyspecs import KEY_SPECS, KeySpec, KeyUsage

__all__ = [
    "DEFAULT_SPECS",
    "ENVELOPE_OPERATIONS",
    "KMS_OPERATIONS",
    "Fixtures",
    "Operation",
    "calls",
    "delete_keys",
    "mixed",
    "parse_mix",
    "parse_operation",
    "prepare",
    "schedule",
]

#: The KMS operations ``kms bench`` times, with the key spec each uses by default.
DEFAULT_SPECS: Final[Mapping[str, str]] = {
    "GenerateDataKey": "SYMMETRIC_DEFAULT",
    "Decrypt": "SYMMETRIC_DEFAULT",
    "Encrypt": "SYMMETRIC_DEFAULT",
    "ReEncrypt": "SYMMETRIC_DEFAULT",
    "GenerateDataKeys": "SYMMETRIC_DEFAULT",
    "Sign": "ECC_NIST_P256",
    "Verify": "ECC_NIST_P256",
    "GenerateMac": "HMAC_256",
    "VerifyMac": "HMAC_256",
}
KMS_OPERATIONS: Final = tuple(DEFAULT_SPECS)
#: The envelope target's operations: whole messages in memory, or files.
ENVELOPE_OPERATIONS: Final = ("EncryptStream", "DecryptStream", "EncryptFile", "DecryptFile")

_USAGE: Final = {
    "Sign": KeyUsage.SIGN_VERIFY,
    "Verify": KeyUsage.SIGN_VERIFY,
    "GenerateMac": KeyUsage.GENERATE_VERIFY_MAC,
    "VerifyMac": KeyUsage.GENERATE_VERIFY_MAC,
}
#: Distinct inputs per operation, cycled (each Decrypt opens another ciphertext).
INPUTS: Final = 64
MESSAGE: Final = bytes(range(64))


@dataclass(frozen=True)
class Operation:
    """One operation of a run.

    Attributes:
        name: The AWS operation name (or an envelope operation).
        key_spec: The key spec of its KMS key (None for envelope operations).
        weight: Its share of a mix.
    """

    name: str
    key_spec: str | None
    weight: int = 1

    @property
    def label(self) -> str:
        """``Name`` for the default spec, else ``Name:KeySpec``."""
        if self.key_spec is None or DEFAULT_SPECS.get(self.name) == self.key_spec:
            return self.name
        return f"{self.name}:{self.key_spec}"


def parse_operation(text: str, envelope: bool = False) -> Operation:
    """Parse ``Name`` or ``Name:KeySpec``.

    Raises:
        ValueError: An unknown operation, a key spec kmscore does not know or
            serve, or one that cannot do the operation.
    """
    name, _, spec = text.strip().partition(":")
    known = ENVELOPE_OPERATIONS if envelope else KMS_OPERATIONS
    if name not in known:
        raise ValueError(f"unknown operation {name!r}; one of {', '.join(known)}")
    if envelope:
        if spec:
            raise ValueError(f"{name} takes no key spec")
        return Operation(name, None)
    spec = spec or DEFAULT_SPECS[name]
    try:
        info = KEY_SPECS[KeySpec(spec)]
    except ValueError:
        raise ValueError(f"unknown key spec {spec!r} in {text!r}") from None
    usage = _USAGE.get(name, KeyUsage.ENCRYPT_DECRYPT)
    if not info.supported or usage not in info.algorithms:
        raise ValueError(f"{name} cannot use a {spec} key")
    if usage is KeyUsage.ENCRYPT_DECRYPT and spec != "SYMMETRIC_DEFAULT":
        raise ValueError(f"{name} is timed on SYMMETRIC_DEFAULT keys only")
    return Operation(name, spec)


def parse_mix(text: str, envelope: bool = False) -> list[Operation]:
    """Parse ``Name[:KeySpec]=weight,...`` (a bare name weighs 1).

    Raises:
        ValueError: A bad operation, or a weight that is not a positive integer.
    """
    out: list[Operation] = []
    for part in text.split(","):
        if not part.strip():
            continue
        op, sep, weight = part.partition("=")
        parsed = parse_operation(op, envelope)
        if sep and not (weight.strip().isdigit() and int(weight) > 0):
            raise ValueError(f"weight {weight!r} of {op.strip()} is not a positive integer")
        out.append(Operation(parsed.name, parsed.key_spec, int(weight) if sep else 1))
    if not out:
        raise ValueError("the mix names no operation")
    labels = [o.label for o in out]
    if len(set(labels)) != len(labels):
        raise ValueError("the mix names an operation twice")
    return out


def schedule(operations: Sequence[Operation], seed: int) -> list[int]:
    """Operation indexes in a shuffled order that holds each one ``weight`` times."""
    order = [i for i, op in enumerate(operations) for _ in range(op.weight)]
    random.Random(seed).shuffle(order)  # noqa: S311 - an order, not a secret
    return order


@dataclass
class Fixtures:
    """The keys and inputs of a run, made once per target.

    Attributes:
        keys: KMS key id per key spec (SYMMETRIC_DEFAULT has a second one,
            ``"SYMMETRIC_DEFAULT#2"``, that ReEncrypt moves ciphertexts to).
        inputs: Per operation label, the requests its calls cycle through.
        batch: Data keys per GenerateDataKeys call.
    """

    keys: dict[str, str]
    inputs: dict[str, list[dict[str, Any]]]
    batch: int


def _signing_algorithm(spec: str) -> str:
    info = KEY_SPECS[KeySpec(spec)]
    return str(info.algorithms[KeyUsage.SIGN_VERIFY].signing_algorithms[0].value)


def _mac_algorithm(spec: str) -> str:
    info = KEY_SPECS[KeySpec(spec)]
    return str(info.algorithms[KeyUsage.GENERATE_VERIFY_MAC].mac_algorithms[0].value)


def _key(client: Any, keys: dict[str, str], spec: str, usage: KeyUsage) -> str:
    if spec not in keys:
        request: dict[str, Any] = {"Description": "kms bench", "KeySpec": spec}
        request["KeyUsage"] = usage.value
        keys[spec] = client.create_key(**request)["KeyMetadata"]["KeyId"]
    return keys[spec]


def prepare(
    client: Any,
    operations: Sequence[Operation],
    batch: int = 100,
    keys: dict[str, str] | None = None,
) -> Fixtures:
    """Make the keys and the inputs of ``operations`` through ``client``.

    Args:
        client: Any client with boto3's KMS method names.
        operations: The KMS operations of the run.
        batch: Data keys per GenerateDataKeys call.
        keys: Where the ids of the keys made go, as they are made (so that a
            caller can delete them after a failure too).

    Returns:
        The fixtures.

    Raises:
        KMSError: Or the client's own error, when the KMS refuses a setup call.
    """
    keys = {} if keys is None else keys
    inputs: dict[str, list[dict[str, Any]]] = {}
    contexts = [{"purpose": "kms bench", "request": f"r-{i:03d}"} for i in range(INPUTS)]
    for op in operations:
        spec = op.key_spec or "SYMMETRIC_DEFAULT"
        key = _key(client, keys, spec, _USAGE.get(op.name, KeyUsage.ENCRYPT_DECRYPT))
        reqs: list[dict[str, Any]]
        if op.name == "GenerateDataKey":
            reqs = [{"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": c} for c in contexts]
        elif op.name == "GenerateDataKeys":
            reqs = [
                {"KeyId": key, "KeySpec": "AES_256", "Count": batch, "EncryptionContext": c}
                for c in contexts
            ]
        elif op.name == "Encrypt":
            reqs = [
                {"KeyId": key, "Plaintext": os.urandom(32), "EncryptionContext": c}
                for c in contexts
            ]
        elif op.name in ("Decrypt", "ReEncrypt"):
            reqs = []
            for c in contexts:
                blob = client.encrypt(KeyId=key, Plaintext=os.urandom(32), EncryptionContext=c)
                reqs.append({"CiphertextBlob": blob["CiphertextBlob"], "EncryptionContext": c})
            if op.name == "ReEncrypt":
                second = "SYMMETRIC_DEFAULT#2"
                if second not in keys:
                    keys[second] = client.create_key(Description="kms bench")["KeyMetadata"][
                        "KeyId"
                    ]
                reqs = [
                    {
                        "CiphertextBlob": r["CiphertextBlob"],
                        "SourceEncryptionContext": r["EncryptionContext"],
                        "DestinationKeyId": keys[second],
                        "DestinationEncryptionContext": r["EncryptionContext"],
                    }
                    for r in reqs
                ]
        elif op.name in ("Sign", "Verify"):
            algorithm = _signing_algorithm(spec)
            reqs = [{"KeyId": key, "Message": MESSAGE, "SigningAlgorithm": algorithm}]
            if op.name == "Verify":
                signature = client.sign(**reqs[0])["Signature"]
                reqs = [dict(reqs[0], Signature=signature)]
        else:  # GenerateMac, VerifyMac
            algorithm = _mac_algorithm(spec)
            reqs = [{"KeyId": key, "Message": MESSAGE, "MacAlgorithm": algorithm}]
            if op.name == "VerifyMac":
                mac = client.generate_mac(**reqs[0])["Mac"]
                reqs = [dict(reqs[0], Mac=mac)]
        inputs[op.label] = reqs
    return Fixtures(keys, inputs, batch)


_METHODS: Final = {
    "GenerateDataKey": "generate_data_key",
    "GenerateDataKeys": "generate_data_keys",
    "Encrypt": "encrypt",
    "Decrypt": "decrypt",
    "ReEncrypt": "re_encrypt",
    "Sign": "sign",
    "Verify": "verify",
    "GenerateMac": "generate_mac",
    "VerifyMac": "verify_mac",
}


def delete_keys(client: Any, keys: dict[str, str]) -> None:
    """Schedule the deletion of the keys a run made, in 7 days (AWS's shortest wait).

    Best effort: a key that cannot be scheduled (a KMS without
    ScheduleKeyDeletion, a connection gone) is left. AWS KMS charges nothing for
    a key pending deletion.
    """
    for key in keys.values():
        try:
            client.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
        except Exception:  # noqa: S112 - best effort at exit
            continue


def calls(
    client: Any, operations: Sequence[Operation], fixtures: Fixtures
) -> list[list[Callable[[], object]]]:
    """Per operation, its calls on ``client`` (one per prepared input)."""
    out: list[list[Callable[[], object]]] = []
    for op in operations:
        prepared = getattr(client, "prepared", None)
        if prepared is not None:  # the HTTP client: signed once, replayed
            out.append([prepared(op.name, r) for r in fixtures.inputs[op.label]])
            continue
        method = getattr(client, _METHODS[op.name])
        out.append([functools.partial(method, **r) for r in fixtures.inputs[op.label]])
    return out


def mixed(
    per_operation: Sequence[Sequence[Callable[[], object]]], order: Sequence[int]
) -> list[tuple[int, Callable[[], object]]]:
    """One thread's schedule: the mix order, each step with the next input of its operation."""
    seen = [0] * len(per_operation)
    out: list[tuple[int, Callable[[], object]]] = []
    # Long enough that each operation runs through its inputs at least once.
    fewest = min(order.count(i) for i in set(order))
    rounds = max(1, max(len(c) for c in per_operation) // fewest)
    rounds = max(1, min(rounds, 100_000 // len(order)))
    for _ in range(rounds):
        for index in order:
            choices = per_operation[index]
            out.append((index, choices[seen[index] % len(choices)]))
            seen[index] += 1
    return out
