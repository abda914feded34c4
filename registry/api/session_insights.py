"""The SessionInsights service's RPCs (ListSuspectSessions, ListChanges): operators' questions
7 and 10, answered by registry.session_suspects and registry.change_queries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from meshwarden.registry.api.service import Handler
from meshwarden.registry.change_queries import ChangeQueries
from meshwarden.registry.session_suspects import SessionSuspects
from meshwarden.v1 import session_insights_pb2

Context = grpc.aio.ServicerContext[Any, Any]


class SessionInsightsApi:
    def __init__(self, suspects: SessionSuspects, changes: ChangeQueries) -> None:
        self._suspects, self._changes = suspects, changes

    def handlers(self) -> Mapping[str, Handler]:
        return {"ListSuspectSessions": self.ListSuspectSessions, "ListChanges": self.ListChanges}

    async def ListSuspectSessions(
        self, request: session_insights_pb2.ListSuspectSessionsRequest, _: Context
    ) -> session_insights_pb2.ListSuspectSessionsResponse:
        return await self._suspects.list(request)

    async def ListChanges(
        self, request: session_insights_pb2.ListChangesRequest, _: Context
    ) -> session_insights_pb2.ListChangesResponse:
        return await self._changes.list(request)
