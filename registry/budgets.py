"""Budgets: the caps operators set, what each period spent, and the slices sidecars lease.

Why slices: a call must reserve its worst-case cost before it leaves, and a registry round
trip per call would cost more than the rest of the sidecar. So a sidecar leases a slice of a
budget (`lease`) and reserves against it locally; it reports what the slice spent and holds
every `sync_every_s` (`sync`), which renews the slice for `slice_ttl_s`, charges the spend and
returns what it no longer needs.

What holds (README "Budgets"):
- No overshoot: a slice is granted only out of `limit - spent - held`, where `held` is the
  unspent part of every live slice; a sidecar reserves only within what it was granted. The
  only excess is a call whose measured cost exceeds the worst case it reserved: it is charged
  in full.
- An idle budget is never refused: when the asker's need does not fit in what is free but would
  fit with what other slices hold, the unused ones are recalled (their holders return it at
  their next sync) and the asker asks again (`retry_after`), also while calls in flight
  elsewhere may yet settle below their worst case. Only when nothing held elsewhere could make
  room is the answer "exhausted".
- A slice whose holder stops reporting (killed -9, cut off) lapses `slice_ttl_s` after its last
  report: from then on it holds nothing, at once (every decision counts only unexpired slices);
  `reap_forever` logs it and marks it ended. A late report still charges what it spent.

Over 300 lines because the operators' side (set, lift, states) and the sidecars' side (lease,
sync, reap) read the same rows with the same period and state rules; apart, each would need
the other's internals.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from meshwarden.budget_scopes import (
    MAX_MICRO_USD,
    MAX_SUBJECT_CHARS,
    PERIOD_NAMES,
    SESSION,
    BudgetError,
    Period,
    check_limits,
    check_period,
    check_scope,
    describe,
    period_of,
    usd,
)
from meshwarden.clock import Clock
from meshwarden.registry.audit import Audit
from meshwarden.registry.authz import Caller
from meshwarden.registry.errors import InvalidInput, UnknownControl
from meshwarden.registry.store import BudgetRows, BudgetStore
from meshwarden.registry.store.records import BudgetRow, SliceRow

log = logging.getLogger(__name__)

__all__ = [
    "MAX_REASON_CHARS",
    "BudgetRow",
    "BudgetSettings",
    "BudgetState",
    "Budgets",
    "Grant",
    "SliceReport",
    "SliceRow",
    "SliceStatus",
]

MAX_REASON_CHARS: Final = 1000
MAX_SESSIONS_LISTED: Final = 20
_REAP_EVERY_S: Final = 1.0
_KEEP_ENDED_S: Final = 86400.0


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetSettings:
    slice_ttl_s: float = 10.0  # a slice lapses this long after its holder's last report
    sync_every_s: float = 0.5  # how often holders report (and so answer recalls)


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetState:
    budget: BudgetRow
    period: Period
    subject: str
    spent_micro_usd: int
    reserved_micro_usd: int  # held by live slices, unspent
    in_flight_micro_usd: int
    slices: int
    soft_crossed: bool

    @property
    def remaining_micro_usd(self) -> int:
        return max(self.budget.limit_micro_usd - self.spent_micro_usd - self.reserved_micro_usd, 0)

    @property
    def scope(self) -> str:
        return describe(self.budget.scope, self.budget.scope_value)


@dataclass(frozen=True, kw_only=True, slots=True)
class Grant:
    slice_id: str  # "" when nothing was granted
    granted_micro_usd: int
    ttl_s: float
    exhausted: bool
    retry_after_s: float
    state: BudgetState


@dataclass(frozen=True, kw_only=True, slots=True)
class SliceReport:
    slice_id: str
    used_micro_usd: int
    in_flight_micro_usd: int
    keep_micro_usd: int
    release: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class SliceStatus:
    slice_id: str
    live: bool
    recalled: bool
    ttl_s: float
    granted_micro_usd: int


class Budgets:
    def __init__(self, store: BudgetStore, clock: Clock, audit_log: Audit, settings: BudgetSettings) -> None:
        self._store, self._clock, self._audit, self.settings = store, clock, audit_log, settings
        self._changed = asyncio.Event()
        # For metrics (registry.metrics reads them when scraped).
        self.soft_crossings: Counter[tuple[str, str]] = Counter()  # (budget id, scope)
        self.slice_events: Counter[str] = Counter()  # granted, recalled, refused, lapsed, released

    # ---- operators

    async def set(
        self, scope: int, value: str, period: int, limit: int, soft: int, reason: str, caller: Caller
    ) -> tuple[BudgetRow, bool]:
        """Sets the budget for (scope, value, period): new, or changed in place keeping its spend."""
        try:
            value, period = check_scope(scope, value), check_period(period)
            check_limits(limit, soft)
        except BudgetError as exc:
            raise InvalidInput("request", str(exc)) from exc
        reason = reason.strip()[:MAX_REASON_CHARS]
        target = f"budget {describe(scope, value)} per {PERIOD_NAMES[period]}"

        async def work(rows: BudgetRows) -> tuple[BudgetRow, bool]:
            existing = await rows.budget_for(scope, value, period)
            budget_id = existing.id if existing is not None else "bg-" + secrets.token_hex(4)
            soft_text = f", soft {usd(soft)}" if soft else ""
            entry = self._audit.entry(caller, "budget.set", target, reason, f"{budget_id}: {usd(limit)}{soft_text}")
            budget = BudgetRow(
                id=budget_id,
                scope=scope,
                scope_value=value,
                period=period,
                limit_micro_usd=limit,
                soft_limit_micro_usd=soft,
                reason=reason,
                created_by=entry.actor,
                created_at=existing.created_at if existing is not None else entry.at,
            )
            await rows.put_budget(budget)
            await rows.bump_revision()
            await rows.audit(entry)
            return budget, existing is None

        done = await self._store.write(work)
        self._notify()
        return done

    async def lift(self, budget_id: str, reason: str, caller: Caller) -> BudgetRow:
        async def work(rows: BudgetRows) -> BudgetRow:
            budget = await rows.budget(budget_id)
            if budget is None:
                raise UnknownControl(f"no budget {budget_id!r} is set; see meshwarden budget list")
            target = f"budget {describe(budget.scope, budget.scope_value)} per {PERIOD_NAMES[budget.period]}"
            await rows.delete_budget(budget_id)
            await rows.bump_revision()
            await rows.audit(
                self._audit.entry(caller, "budget.lift", target, reason.strip()[:MAX_REASON_CHARS], budget_id)
            )
            return budget

        lifted = await self._store.write(work)
        self._notify()
        return lifted

    async def current(self) -> tuple[int, list[BudgetRow]]:
        async def work(rows: BudgetRows) -> tuple[int, list[BudgetRow]]:
            return await rows.revision(), await rows.budgets()

        return await self._store.read(work)

    async def states(self, session_id: str = "") -> list[BudgetState]:
        """Every budget in its current period; a per-session budget once per session seen in it
        (`session_id` alone when given, else the busiest ones)."""
        now = self._clock.wall()

        async def work(rows: BudgetRows) -> list[BudgetState]:
            found = []
            for budget in await rows.budgets():
                period = period_of(budget.period, now)
                if budget.scope != SESSION:
                    found.append(await _state(rows, budget, period, "", now))
                    continue
                subjects = [session_id] if session_id else await _sessions_of(rows, budget, period.key, now)
                found.extend([await _state(rows, budget, period, s, now) for s in subjects or [""]])
            return found

        return await self._store.read(work)

    # ---- sidecars

    async def lease(
        self, holder: str, spiffe_id: str, budget_id: str, subject: str, slice_id: str, need: int, want: int
    ) -> Grant:
        """Grants (more of) a slice out of what is free, recalls unused slices elsewhere when
        that would make room, or says the budget is exhausted: decided and written in one
        transaction, so two sidecars asking at once cannot both be granted the same room."""
        if not 0 < need <= MAX_MICRO_USD:
            raise InvalidInput("need_micro_usd", f"must be from 1 to {MAX_MICRO_USD}, got {need}")
        want = min(max(want, need), MAX_MICRO_USD)
        now = self._clock.wall()
        grant = await self._store.write(
            lambda rows: self._decide(rows, holder, spiffe_id, budget_id, subject, slice_id, need, want, now)
        )
        self.slice_events["granted" if grant.slice_id else "refused" if grant.exhausted else "recalled"] += 1
        return grant

    async def sync(self, holder: str, spiffe_id: str, reports: Sequence[SliceReport]) -> list[SliceStatus]:
        """Charges what each slice spent since the last report, renews the live ones, keeps
        only what the holder keeps, ends the released ones."""
        now = self._clock.wall()
        crossed: list[BudgetState] = []

        async def work(rows: BudgetRows) -> list[SliceStatus]:
            statuses = []
            for report in reports:
                found = await rows.slice(report.slice_id)
                if found is None or found.holder_spiffe_id != spiffe_id:
                    if found is not None:
                        log.warning("%s (%s) reported slice %s of another holder", spiffe_id, holder, report.slice_id)
                    statuses.append(
                        SliceStatus(
                            slice_id=report.slice_id, live=False, recalled=False, ttl_s=0.0, granted_micro_usd=0
                        )
                    )
                    continue
                delta = max(report.used_micro_usd - found.used_micro_usd, 0)
                if delta:
                    await rows.charge(found.budget_id, found.period_key, found.subject, delta, now)
                    crossing = await _soft_crossing(rows, found, now)
                    if crossing is not None:
                        crossed.append(crossing)
                status, updated = await self._renewed(rows, found, report, now, delta)
                await rows.put_slice(updated)
                statuses.append(status)
            return statuses

        statuses = await self._store.write(work)
        for state in crossed:
            self._soft_crossed(state)
        return statuses

    async def reap(self) -> list[SliceRow]:
        """Ends the slices whose holders stopped reporting; returns them."""
        now = self._clock.wall()

        async def work(rows: BudgetRows) -> list[SliceRow]:
            lapsed = await rows.lapsed(now)
            await rows.end_slices([s.id for s in lapsed])
            await rows.purge_ended(now - _KEEP_ENDED_S)
            return lapsed

        lapsed = await self._store.write(work)
        for s in lapsed:
            self.slice_events["lapsed"] += 1
            log.warning(
                "slice %s of budget %s (holder %s) lapsed: no report for %.3g s; its unspent %s is back in the budget",
                s.id,
                s.budget_id,
                s.holder_instance_id,
                self.settings.slice_ttl_s,
                usd(max(s.granted_micro_usd - s.used_micro_usd, 0)),
            )
        return lapsed

    async def reap_forever(self) -> None:
        while True:
            await self.reap()
            await asyncio.sleep(_REAP_EVERY_S)

    async def next_change(self, revision: int) -> None:
        """Returns once the budget set's revision is past `revision`."""
        while True:
            changed = self._changed  # before reading: a change while reading sets this one
            if (await self.current())[0] > revision:
                return
            await changed.wait()

    # ---- inside

    async def _decide(
        self,
        rows: BudgetRows,
        holder: str,
        spiffe_id: str,
        budget_id: str,
        subject: str,
        slice_id: str,
        need: int,
        want: int,
        now: float,
    ) -> Grant:
        budget = await rows.budget(budget_id)
        if budget is None:
            raise UnknownControl(f"no budget {budget_id!r} is set (it may just have been lifted)")
        _check_subject(budget, subject)
        period = period_of(budget.period, now)
        ttl_s = self._ttl(period, now)
        slices = await rows.slices(budget_id, period.key, subject)
        spent = (await rows.spend(budget_id, period.key, subject)).spent_micro_usd
        free = budget.limit_micro_usd - spent - sum(s.held(now) for s in slices)
        state = _state_of(budget, period, subject, spent, slices, False, now)
        if free >= need:
            grant = min(want, free)
            mine = next((s for s in slices if s.id == slice_id and s.holder_spiffe_id == spiffe_id), None)
            if mine is not None and mine.expires_at > now:
                updated = replace(
                    mine, granted_micro_usd=mine.granted_micro_usd + grant, expires_at=now + ttl_s, recalled=False
                )
            else:
                updated = SliceRow(
                    id="sl-" + secrets.token_hex(6),
                    budget_id=budget_id,
                    period_key=period.key,
                    subject=subject,
                    holder_instance_id=holder,
                    holder_spiffe_id=spiffe_id,
                    granted_micro_usd=grant,
                    used_micro_usd=0,
                    in_flight_micro_usd=0,
                    expires_at=now + ttl_s,
                    recalled=False,
                    live=True,
                )
            await rows.put_slice(updated)
            state = replace(state, reserved_micro_usd=state.reserved_micro_usd + grant)
            return Grant(
                slice_id=updated.id,
                granted_micro_usd=updated.granted_micro_usd,
                ttl_s=ttl_s,
                exhausted=False,
                retry_after_s=0.0,
                state=state,
            )
        # Room may be held by other slices: their unused part (recalled now), or calls in
        # flight there that may settle below their worst case or fail. Ask again shortly.
        others = [s for s in slices if s.id != slice_id and s.held(now) > 0]
        room_elsewhere = free + sum(s.held(now) for s in others) >= need
        if room_elsewhere:
            await rows.recall([s.id for s in others if s.held(now) > s.in_flight_micro_usd])
        return Grant(
            slice_id="",
            granted_micro_usd=0,
            ttl_s=ttl_s,
            exhausted=not room_elsewhere,
            retry_after_s=self.settings.sync_every_s + 0.05 if room_elsewhere else 0.0,
            state=state,
        )

    def _ttl(self, period: Period, now: float) -> float:
        ttl = self.settings.slice_ttl_s
        return ttl if period.ends_at is None else max(min(ttl, period.ends_at - now), 0.0)

    async def _renewed(
        self, rows: BudgetRows, found: SliceRow, report: SliceReport, now: float, delta: int
    ) -> tuple[SliceStatus, SliceRow]:
        used = found.used_micro_usd + delta
        budget = await rows.budget(found.budget_id)
        period = period_of(budget.period, now) if budget is not None else None
        alive = found.live and found.expires_at > now and not report.release
        if not alive or period is None or period.key != found.period_key:
            if found.live and report.release:
                self.slice_events["released"] += 1
            ended = replace(found, used_micro_usd=used, in_flight_micro_usd=0, live=False)
            return SliceStatus(slice_id=found.id, live=False, recalled=False, ttl_s=0.0, granted_micro_usd=0), ended
        ttl_s = self._ttl(period, now)
        keep = min(max(report.keep_micro_usd, used), found.granted_micro_usd)
        returned = keep < found.granted_micro_usd
        renewed = replace(
            found,
            used_micro_usd=used,
            in_flight_micro_usd=report.in_flight_micro_usd,
            granted_micro_usd=keep,
            expires_at=now + ttl_s,
            recalled=found.recalled and not returned,
        )
        status = SliceStatus(
            slice_id=found.id, live=True, recalled=renewed.recalled, ttl_s=ttl_s, granted_micro_usd=keep
        )
        return status, renewed

    def _soft_crossed(self, state: BudgetState) -> None:
        self.soft_crossings[(state.budget.id, state.scope)] += 1
        session = f" (session {state.subject})" if state.subject else ""
        log.warning(
            "budget %s (%s%s, per %s) crossed its soft limit: %s spent of %s (soft limit %s)",
            state.budget.id,
            state.scope,
            session,
            PERIOD_NAMES.get(state.budget.period, "?"),
            usd(state.spent_micro_usd),
            usd(state.budget.limit_micro_usd),
            usd(state.budget.soft_limit_micro_usd),
            extra={
                "event": "budget.soft_limit_crossed",
                "budget_id": state.budget.id,
                "scope": state.scope,
                "subject": state.subject,
                "spent_micro_usd": state.spent_micro_usd,
                "soft_limit_micro_usd": state.budget.soft_limit_micro_usd,
                "limit_micro_usd": state.budget.limit_micro_usd,
            },
        )

    def changed_elsewhere(self) -> None:
        """Another replica changed the budget set (registry.replicas): wakes this one's watchers."""
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


