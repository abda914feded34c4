"""The gRPC face of receipts (meshwarden.v1.Receipts): sidecars ship their chains, operators
verify them; agents report session outcomes and anyone with an SVID or the operator token asks
about sessions and costs (registry.session_queries). Proto in, registry.receipt_store or registry.receipt_verification, proto out;
errors become statuses in registry.rescue, and who may call what is registry.authz's table.

A sidecar's identity for ShipReceipts is the SVID it presented on the mTLS port; the store
checks every receipt of the batch against it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import grpc

from meshwarden.clock import SystemClock
from meshwarden.registry import receipt_verification
from meshwarden.registry.authz import Authorizer, Caller, method
from meshwarden.registry.errors import Unauthenticated
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.receipt_store import ReceiptStore
from meshwarden.registry.rescue import abort, serve_unary, serve_unary_async
from meshwarden.registry.session_queries import SessionQueries
from meshwarden.v1 import receipts_pb2, receipts_pb2_grpc

SERVICE_NAME: Final[str] = receipts_pb2.DESCRIPTOR.services_by_name["Receipts"].full_name
SHIP_RECEIPTS: Final = method(SERVICE_NAME, "ShipReceipts")
VERIFY_RECEIPTS: Final = method(SERVICE_NAME, "VerifyReceipts")
REPORT_OUTCOME: Final = method(SERVICE_NAME, "ReportOutcome")
LIST_SESSIONS: Final = method(SERVICE_NAME, "ListSessions")
GET_SESSION: Final = method(SERVICE_NAME, "GetSession")
COSTS: Final = method(SERVICE_NAME, "Costs")

Context = grpc.aio.ServicerContext[Any, Any]


class ReceiptsService(receipts_pb2_grpc.ReceiptsServicer):
    def __init__(self, receipts: ReceiptStore, authorizer: Authorizer, sessions: SessionQueries | None = None) -> None:
        self._receipts, self._authorizer = receipts, authorizer
        # registry.app passes the one built with its clock; tests of shipping need none.
        clock = SystemClock()
        self._sessions = sessions or SessionQueries(receipts, Outcomes(receipts.store, clock), clock)

    async def ShipReceipts(
        self, request: receipts_pb2.ShipReceiptsRequest, context: Context
    ) -> receipts_pb2.ShipReceiptsResponse:
        return await serve_unary(SHIP_RECEIPTS, self._ship, request, context, self._authorizer)

    async def VerifyReceipts(
        self, request: receipts_pb2.VerifyReceiptsRequest, context: Context
    ) -> receipts_pb2.VerifyReceiptsResponse:
        try:
            self._authorizer.check(VERIFY_RECEIPTS, self._authorizer.caller(context))
            path = self._receipts.store.path
            verdicts = await asyncio.to_thread(
                receipt_verification.verify, path, self._receipts.trust_bundle_pem, request.sidecar_instance_id
            )
        except Exception as exc:  # noqa: BLE001 -- the rescue of an async handler: the error becomes a status
            await abort(context, exc, VERIFY_RECEIPTS)
        return receipts_pb2.VerifyReceiptsResponse(
            intact=all(v.intact for v in verdicts),
            chains=[
                receipts_pb2.ChainVerdict(
                    sidecar_instance_id=v.sidecar_instance_id, receipts=v.receipts, intact=v.intact, problem=v.problem
                )
                for v in verdicts
            ],
        )

    async def ReportOutcome(
        self, request: receipts_pb2.ReportOutcomeRequest, context: Context
    ) -> receipts_pb2.ReportOutcomeResponse:
        return await serve_unary(REPORT_OUTCOME, self._sessions.report_outcome, request, context, self._authorizer)

    async def ListSessions(
        self, request: receipts_pb2.ListSessionsRequest, context: Context
    ) -> receipts_pb2.ListSessionsResponse:
        return await serve_unary_async(LIST_SESSIONS, self._sessions.list_sessions, request, context, self._authorizer)

    async def GetSession(
        self, request: receipts_pb2.GetSessionRequest, context: Context
    ) -> receipts_pb2.GetSessionResponse:
        return await serve_unary(GET_SESSION, self._sessions.get_session, request, context, self._authorizer)

    async def Costs(self, request: receipts_pb2.CostsRequest, context: Context) -> receipts_pb2.CostsResponse:
        return await serve_unary_async(COSTS, self._sessions.costs, request, context, self._authorizer)

    def _ship(self, request: receipts_pb2.ShipReceiptsRequest, caller: Caller) -> receipts_pb2.ShipReceiptsResponse:
        if caller.identity is None:  # the table already requires an agent's SVID; this keeps the types honest
            raise Unauthenticated("ShipReceipts needs the SVID of the sidecar whose receipts it ships")
        acknowledged = self._receipts.ship(caller.identity.spiffe_id, request.receipts, request.head)
        return receipts_pb2.ShipReceiptsResponse(acknowledged_seq=acknowledged)
