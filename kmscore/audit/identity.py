"""The caller of an audited call, as CloudTrail's ``userIdentity`` names it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a call, as CloudTrail's ``userIdentity`` names it.

    Attributes:
        type: ``"IAMUser"``, ``"AssumedRole"``, ``"Root"``, ...
        principal_id: The principal's unique id.
        arn: The principal's ARN, e.g. ``arn:aws:iam::111122223333:user/alice``.
        account_id: The principal's account.
        access_key_id: The access key that signed the request, or None when the
            caller was identified otherwise (Unix peer credentials, in-process).
        user_name: The friendly user name, or None.
    """

    type: str
    principal_id: str
    arn: str
    account_id: str
    access_key_id: str | None = None
    user_name: str | None = None

    def to_event(self) -> dict[str, str]:
        """The identity as CloudTrail's ``userIdentity`` object."""
        out = {
            "type": self.type,
            "principalId": self.principal_id,
            "arn": self.arn,
            "accountId": self.account_id,
        }
        if self.access_key_id is not None:
            out["accessKeyId"] = self.access_key_id
        if self.user_name is not None:
            out["userName"] = self.user_name
        return out
