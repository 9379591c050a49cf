"""The provider's errors. Pure."""

from __future__ import annotations


class PublishError(Exception):
    """A message was not published; the task fails."""


class NotAcknowledgedError(PublishError):
    """The broker did not acknowledge the message (in time, or at all)."""


class CredentialRefusedError(PublishError):
    """The broker refused the connection's credential (rotated away, or its grants withdrawn)."""
