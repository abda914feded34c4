"""Forward an agent's session outcome to the registry (Receipts.ReportOutcome over mTLS, as
this sidecar's SVID), after checking it here so a bad report fails before it leaves.

The registry takes an outcome only from an agent whose sidecar shipped a receipt of the
session, so this sidecar ships what its spool holds first (`flush`): the agent's calls of the
session usually ended a moment ago. Nothing is queued: the agent learns at once whether the
registry holds the outcome, and
retries a RegistryUnavailable itself (a repeat of a stored outcome is refused, so a retry
after an answer that was lost says so rather than storing twice).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from meshwarden import outcomes
from meshwarden.errors import BadPayload, MeshError, OutcomeAlreadyReported, OutcomeRefused, RegistryUnavailable
from meshwarden.sidecar.registry_link import RegistryLink
from meshwarden.v1 import receipts_pb2

TIMEOUT_S = 5.0


class OutcomeReporter:
    def __init__(self, registry: RegistryLink, flush: Callable[[float], Awaitable[None]] | None = None) -> None:
        self._registry, self._flush = registry, flush

    async def report(self, request: receipts_pb2.ReportOutcomeRequest, timeout_s: float | None) -> None:
        found = outcomes.problem(request.session_id, request.outcome, request.detail)
        if found is not None:
            field, what = found
            raise BadPayload(f"outcome report: {field} {what}")
        if self._flush is not None:
            await self._flush(min(timeout_s or TIMEOUT_S, TIMEOUT_S) / 2)
        try:
            # wait_for_ready: a registry connection still in its reconnect backoff (the registry
            # just restarted) is waited for within the timeout, not failed at once with the
            # connection error it last saw.
            await self._registry.receipts_stub().ReportOutcome(
                request, timeout=min(timeout_s or TIMEOUT_S, TIMEOUT_S), wait_for_ready=True
            )
        except grpc.aio.AioRpcError as err:
            raise _translate(err, request.session_id) from err


def _translate(err: grpc.aio.AioRpcError, session_id: str) -> MeshError:
    code, details = err.code(), err.details() or ""
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return OutcomeAlreadyReported(details)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return OutcomeRefused(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BadPayload(f"the registry refused the outcome of session {session_id}: {details}")
    return RegistryUnavailable(
        f"could not report the outcome of session {session_id} to the registry ({code.name}: {details}); "
        "nothing was stored, report it again"
    )
