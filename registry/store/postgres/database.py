"""One PostgreSQL database shared by every registry replica, through an asyncpg pool.

Why asyncpg (and not psycopg 3): both are asyncio-native (no call blocks the event loop), but
measured here (benchmarks/pg_driver.py, two runs on 2 busy cores) asyncpg, with its pool's
per-release reset query turned off (`_keep_session`), answered a one-row read with a p50 1.6
to 2.1x lower and a catalog-change transaction (lock the counter, bump it, insert the event)
with a p50 3.4 to 4.3x lower than psycopg 3's AsyncConnection, and ran 2 to 3x as many of
those transactions per second with 16 callers. It also brings the pool and LISTEN callbacks
(`add_listener`) itself, and needs no libpq. Left on, asyncpg's default reset makes every
operation one round trip longer (the same benchmark shows it).

`write(work)` runs `work(connection)` in one READ COMMITTED transaction; writers that must be
ordered (catalog and controls revisions) lock their counter row in `meta` first, so revisions
commit in the order they were taken, without gaps. `read(work)` runs in a REPEATABLE READ,
READ ONLY transaction: what it reads together was committed together. Failures of the
database (unreachable, restarted, a constraint) become StoreError naming the database without
its password; errors the work raises itself (a domain rule) pass through unchanged. The
database also remembers when this replica last lost it (`lost_since`): a lease that lapsed
while no sidecar could renew it is not held against the sidecar when it renews afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from meshwarden.registry.errors import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = Any  # asyncpg.Connection (asyncpg ships no type information)
Work = Callable[[Connection], Awaitable[T]]

POOL_MIN: Final = 0  # no floor: asyncpg would log a traceback a second while the database is down
POOL_MAX: Final = 10
CONNECT_TIMEOUT_S: Final = 5.0
# A statement that takes longer is abandoned (the caller gets StoreError, the server UNAVAILABLE).
COMMAND_TIMEOUT_S: Final = 30.0
# The database's own failures, as asyncpg and the socket raise them.
DATABASE_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a connection the server closed mid-operation, at times
    OSError,
    TimeoutError,
)
# How long after the database answers again a lease that was live when it stopped answering
# still counts as live (`lost_since`): long enough for every sidecar to renew once.
OUTAGE_GRACE_S: Final = 60.0


def redacted(url: str) -> str:
    """`url` without its password, for log lines and messages; "" means the PG* variables."""
    if not url:
        return "postgresql (from the PG* environment variables)"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Database:
    """Opened with `await Database.connect(url)`; `url` "" takes everything from PGHOST,
    PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE (libpq's variables, which asyncpg reads)."""

    def __init__(self, pool: Any, url: str) -> None:
        self._pool, self._url = pool, url
        self.location = redacted(url)
        # When this replica last lost the database (its first failure after an answer), and
        # when it answered again after that; wall-clock seconds.
        self._lost_at: float | None = None
        self._back_at: float | None = None
        self._answering = True

    @classmethod
    async def connect(cls, url: str, *, min_size: int = POOL_MIN, max_size: int = POOL_MAX) -> Database:
        try:
            pool = await asyncpg.create_pool(
                url or None,
                min_size=min_size,
                max_size=max_size,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
                reset=_keep_session,
            )
        except DATABASE_ERRORS as exc:
            raise StoreError(f"cannot connect to {redacted(url)}: {exc}") from exc
        return cls(pool, url)

    @property
    def url(self) -> str:
        return self._url

    async def write(self, work: Work[T]) -> T:
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                done = await work(connection)
        except DATABASE_ERRORS as exc:
            self._failed()
            raise StoreError(f"{self.location}: write failed: {_describe(exc)}") from exc
        self._answered()
        return done

    async def statement(self, work: Work[T]) -> T:
        """`work` that runs one statement (atomic on its own): no BEGIN and COMMIT around it,
        two round trips fewer than `write` (a lease renewal, a catalog upsert)."""
        try:
            async with self._pool.acquire() as connection:
                done = await work(connection)
        except DATABASE_ERRORS as exc:
            self._failed()
            raise StoreError(f"{self.location}: write failed: {_describe(exc)}") from exc
        self._answered()
        return done

    async def read(self, work: Work[T]) -> T:
        try:
            async with (
                self._pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                done = await work(connection)
        except DATABASE_ERRORS as exc:
            self._failed()
            raise StoreError(f"{self.location}: read failed: {_describe(exc)}") from exc
        self._answered()
        return done

    def lost_since(self, now: float) -> float | None:
        """When this replica lost the database, while it is lost and for OUTAGE_GRACE_S after
        it answers again; else None. Nobody could renew a lease meanwhile, so one that was live
        then is not held against its sidecar (registry.store.postgres.catalog, set_lease)."""
        if self._lost_at is None:
            return None
        if self._back_at is not None and now - self._back_at > OUTAGE_GRACE_S:
            return None
        return self._lost_at

    def _failed(self) -> None:
        if self._answering:
            self._answering, self._lost_at, self._back_at = False, time.time(), None

    def _answered(self) -> None:
        if not self._answering:
            self._answering, self._back_at = True, time.time()

    async def connection(self) -> Connection:
        """A connection of its own, outside the pool (the change feed's LISTEN, the singleton's
        advisory lock: both live as long as that connection does). Close it when done."""
        try:
            return await asyncpg.connect(self._url or None, timeout=CONNECT_TIMEOUT_S)
        except DATABASE_ERRORS as exc:
            raise StoreError(f"cannot connect to {self.location}: {_describe(exc)}") from exc

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), CONNECT_TIMEOUT_S)
        except DATABASE_ERRORS:
            self._pool.terminate()


async def _keep_session(connection: Connection) -> None:
    """What the pool does to a connection given back: nothing on the server. asyncpg's default
    (RESET ALL, UNLISTEN *, pg_advisory_unlock_all) costs a round trip on every operation, and
    this store leaves nothing to reset: every use is one transaction that ends before the
    connection returns, and the LISTEN and the session lock live on connections of their own."""


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
