"""What each agent has in progress, in SQLite (registry.store.AgentActivityStore): running
sessions counted from `session_members` (primary key by role and name) joined to their
aggregate's `outcome`, held tasks from the `tasks_by_holder_agent` index. Both read only the
rows of the agents asked about, so a page of `agents list` costs the same with 10 or 100,000
sessions stored beside it."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from meshwarden.registry.store.records import AgentActivity
from meshwarden.registry.store.sqlite.database import Database

_RUNNING_SESSIONS = (
    "SELECT count(*) FROM session_members m JOIN session_aggregates a ON a.session_id = m.session_id "
    "WHERE m.role = 'agent' AND m.name = ? AND a.outcome = ''"
)
_HELD_TASKS = "SELECT count(*) FROM tasks WHERE holder_agent = ? AND state = ?"


class SqliteAgentActivity:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def in_progress(self, agents: Sequence[str], held: tuple[int, ...]) -> list[AgentActivity]:
        def work(db: sqlite3.Connection) -> list[AgentActivity]:
            return [_of(db, agent, held) for agent in agents]

        return await self._db.read(work)


def _of(db: sqlite3.Connection, agent: str, held: tuple[int, ...]) -> AgentActivity:
    (sessions,) = db.execute(_RUNNING_SESSIONS, (agent,)).fetchone()
    tasks = sum(int(db.execute(_HELD_TASKS, (agent, state)).fetchone()[0]) for state in held)
    return AgentActivity(agent=agent, sessions_running=int(sessions), tasks_in_progress=tasks)
