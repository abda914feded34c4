"""The one place where the registry's errors become gRPC statuses, for every servicer.

The authorization interceptor (registry.api.authorization) ends every refused or failed call
with `abort`, which sends the status `status_for` picks. Invalid input is INVALID_ARGUMENT
naming the field, no usable identity UNAUTHENTICATED, an identity without the right
PERMISSION_DENIED, an unknown or
expired lease NOT_FOUND, a watcher cut off or a storage failure UNAVAILABLE (clients retry);
anything else is a bug: INTERNAL with a generic message, while the full traceback goes to
the registry's log (a storage failure is logged as its message, which names the database
and the cause: while a database is down every call fails alike). Each refusal is logged
once, with its reason and never a secret. No exception ends the process.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import grpc

from meshwarden import error_status, errors
from meshwarden.registry import task_queue
from meshwarden.registry.errors import (
    Conflict,
    InvalidInput,
    PermissionDenied,
    StoreError,
    Unauthenticated,
    UnknownBundleRevision,
    UnknownControl,
    UnknownInstance,
    UnknownSession,
)
from meshwarden.registry.task_queue import UnknownTask
from meshwarden.registry.watch_hub import WatchEnded
from meshwarden.status_message import fit

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


def status_for(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for an error raised while serving a call."""
    if isinstance(exc, InvalidInput):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, Unauthenticated):
        return grpc.StatusCode.UNAUTHENTICATED, str(exc)
    if isinstance(exc, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED, str(exc)
    if isinstance(exc, Conflict):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, (UnknownInstance, UnknownSession, UnknownControl, UnknownTask, UnknownBundleRevision)):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, WatchEnded):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, StoreError):
        return grpc.StatusCode.UNAVAILABLE, "registry storage failed; retry shortly (details in the registry log)"
    return grpc.StatusCode.INTERNAL, "registry fault; the registry log has the details"


def as_mesh_error(exc: Exception) -> errors.MeshError | None:
    """Task refusals a sidecar relays to its agent, typed on the wire (google.rpc.ErrorInfo)."""
    if isinstance(exc, task_queue.LeaseLost):
        return errors.LeaseLost(str(exc))
    if isinstance(exc, task_queue.InvalidTransition):
        return errors.InvalidTaskTransition(str(exc))
    if isinstance(exc, task_queue.UnknownTask):
        return errors.UnknownTask(str(exc))
    return None


async def abort(context: Context, exc: Exception, rpc: str) -> NoReturn:
    mesh = as_mesh_error(exc)
    if mesh is not None:
        await error_status.abort(context, mesh)
    code, message = status_for(exc)
    if isinstance(exc, WatchEnded):
        log.info("watch stream ended: %s", exc)
    elif code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        log.warning("refused %s from %s (%s): %s", rpc, context.peer(), code.name, message)
    elif isinstance(exc, StoreError):  # says what failed and where; a traceback per call would bury it
        log.error("%s failed: %s", rpc, exc)
    elif code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE):
        log.error("%s failed", rpc, exc_info=exc)
    await context.abort(code, fit(message))
    raise RuntimeError("context.abort returned")  # it always raises; this keeps the types honest
