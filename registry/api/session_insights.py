"""The SessionInsights service's RPCs (ListSuspectSessions, ListChanges, ListAgentActivity):
operators' questions 7, 10 and 1, answered by registry.session_suspects, registry.change_queries
and registry.agent_activity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from meshwarden.registry.agent_activity import AgentActivities
from meshwarden.registry.api.service import Handler
from meshwarden.registry.change_queries import ChangeQueries
from meshwarden.registry.session_suspects import SessionSuspects
from meshwarden.v1 import session_insights_pb2

Context = grpc.aio.ServicerContext[Any, Any]


class SessionInsightsApi:
    def __init__(self, suspects: SessionSuspects, changes: ChangeQueries, activities: AgentActivities) -> None:
        self._suspects, self._changes, self._activities = suspects, changes, activities

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "ListSuspectSessions": self.ListSuspectSessions,
            "ListChanges": self.ListChanges,
            "ListAgentActivity": self.ListAgentActivity,
        }

    async def ListSuspectSessions(
        self, request: session_insights_pb2.ListSuspectSessionsRequest, _: Context
    ) -> session_insights_pb2.ListSuspectSessionsResponse:
        return await self._suspects.list(request)

    async def ListChanges(
        self, request: session_insights_pb2.ListChangesRequest, _: Context
    ) -> session_insights_pb2.ListChangesResponse:
        return await self._changes.list(request)

    async def ListAgentActivity(
        self, request: session_insights_pb2.ListAgentActivityRequest, _: Context
    ) -> session_insights_pb2.ListAgentActivityResponse:
        return await self._activities.list(request)
