"""Who is calling: the record a frontend makes once it has identified the caller."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Caller"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as the frontend established it.

    Attributes:
        arn: The principal's ARN (``arn:aws:iam::<account>:root`` or a user).
        account: The principal's account.
        principal_id: CloudTrail's ``principalId``.
        kind: CloudTrail's ``userIdentity.type`` (``Root``, ``IAMUser``).
        access_key_id: The access key used, if any.
        source: ``sourceIPAddress``: an IP, or ``unix:<pid>`` / ``local:<pid>``.
        user_agent: The client's user agent.
        secure_transport: ``aws:SecureTransport``: False only for plain HTTP.
    """

    arn: str
    account: str
    principal_id: str
    kind: str = "Root"
    access_key_id: str | None = None
    source: str = "local"
    user_agent: str = "kmscore"
    secure_transport: bool = True
