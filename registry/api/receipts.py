"""Receipts' RPCs (meshwarden.v1.Receipts): sidecars ship their chains, operators verify them;
agents report session outcomes and anyone with an SVID or the operator token asks about
sessions and costs (registry.session_queries). Proto in, registry.receipts, proto out.

A sidecar's identity for ShipReceipts is the SVID it presented on the mTLS port; every
receipt of the batch is checked against it (registry.receipt_chain, registry.receipt_sides),
and so is the signature over the chain's head (registry.receipt_signatures).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from meshwarden.registry.api.service import Handler
from meshwarden.registry.authz import current_caller
from meshwarden.registry.errors import Unauthenticated
from meshwarden.registry.receipts import Receipts
from meshwarden.registry.session_queries import SessionQueries
from meshwarden.v1 import receipts_pb2

Context = grpc.aio.ServicerContext[Any, Any]


class ReceiptsApi:
    def __init__(self, receipts: Receipts, sessions: SessionQueries) -> None:
        self._receipts, self._sessions = receipts, sessions

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "ShipReceipts": self.ShipReceipts,
            "VerifyReceipts": self.VerifyReceipts,
            "ReportOutcome": self.ReportOutcome,
            "ListSessions": self.ListSessions,
            "GetSession": self.GetSession,
            "Costs": self.Costs,
        }

    async def ShipReceipts(
        self, request: receipts_pb2.ShipReceiptsRequest, _: Context
    ) -> receipts_pb2.ShipReceiptsResponse:
        identity = current_caller().identity
        if identity is None:  # the table already requires an agent's SVID; this keeps the types honest
            raise Unauthenticated("ShipReceipts needs the SVID of the sidecar whose receipts it ships")
        acknowledged = await self._receipts.ship(identity.spiffe_id, request.receipts, request.head)
        return receipts_pb2.ShipReceiptsResponse(acknowledged_seq=acknowledged)

    async def VerifyReceipts(
        self, request: receipts_pb2.VerifyReceiptsRequest, _: Context
    ) -> receipts_pb2.VerifyReceiptsResponse:
        verdicts = await self._receipts.verify(request.sidecar_instance_id)
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
        self, request: receipts_pb2.ReportOutcomeRequest, _: Context
    ) -> receipts_pb2.ReportOutcomeResponse:
        return await self._sessions.report_outcome(request, current_caller())

    async def ListSessions(
        self, request: receipts_pb2.ListSessionsRequest, _: Context
    ) -> receipts_pb2.ListSessionsResponse:
        return await self._sessions.list_sessions(request, current_caller())

    async def GetSession(self, request: receipts_pb2.GetSessionRequest, _: Context) -> receipts_pb2.GetSessionResponse:
        return await self._sessions.get_session(request, current_caller())

    async def Costs(self, request: receipts_pb2.CostsRequest, _: Context) -> receipts_pb2.CostsResponse:
        return await self._sessions.costs(request, current_caller())
