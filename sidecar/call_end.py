"""How a call ended, told once for every reporting stage (tracing, metrics, receipts).

The three stages around the pipeline each record how a call ended; they classify it here so
that a span, a metric and a receipt of one call always say the same thing: served (OK), a
MeshError (its status code, kind and message), cancelled, or a fault of the sidecar itself
(a bug, which the server's rescue logs with its traceback).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import grpc

from meshwarden.errors import MeshError

__all__ = ["SERVED", "CallEnd", "call_end_of"]


@dataclass(frozen=True, slots=True)
class CallEnd:
    code: grpc.StatusCode
    kind: str  # the error's kind ("policy_denied", ...), "cancelled" or "internal"; "" when served
    message: str  # for people; "" when served
    error: MeshError | None = None  # the typed error, when the call ended with one

    @property
    def served(self) -> bool:
        return self.code is grpc.StatusCode.OK


SERVED: Final = CallEnd(grpc.StatusCode.OK, "", "")
_CANCELLED: Final = CallEnd(grpc.StatusCode.CANCELLED, "cancelled", "the call was cancelled before it ended")
_FAULT: Final = CallEnd(grpc.StatusCode.INTERNAL, "internal", "sidecar fault (see the sidecar's log)")


def call_end_of(exc: BaseException) -> CallEnd:
    """How a call that raised `exc` ended."""
    if isinstance(exc, MeshError):
        return CallEnd(exc.status_code(), exc.kind, exc.message, exc)
    if isinstance(exc, asyncio.CancelledError):
        return _CANCELLED
    return _FAULT
