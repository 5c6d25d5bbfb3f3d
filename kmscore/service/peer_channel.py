"""The signed message exchange between peered deployments.

A peering message is a JSON object (``From``, ``To``, ``Time``, ``Nonce``,
``Op``, ``Body``) carried in an envelope ``{"Message": ..., "Signature": ...}``
and POSTed to :data:`PEER_PATH` on the peer's KMS endpoint. The sender signs
:data:`_DOMAIN` followed by the message with its Ed25519 identity key; the
answer is signed the same way over :data:`_ANSWER_DOMAIN` and names the
request's nonce, so neither a message nor an answer can be forged, replayed
within :data:`MAX_SKEW`, or moved to another request.

The contract: :meth:`PeerChannel.send` returns a peer's answer body only when
the answer is signed by that peer's registered identity and is for this very
request; :meth:`PeerChannel.authenticate` lets a message through only when it
is signed by the registered sender, addressed to this deployment, fresh, and
not seen before. What the messages mean is :mod:`kmscore.service.peering`'s.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kmscore.crypto.sealing import PeerIdentity, PublicIdentity, verify_signature
from kmscore.errors import (
    AccessDeniedException,
    AlreadyExistsException,
    DependencyTimeoutException,
    KMSInternalException,
)

__all__ = ["BACKOFF", "MAX_SKEW", "PEER_PATH", "Peer", "PeerChannel"]

#: The HTTP path of peering messages on a deployment's KMS endpoint.
PEER_PATH: Final = "/kmscore/peer"
_DOMAIN: Final = b"kmscore peer message v1\n"
_ANSWER_DOMAIN: Final = b"kmscore peer answer v1\n"
#: Messages older or newer than this are refused (and nonces remembered this long).
MAX_SKEW: Final = 300.0
_TIMEOUT: Final = 5.0
#: Seconds the background convergence leaves a peer that did not answer.
BACKOFF: Final = 5.0


@dataclass(frozen=True, slots=True)
class Peer:
    """A registered peer deployment."""

    name: str
    url: str
    identity: PublicIdentity
    regions: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The peer as JSON members."""
        return {
            "Name": self.name,
            "Url": self.url,
            "Regions": list(self.regions),
            **self.identity.to_json(),
        }


def b64(data: bytes) -> str:
    """``data`` in standard base64, as text."""
    return base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes:
    """Strict base64 of a signature; anything malformed becomes b"" (which never verifies)."""
    try:
        return base64.b64decode(text or "", validate=True)
    except ValueError:
        return b""


