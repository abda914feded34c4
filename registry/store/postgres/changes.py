"""How replicas learn of each other's changes: the tables are the truth, a notification a hint.

Every change that watchers see bumps a counter in `meta` (catalog, controls, routes) or adds a
row (`policy_bundles`), and calls `notify` in the same transaction: PostgreSQL delivers the
notification only if the transaction commits, after it did. A replica's feed LISTENs on one
connection of its own; `wait` returns on a notification or after `timeout_s`, whichever
comes first, and the follower (registry.replicas) then reads `positions` and catches up from
the tables. So a lost notification (the listening connection dropped, the server restarted)
costs at most one polling period and loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from meshwarden.registry.errors import StoreError
from meshwarden.registry.store.postgres.database import DATABASE_ERRORS, Connection, Database
from meshwarden.registry.store.records import Positions

log = logging.getLogger(__name__)

CHANNEL: Final = "meshwarden_changes"


async def notify(connection: Connection) -> None:
    """Wakes every replica's feed once this transaction commits (several calls: one wake-up)."""
    await connection.execute(f"NOTIFY {CHANNEL}")


class PostgresChangeFeed:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._woken = asyncio.Event()
        self._listener: Connection | None = None

    async def positions(self) -> Positions:
        async def work(connection: Connection) -> Positions:
            counters = dict(await connection.fetch("SELECT key, value FROM meta"))
            bundles = await connection.fetchval("SELECT COALESCE(MAX(revision), 0) FROM policy_bundles")
            return Positions(
                catalog=int(counters["revision"]),
                controls=int(counters["controls_revision"]),
                routes=int(counters["routes_revision"]),
                bundles=int(bundles),
                budgets=int(counters.get("budgets_revision", 0)),
                approvals=int(counters.get("approvals_revision", 0)),
            )

        return await self._db.read(work)

    async def wait(self, timeout_s: float) -> None:
        """Returns on a notification, or after `timeout_s`; (re)connects the listener first
        when it is down, and never raises for a database that is down (the caller's next
        read will say so)."""
        if self._listener is None or self._listener.is_closed():
            await self._listen()
        try:
            await asyncio.wait_for(self._woken.wait(), timeout_s)
        except TimeoutError:
            pass
        self._woken.clear()

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            try:
                await asyncio.wait_for(listener.close(), 2.0)
            except DATABASE_ERRORS:
                listener.terminate()

    async def _listen(self) -> None:
        try:
            listener = await self._db.connection()
            await listener.add_listener(CHANNEL, self._on_notification)
        except (StoreError, *DATABASE_ERRORS) as exc:
            log.warning("cannot listen for other replicas' changes yet (%s); polling meanwhile", exc)
            return
        self._listener = listener
        self._woken.set()  # changes may have been missed while not listening: look now

    def _on_notification(self, *_: object) -> None:
        self._woken.set()