async def _soft_crossing(rows: BudgetRows, found: SliceRow, now: float) -> BudgetState | None:
    budget = await rows.budget(found.budget_id)
    if budget is None or not budget.soft_limit_micro_usd:
        return None
    spend = await rows.spend(found.budget_id, found.period_key, found.subject)
    if spend.soft_crossed or spend.spent_micro_usd < budget.soft_limit_micro_usd:
        return None
    await rows.mark_soft_crossed(found.budget_id, found.period_key, found.subject)
    period = period_of(budget.period, now)
    return await _state(rows, budget, period, found.subject, now)


def _check_subject(budget: BudgetRow, subject: str) -> None:
    if budget.scope == SESSION and not 0 < len(subject) <= MAX_SUBJECT_CHARS:
        raise InvalidInput("subject", f"must be the session id (1-{MAX_SUBJECT_CHARS} characters) for {budget.id}")
    if budget.scope != SESSION and subject:
        raise InvalidInput("subject", f"must be empty: {budget.id} is not a per-session budget")


async def _sessions_of(rows: BudgetRows, budget: BudgetRow, period_key: str, now: float) -> list[str]:
    spent = {s.subject: s.spent_micro_usd for s in await rows.spends(budget.id, period_key)}
    for s in await rows.live_slices_of(budget.id, period_key):
        if s.held(now) or s.subject not in spent:
            spent[s.subject] = spent.get(s.subject, 0)
    return sorted(spent, key=lambda k: (-spent[k], k))[:MAX_SESSIONS_LISTED]


async def _state(rows: BudgetRows, budget: BudgetRow, period: Period, subject: str, now: float) -> BudgetState:
    spend = await rows.spend(budget.id, period.key, subject)
    slices = await rows.slices(budget.id, period.key, subject)
    return _state_of(budget, period, subject, spend.spent_micro_usd, slices, spend.soft_crossed, now)


def _state_of(
    budget: BudgetRow, period: Period, subject: str, spent: int, slices: list[SliceRow], soft: bool, now: float
) -> BudgetState:
    live = [s for s in slices if s.held(now) > 0]
    return BudgetState(
        budget=budget,
        period=period,
        subject=subject,
        spent_micro_usd=spent,
        reserved_micro_usd=sum(s.held(now) for s in live),
        in_flight_micro_usd=sum(min(s.in_flight_micro_usd, s.held(now)) for s in live),
        slices=len(live),
        soft_crossed=soft or bool(budget.soft_limit_micro_usd and spent >= budget.soft_limit_micro_usd),
    )