class PeerChannel:
    """Signing, sending and checking peering messages for one deployment identity."""

    def __init__(self, identity: PeerIdentity) -> None:
        """A channel speaking as ``identity``."""
        self.identity = identity
        self._lock = threading.Lock()
        self._nonces: OrderedDict[str, float] = OrderedDict()
        self._down_until: dict[str, float] = {}

    @property
    def deployment_id(self) -> str:
        """This deployment's id, as messages name it."""
        return self.identity.public.deployment_id

    def post(self, url: str, body: bytes, signature: bytes | None) -> tuple[bytes, str]:
        """POST one envelope to the deployment at ``url``; its answer's message and signature.

        Raises:
            AlreadyExistsException: the peer refused with AlreadyExistsException.
            AccessDeniedException: the peer refused with AccessDeniedException.
            KMSInternalException: any other refusal.
            DependencyTimeoutException: ``url`` does not answer.
        """
        envelope: dict[str, str] = {"Message": body.decode()}
        if signature is not None:
            envelope["Signature"] = b64(signature)
        request = urllib.request.Request(  # noqa: S310 - a peer's http(s) URL
            url.rstrip("/") + PEER_PATH,
            data=json.dumps(envelope).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:  # noqa: S310
                answer = json.loads(response.read())
                return str(answer["Message"]).encode(), str(answer.get("Signature", ""))
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode(errors="replace")
            try:
                parsed = json.loads(detail)
            except ValueError:
                parsed = {}
            if parsed.get("__type") == "AlreadyExistsException":
                raise AlreadyExistsException(parsed.get("message", detail)) from None
            if parsed.get("__type") == "AccessDeniedException":
                raise AccessDeniedException(parsed.get("message", detail)) from None
            raise KMSInternalException(f"The peer at {url} refused: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise DependencyTimeoutException(f"The peer at {url} does not answer: {exc}") from None

    def send(
        self, peer: Peer, op: str, body: Mapping[str, Any], *, patient: bool = True
    ) -> dict[str, Any]:
        """Send one signed message to ``peer`` and check its signed answer.

        A peer that did not answer is not asked again for :data:`BACKOFF`
        seconds unless ``patient`` (the background convergence is not; a
        caller's own request is), so a partition does not slow the calls
        each side keeps serving.

        Raises:
            DependencyTimeoutException: the peer does not answer (a partition).
            AccessDeniedException: its answer is not signed by its registered key.
            KMSError: the peer's refusal.
        """
        if not patient and self._down_until.get(peer.name, 0.0) > time.monotonic():
            raise DependencyTimeoutException(f"The peer {peer.name} did not answer lately.")
        nonce = os.urandom(16).hex()
        message = json.dumps(
            {
                "From": self.deployment_id,
                "To": peer.identity.deployment_id,
                "Time": time.time(),
                "Nonce": nonce,
                "Op": op,
                "Body": body,
            }
        ).encode()
        try:
            data, signature = self.post(peer.url, message, self.identity.sign(_DOMAIN + message))
        except DependencyTimeoutException:
            self._down_until[peer.name] = time.monotonic() + BACKOFF
            raise
        self._down_until.pop(peer.name, None)
        if not verify_signature(
            peer.identity.identity_pub, _unb64(signature), _ANSWER_DOMAIN + data
        ):
            raise AccessDeniedException(
                f"The answer from peer {peer.name} is not signed by its registered "
                "identity: refused."
            )
        answer = json.loads(data)
        if answer.get("Nonce") != nonce or answer.get("To") != self.deployment_id:
            raise AccessDeniedException(
                f"The answer from peer {peer.name} is not for this request."
            )
        result: dict[str, Any] = answer["Body"]
        return result

    def authenticate(
        self, sender: Peer | None, message: Mapping[str, Any], body: bytes, signature: str | None
    ) -> Peer:
        """Let ``message`` (``body`` parsed) through only from ``sender``, fresh and once.

        Raises:
            AccessDeniedException: an unregistered sender, a bad signature,
                another addressee, a stale time, or a replay.
        """
        if sender is None:
            raise AccessDeniedException("The sender is not a registered peer of this deployment.")
        if not verify_signature(sender.identity.identity_pub, _unb64(signature), _DOMAIN + body):
            raise AccessDeniedException(
                f"The message is not signed by peer {sender.name}'s registered identity: refused."
            )
        if message.get("To") != self.deployment_id:
            raise AccessDeniedException("The message is for another deployment.")
        now = time.time()
        sent = float(message.get("Time", 0))
        if abs(now - sent) > MAX_SKEW:
            raise AccessDeniedException("The message is too old or too new.")
        nonce = str(message.get("Nonce"))
        with self._lock:
            while self._nonces and next(iter(self._nonces.values())) < now - 2 * MAX_SKEW:
                self._nonces.popitem(last=False)
            if nonce in self._nonces:
                raise AccessDeniedException("The message was seen before (a replay): refused.")
            self._nonces[nonce] = now
        return sender

    def answer(self, peer: Peer, nonce: str, out: Mapping[str, Any]) -> tuple[bytes, str]:
        """The signed answer to ``peer``'s request ``nonce``: its message and signature."""
        message = json.dumps(
            {
                "From": self.deployment_id,
                "To": peer.identity.deployment_id,
                "Nonce": nonce,
                "Time": time.time(),
                "Body": out,
            }
        ).encode()
        return message, b64(self.identity.sign(_ANSWER_DOMAIN + message))
