"""The exceptions targets raise; the CLI's ``main()`` turns them into messages."""

from __future__ import annotations


class TargetError(Exception):
    """Something about a deployment target went wrong (start, health, a request)."""


class TargetStartError(TargetError):
    """A target did not come up healthy; the message carries its log's tail."""


class BundleError(TargetError):
    """A model bundle cannot be found, prepared or loaded."""


class RequestError(Exception):
    """A request a server cannot serve, with the status it answers (400, 413, 415).

    Raised by :mod:`targets.wire.codec` while decoding; every protocol maps ``status`` to
    its own client-error code, so a malformed request never becomes a 500.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
