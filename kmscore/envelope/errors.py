"""Errors of envelope encryption.

Every failure to read a message is an :class:`EnvelopeError`; the subclass says
why. None of them carries plaintext or key material.
"""

from __future__ import annotations


class EnvelopeError(Exception):
    """An envelope message could not be written or read."""


class MessageFormatError(EnvelopeError):
    """The message is malformed or truncated, or uses a feature not supported."""


class AuthenticationError(EnvelopeError):
    """A tag, the key commitment or the signature did not verify."""


class KeyUnavailableError(EnvelopeError):
    """No encrypted data key of the message could be decrypted."""


class ContextMismatchError(EnvelopeError):
    """The message's encryption context lacks a pair the caller required."""


class PolicyError(EnvelopeError):
    """The message uses an algorithm suite or format the caller did not allow."""
