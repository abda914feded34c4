"""What each agent has in progress, in PostgreSQL (registry.store.AgentActivityStore): the same
two counts as SQLite's (registry.store.sqlite.agent_activity), from `session_members` joined to
the aggregates' `outcome` and from the `tasks_by_holder_agent` index, for the agents asked
about only, in one statement each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from meshwarden.registry.store.postgres.database import Connection, Database
from meshwarden.registry.store.records import AgentActivity

_RUNNING_SESSIONS: Final = (
    "SELECT m.name, count(*) FROM session_aggregates a JOIN session_members m ON m.session_id = a.session_id "
    "AND m.role = 'agent' AND m.name = ANY($1::text[]) WHERE a.outcome = '' GROUP BY m.name"
)
_HELD_TASKS: Final = (
    "SELECT holder_agent, count(*) FROM tasks WHERE holder_agent = ANY($1::text[]) AND state = ANY($2::int[]) "
    "GROUP BY holder_agent"
)


class PostgresAgentActivity:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def in_progress(self, agents: Sequence[str], held: tuple[int, ...]) -> list[AgentActivity]:
        async def work(connection: Connection) -> list[AgentActivity]:
            sessions = dict(await connection.fetch(_RUNNING_SESSIONS, list(agents)))
            tasks = dict(await connection.fetch(_HELD_TASKS, list(agents), list(held)))
            return [
                AgentActivity(
                    agent=agent,
                    sessions_running=int(sessions.get(agent, 0)),
                    tasks_in_progress=int(tasks.get(agent, 0)),
                )
                for agent in agents
            ]

        return await self._db.read(work)
