"""Following the other replicas on a shared store: their changes reach this replica's watchers.

The store's change feed (registry.store.ChangeFeed) wakes this loop when another replica
committed something, and at the latest every `poll_s`; the loop then reads where each watched
aggregate stands and lets each domain publish what it has not published yet, from the tables
(registry.catalog.Catalog.catch_up and its peers). A wake-up is only a hint: a lost
notification delays a change by one polling period and loses nothing.

The loop also tells whether the store answers: `reachable` turns False after a read failed,
and the registry then reports not ready (/readyz) while serving on what it last knew, until
the store answers again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from meshwarden.clock import Clock
from meshwarden.registry.approvals import Approvals
from meshwarden.registry.budgets import Budgets
from meshwarden.registry.bundles import Bundles
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.controls import Controls
from meshwarden.registry.errors import StoreError
from meshwarden.registry.health_reports import HealthReports
from meshwarden.registry.routes import Routes
from meshwarden.registry.store import ChangeFeed

log = logging.getLogger(__name__)

DEFAULT_POLL_S: Final = 1.0


class Follower:
    def __init__(
        self,
        feed: ChangeFeed,
        clock: Clock,
        *,
        catalog: Catalog,
        controls: Controls,
        bundles: Bundles,
        routes: Routes,
        health: HealthReports,
        budgets: Budgets | None = None,
        approvals: Approvals | None = None,
        poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        self._feed, self._clock, self._poll_s = feed, clock, poll_s
        self._catalog, self._controls, self._bundles, self._routes = catalog, controls, bundles, routes
        self._health, self._budgets = health, budgets
        self._budgets_seen = -1
        self._approvals, self._approvals_seen = approvals, -1
        self._routes_seen = -1
        self.reachable = True
        self.problem = ""

    async def follow_forever(self) -> None:
        while True:
            await self._feed.wait(self._poll_s)
            try:
                await self.catch_up()
            except StoreError as exc:
                if self.reachable:
                    log.warning("cannot follow the other replicas: %s; serving on what this replica last knew", exc)
                self.reachable, self.problem = False, f"the store does not answer: {exc}"
                await asyncio.sleep(self._poll_s)
            else:
                if not self.reachable:
                    log.info("the store answers again; caught up with the other replicas")
                self.reachable, self.problem = True, ""

    async def catch_up(self) -> None:
        """Publishes every change the store holds that this replica has not published yet."""
        at = await self._feed.positions()
        if at.controls > self._controls.revision:
            await self._controls.catch_up()  # first, as watchers apply controls first
        if at.catalog > self._catalog.revision:
            await self._catalog.catch_up()
        if at.bundles > self._bundles.latest_revision:
            await self._bundles.catch_up()
        if at.routes != self._routes_seen:
            await self._routes.catch_up()
            self._routes_seen = at.routes
        if self._budgets is not None and at.budgets != self._budgets_seen:
            self._budgets.changed_elsewhere()  # its watchers read the set again
            self._budgets_seen = at.budgets
        if self._approvals is not None and at.approvals != self._approvals_seen:
            self._approvals.changed_elsewhere()  # waiters read their approval again
            self._approvals_seen = at.approvals
        await self._health.catch_up()  # reports are not watched: read on every wake-up
