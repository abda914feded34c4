"""What each agent has in progress, for `meshwarden agents list` (the operator's question 1):
the running sessions it took part in and the tasks its instances hold, counted by the store
(registry.store.AgentActivityStore defines both) for the agents of one page of the listing."""

from __future__ import annotations

from typing import Final

from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.store import AgentActivityStore
from meshwarden.registry.task_queue import HELD
from meshwarden.registry.validation import validate_agent_name
from meshwarden.v1 import session_insights_pb2

MAX_AGENTS: Final = 10_000  # as many as a page of ListInstances holds instances


class AgentActivities:
    def __init__(self, store: AgentActivityStore) -> None:
        self._store = store

    async def list(
        self, request: session_insights_pb2.ListAgentActivityRequest
    ) -> session_insights_pb2.ListAgentActivityResponse:
        if len(request.agents) > MAX_AGENTS:
            raise InvalidInput("agents", f"names {len(request.agents)} agents; at most {MAX_AGENTS} at once")
        for index, agent in enumerate(request.agents):
            validate_agent_name(agent, f"agents[{index}]")
        found = await self._store.in_progress(list(request.agents), HELD)
        return session_insights_pb2.ListAgentActivityResponse(
            agents=[
                session_insights_pb2.AgentActivity(
                    agent=a.agent, sessions_running=a.sessions_running, tasks_in_progress=a.tasks_in_progress
                )
                for a in found
            ]
        )
