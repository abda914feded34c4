"""Why a sidecar did not start, or stopped on its own: errors that end `meshwarden sidecar run`."""

from __future__ import annotations


class StartError(RuntimeError):
    """The sidecar cannot start as configured; the message says why and what to do."""


class BackgroundFailure(RuntimeError):
    """A background task the sidecar cannot run without failed; the log has its traceback."""
