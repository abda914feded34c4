"""The one place where exceptions become gRPC statuses, for every sidecar endpoint.

A MeshError becomes its own status and message, with its kind and data as structured status
details (meshwarden.error_status). Anything
else is a bug: it is logged in full and the client learns only that the sidecar failed.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc

from meshwarden import error_status
from meshwarden.errors import MeshError
from meshwarden.status_message import fit

log = logging.getLogger(__name__)


async def abort_with(context: grpc.aio.ServicerContext[object, object], err: MeshError) -> NoReturn:
    await error_status.abort(context, err)


async def abort_unexpected(context: grpc.aio.ServicerContext[object, object], what: str, call_id: str) -> NoReturn:
    log.exception("unexpected failure in %s (call %s)", what, call_id)
    await context.abort(grpc.StatusCode.INTERNAL, fit(f"sidecar fault in {what}; report call id {call_id}"))
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover
