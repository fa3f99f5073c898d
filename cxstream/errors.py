"""The exception tree: what an operator or a producer must act on."""

from __future__ import annotations

__all__ = ["ConfigError", "CxStreamError", "InvalidEvent"]


class CxStreamError(Exception):
    """Base of every error cxstream raises on purpose."""


class InvalidEvent(CxStreamError):
    """An event (or a message) that SPEC section 5 rejects.

    `reason` is one of the dead-letter reasons (`missing_field`, `bad_type`, ...);
    the message names the field, what was expected and what arrived.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ConfigError(CxStreamError):
    """A configuration value that cannot be used; the message names the key."""
