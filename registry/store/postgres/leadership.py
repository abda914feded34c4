"""Which replica does the work that must run once (lease expiry, kill-switch expiry, budget
periods, task lease expiry): the one holding a PostgreSQL session-level advisory lock.

The lock lives as long as the connection that took it. A replica killed -9 or cut off loses
its connection, the server releases the lock, and another replica's next try (every
`poll_s`) takes it: the work moves within seconds. The connection asks the server to probe
it with TCP keepalives every few seconds, so a holder whose host vanished without closing its
socket is noticed in about ten seconds rather than the kernel's two hours. The holder checks
its connection as often: a holder cut off from the database stops its work at once, so two
replicas never do it together for longer than that check.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import asyncpg

from meshwarden.registry.errors import StoreError
from meshwarden.registry.store.postgres.database import CONNECT_TIMEOUT_S, DATABASE_ERRORS, Connection, Database

log = logging.getLogger(__name__)

SINGLETON_LOCK: Final = 7_400_002
# The server's keepalive probes on the lock's connection: idle 3 s, then every 2 s, 3 misses.
_KEEPALIVES: Final = {"tcp_keepalives_idle": "3", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3"}


class PostgresLeadership:
    def __init__(self, db: Database, *, poll_s: float = 1.0) -> None:
        self._db, self._poll_s = db, poll_s
        self._connection: Connection | None = None

    async def acquire(self) -> None:
        """Returns once this replica holds the lock (trying every `poll_s`, through outages)."""
        while True:
            try:
                if self._connection is None or self._connection.is_closed():
                    self._connection = await asyncpg.connect(
                        self._db.url or None, timeout=CONNECT_TIMEOUT_S, server_settings=_KEEPALIVES
                    )
                if await self._connection.fetchval("SELECT pg_try_advisory_lock($1)", SINGLETON_LOCK):
                    return
            except DATABASE_ERRORS as exc:
                log.debug("cannot try the singleton lock yet: %s", exc)
                await self._drop()
            await asyncio.sleep(self._poll_s)

    async def lost(self) -> None:
        """Returns when this replica no longer holds the lock (its connection failed)."""
        while True:
            await asyncio.sleep(self._poll_s)
            connection = self._connection
            try:
                if connection is None or connection.is_closed():
                    raise StoreError("the singleton lock's connection closed")
                await connection.fetchval("SELECT 1", timeout=max(self._poll_s, 1.0))
            except (StoreError, *DATABASE_ERRORS) as exc:
                log.warning("lost the singleton lock (%s): stopping singleton work", exc)
                await self._drop()
                return

    async def release(self) -> None:
        await self._drop()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            try:
                await asyncio.wait_for(connection.close(), 2.0)
            except DATABASE_ERRORS:
                connection.terminate()
