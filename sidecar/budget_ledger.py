"""This sidecar's side of budgets: the budget set it follows, the slices it leased from the
registry, and the reservations its calls hold against them.

How a call reserves without a registry round trip: the registry grants a sidecar a slice of a
budget (registry.budgets); a call reserves its worst case out of the slice's free part
(`granted - used - reserved`) synchronously, on the event loop, so concurrent calls cannot
both take the same micro-dollar. After the call, `settle` charges the measured cost to the
slice (`used`) and frees the reservation; `release` frees it on failure or cancellation.
Only when the slice lacks room does the call wait for the registry: one `LeaseSlice` per
budget at a time, asking for what every waiting call needs, or for a slice sized from the
last seconds' reservations when that is more.

Every `sync_every_s` (the registry says how often) the sidecar reports each slice's `used`
and in-flight amount (`SyncSlices`), which charges the spend and renews the slice. It returns
the unused part of a slice the registry recalls (another sidecar needs room) at once, and
the whole of a slice idle for `IDLE_RELEASE_S`. A slice it could not renew stops taking
reservations at its local expiry: `ttl` minus a margin, counted from when the request that
renewed it was sent, so it ends here before it lapses at the registry. Its calls in flight
still settle to it, and that spend is reported once the registry is back.

Worst case (README "Budgets"): spend is never committed beyond a budget's limit, except by a
call whose measured cost exceeds the worst case it reserved (it is charged in full). A call
waits for the registry only when its sidecar's slice is short; it is refused when the budget
has no room left even counting what other slices hold unused, or when those slices were not
returned within its wait (`MAX_WAIT_S`, or its deadline).

Over 300 lines because reserving and reporting work on the same slices: a reservation reads
and writes a slice's counters that the report sends and the registry's answer resets, on one
event loop and without locks; split, each half would reach into the other's state.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import grpc

from meshwarden.budget_scopes import AGENT, MODEL, PERIOD_NAMES, SCOPE_NAMES, SESSION, TEAM, WORKFLOW, describe
from meshwarden.clock import Clock
from meshwarden.errors import BadPayload, BudgetExhausted, RegistryUnavailable
from meshwarden.v1 import budgets_pb2

log = logging.getLogger(__name__)

IDLE_RELEASE_S: Final = 5.0  # a slice no call reserved on for this long goes back to the budget
MAX_WAIT_S: Final = 3.0  # how long a call waits for other sidecars to return what they hold
SIZING_WINDOW_S: Final = 2.0  # slices are sized to cover this long at the recent reservation rate
_LEASE_TIMEOUT_S: Final = 5.0
_DEFAULT_SYNC_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """A budget as this sidecar knows it (from the registry's WatchBudgets)."""

    id: str
    scope: int
    value: str
    period: int
    limit_micro_usd: int

    @property
    def set_command(self) -> str:
        flag = "--session" if self.scope == SESSION else f"--{SCOPE_NAMES.get(self.scope, '?')} {self.value}"
        return f"meshwarden budget set {flag} --per {PERIOD_NAMES.get(self.period, 'total')}"


@dataclass(frozen=True, slots=True)
class CallScope:
    """What a call is, for matching budgets: who makes it, for which workflow and session, to
    which model (model calls only)."""

    team: str
    agent: str
    workflow: str
    session: str
    model: str


@dataclass(slots=True)
class Slice:
    budget_id: str
    subject: str
    slice_id: str = ""
    granted: int = 0
    used: int = 0
    reserved: int = 0  # by calls in flight
    expires_at: float = 0.0  # on the monotonic clock
    live: bool = False
    recalled: bool = False
    last_reserved_at: float = 0.0
    rate_micro_usd_s: float = 0.0  # decaying average of what calls reserved per second
    reported_used: int = 0  # `used` as last sent to the registry

    def free(self, now: float) -> int:
        return self.granted - self.used - self.reserved if self.live and now < self.expires_at else 0

    def note_reservation(self, amount: int, now: float) -> None:
        elapsed = max(now - self.last_reserved_at, 0.0)
        self.rate_micro_usd_s = self.rate_micro_usd_s * math.exp(-elapsed / SIZING_WINDOW_S) + amount / SIZING_WINDOW_S
        self.last_reserved_at = now


@dataclass(slots=True)
class Hold:
    slice: Slice
    amount: int


@dataclass(slots=True)
class Reservation:
    holds: list[Hold] = field(default_factory=list)
    done: bool = False

    @property
    def amount(self) -> int:
        return self.holds[0].amount if self.holds else 0

    @property
    def budget_ids(self) -> tuple[str, ...]:
        return tuple(h.slice.budget_id for h in self.holds)


class _BudgetLifted(Exception):
    """The registry no longer has the budget (lifted just now): the call draws nothing on it."""


class SliceClient(Protocol):
    """The registry's Budgets service, as the ledger uses it."""

    def lease(
        self, request: budgets_pb2.LeaseSliceRequest, timeout: float
    ) -> Awaitable[budgets_pb2.LeaseSliceResponse]: ...

    def sync(
        self, request: budgets_pb2.SyncSlicesRequest, timeout: float
    ) -> Awaitable[budgets_pb2.SyncSlicesResponse]: ...


Target = tuple[BudgetRule, str]  # a budget and the subject (session id for per-session budgets)


class BudgetLedger:
    def __init__(self, clock: Clock, client: SliceClient | None = None, instance_id: str = "") -> None:
        self._clock, self._client, self._instance_id = clock, client, instance_id
        self._rules: dict[tuple[int, str], list[BudgetRule]] = {}
        self._slices: dict[tuple[str, str], Slice] = {}
        self._ended: list[Slice] = []  # no longer reservable; reported until their calls settle
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._waiting: defaultdict[tuple[str, str], int] = defaultdict(int)
        # The registry's last "exhausted" per budget: (need refused, answer, until). Calls that
        # need as much are refused from it until the next sync, so a budget that ran out does
        # not cost a registry round trip per call.
        self._refused: dict[tuple[str, str], tuple[int, budgets_pb2.LeaseSliceResponse, float]] = {}
        self.known = asyncio.Event()  # set once the registry's budget set arrived
        self.revision = -1
        self.sync_every_s = _DEFAULT_SYNC_S

    @property
    def empty(self) -> bool:
        return not self._rules

    def apply(self, update: budgets_pb2.BudgetSet) -> None:
        """Replaces the budget set; slices of lifted budgets end (their calls still settle)."""
        rules: dict[tuple[int, str], list[BudgetRule]] = {}
        for b in update.budgets:
            rule = BudgetRule(b.id, b.scope, b.scope_value, b.period, b.limit_micro_usd)
            rules.setdefault((b.scope, b.scope_value), []).append(rule)
        self._rules, self.revision = rules, update.revision
        self.known.set()
        kept = {r.id for group in rules.values() for r in group}
        for key, s in list(self._slices.items()):
            if s.budget_id not in kept:
                self._end(key)

    def in_scope(self, scope: CallScope) -> list[Target]:
        rules = self._rules
        found: list[Target] = []
        for kind, value in ((TEAM, scope.team), (WORKFLOW, scope.workflow), (AGENT, scope.agent), (MODEL, scope.model)):
            if value:
                found.extend((r, "") for r in rules.get((kind, value), ()))
        if scope.session:
            found.extend((r, scope.session) for r in rules.get((SESSION, ""), ()))
        return found

    def try_reserve(self, targets: Sequence[Target], amount: int) -> Reservation | None:
        """The fast path: every target's slice has room now. Holds them all, or none."""
        now = self._clock.monotonic()
        slices = []
        for rule, subject in targets:
            s = self._slices.get((rule.id, subject))
            if s is None or s.free(now) < amount:
                return None
            slices.append(s)
        for s in slices:
            s.reserved += amount
            s.note_reservation(amount, now)
        return Reservation([Hold(s, amount) for s in slices])

    async def reserve(self, targets: Sequence[Target], amount: int, deadline: float, capability: str) -> Reservation:
        """Holds `amount` on every target's slice, leasing more where a slice is short; raises
        BudgetExhausted naming the budget that cannot cover it (holding nothing then)."""
        fast = self.try_reserve(targets, amount)
        if fast is not None:
            return fast
        reservation = Reservation()
        try:
            for rule, subject in targets:
                try:
                    reservation.holds.append(await self._hold(rule, subject, amount, deadline, capability))
                except _BudgetLifted:
                    continue  # lifted since this sidecar last heard: nothing to draw on
        except BaseException:
            self.release(reservation)
            raise
        return reservation

    def settle(self, reservation: Reservation, cost_micro_usd: int) -> None:
        """Charges the measured cost to every budget the call drew on, and frees its holds."""
        if reservation.done:
            return
        reservation.done = True
        for hold in reservation.holds:
            hold.slice.reserved -= hold.amount
            hold.slice.used += cost_micro_usd
            if cost_micro_usd > hold.amount:
                log.warning(
                    "a call cost %d micro-USD, more than the %d it reserved on budget %s: charged in full",
                    cost_micro_usd,
                    hold.amount,
                    hold.slice.budget_id,
                )

    def release(self, reservation: Reservation) -> None:
        if reservation.done:
            return
        reservation.done = True
        for hold in reservation.holds:
            hold.slice.reserved -= hold.amount

    def slices(self) -> list[Slice]:
        return [*self._slices.values(), *self._ended]

    async def sync_forever(self) -> None:
        """Reports every slice each `sync_every_s`, at once again after a recall."""
        while True:
            again = False
            if self._slices or self._ended:
                again = await self.sync_once()
            if not again:
                await asyncio.sleep(self.sync_every_s)

    async def return_all(self) -> None:
        """At shutdown, once every call has ended: reports what was spent and returns the rest."""
        for key in list(self._slices):
            self._end(key)
        if self._ended:
            await self.sync_once()

    async def sync_once(self) -> bool:
        """One report; True when the registry recalled a slice (report again at once)."""
        if self._client is None:
            return False
        now = self._clock.monotonic()
        reports = [self._report(s, now) for s in self.slices()]
        sent = self._clock.monotonic()
        try:
            reply = await self._client.sync(
                budgets_pb2.SyncSlicesRequest(instance_id=self._instance_id, slices=reports), _LEASE_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as err:
            log.warning("could not report budget slices to the registry (%s): %s", err.code().name, err.details())
            return False
        if reply.HasField("sync_every") and reply.sync_every.ToTimedelta().total_seconds() > 0:
            self.sync_every_s = reply.sync_every.ToTimedelta().total_seconds()
        self._refused.clear()  # spend was reported and slices returned: ask the registry afresh
        by_id = {s.slice_id: s for s in self.slices()}
        recalled = False
        for status in reply.slices:
            s = by_id.get(status.slice_id)
            if s is None:
                continue
            if not status.live:
                s.live = False
                self._forget_if_done(s)
                continue
            s.granted = status.granted_micro_usd
            s.expires_at = sent + _local_ttl(status.ttl.ToTimedelta().total_seconds())
            s.recalled = status.recalled
            recalled = recalled or status.recalled
        return recalled

    # ---- inside

    async def _hold(self, rule: BudgetRule, subject: str, amount: int, deadline: float, capability: str) -> Hold:
        key = (rule.id, subject)
        give_up = min(deadline, self._clock.monotonic() + MAX_WAIT_S)
        while True:
            now = self._clock.monotonic()
            current = self._slices.get(key)
            if current is not None and current.free(now) >= amount:
                current.reserved += amount
                current.note_reservation(amount, now)
                return Hold(current, amount)
            self._waiting[key] += amount
            try:
                async with self._locks.setdefault(key, asyncio.Lock()):
                    current = self._slices.get(key)
                    free = current.free(self._clock.monotonic()) if current is not None else 0
                    if free >= amount:
                        continue  # another call's lease made room meanwhile
                    refused = self._refused.get(key)
                    if refused is not None and refused[2] > self._clock.monotonic() and amount - free >= refused[0]:
                        reply = refused[1]
                    else:
                        sent = self._clock.monotonic()
                        reply = await self._lease(rule, subject, current, amount)
                        if reply.slice_id:
                            self._granted(key, current, reply, sent)
                            continue
                        if reply.exhausted:
                            self._refused[key] = (amount - free, reply, self._clock.monotonic() + self.sync_every_s)
            finally:
                self._waiting[key] -= amount
            wait_s = reply.retry_after.ToTimedelta().total_seconds()
            if reply.exhausted or self._clock.monotonic() + wait_s > give_up:
                current = self._slices.get(key)
                unreported = current.used - current.reported_used if current is not None else 0
                own_free = current.free(self._clock.monotonic()) if current is not None else 0
                raise _exhausted(
                    rule, reply.state, amount, capability, unreported, own_free, held_elsewhere=not reply.exhausted
                )
            await asyncio.sleep(wait_s)

    async def _lease(
        self, rule: BudgetRule, subject: str, current: Slice | None, amount: int
    ) -> budgets_pb2.LeaseSliceResponse:
        now = self._clock.monotonic()
        free = current.free(now) if current is not None else 0
        need = amount - free
        recent = math.ceil(current.rate_micro_usd_s * SIZING_WINDOW_S) if current is not None else 0
        want = max(need, self._waiting[(rule.id, subject)] - free, recent)
        if self._client is None:
            raise RegistryUnavailable(f"cannot reserve against budget {rule.id}: this sidecar has no registry link")
        request = budgets_pb2.LeaseSliceRequest(
            instance_id=self._instance_id,
            budget_id=rule.id,
            subject=subject,
            slice_id=current.slice_id if current is not None and current.live else "",
            need_micro_usd=need,
            want_micro_usd=want,
        )
        try:
            return await self._client.lease(request, _LEASE_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            if err.code() is grpc.StatusCode.NOT_FOUND:
                raise _BudgetLifted from err
            if err.code() is grpc.StatusCode.INVALID_ARGUMENT:
                raise BadPayload(f"cannot reserve against budget {rule.id}: {err.details()}") from err
            raise RegistryUnavailable(
                f"cannot reserve against budget {rule.id} ({describe(rule.scope, rule.value)}): this sidecar's slice "
                f"is short and the registry did not answer ({err.code().name}: {err.details()}); try again shortly"
            ) from err

    def _granted(
        self, key: tuple[str, str], current: Slice | None, reply: budgets_pb2.LeaseSliceResponse, sent: float
    ) -> None:
        if reply.HasField("sync_every") and reply.sync_every.ToTimedelta().total_seconds() > 0:
            self.sync_every_s = reply.sync_every.ToTimedelta().total_seconds()
        target = current
        if target is None or target.slice_id != reply.slice_id:
            if current is not None:
                self._end(key)
            target = Slice(key[0], key[1], slice_id=reply.slice_id)
            if current is not None:
                target.rate_micro_usd_s, target.last_reserved_at = current.rate_micro_usd_s, current.last_reserved_at
            self._slices[key] = target
        target.granted = reply.granted_micro_usd
        target.expires_at = sent + _local_ttl(reply.ttl.ToTimedelta().total_seconds())
        target.live, target.recalled = True, False

    def _report(self, s: Slice, now: float) -> budgets_pb2.SliceReport:
        key = (s.budget_id, s.subject)
        idle = s.reserved == 0 and now - s.last_reserved_at > IDLE_RELEASE_S and not self._waiting[key]
        expired = s.live and now >= s.expires_at
        if s.live and (idle or expired):
            self._end(key)
        if s.live and s.recalled:
            s.granted = s.used + s.reserved  # what is not in flight goes back now
        release = not s.live and s.reserved == 0
        s.reported_used = s.used
        return budgets_pb2.SliceReport(
            slice_id=s.slice_id,
            budget_id=s.budget_id,
            subject=s.subject,
            used_micro_usd=s.used,
            in_flight_micro_usd=s.reserved,
            keep_micro_usd=max(s.granted, s.used) if s.live else s.used + s.reserved,
            release=release,
        )

    def _end(self, key: tuple[str, str]) -> None:
        s = self._slices.pop(key, None)
        if s is not None:
            s.live = False
            self._ended.append(s)

    def _forget_if_done(self, s: Slice) -> None:
        """The registry ended `s`: forget it once nothing is in flight on it and all it spent
        was reported; until then it is reported again (a late report is still charged)."""
        key = (s.budget_id, s.subject)
        if self._slices.get(key) is s:
            self._end(key)
        if s.reserved == 0 and s.used == s.reported_used and s in self._ended:
            self._ended.remove(s)


def call_scope(team: str, agent: str, workflow: str, session: str, kind: str, capability: str) -> CallScope:
    return CallScope(team, agent, workflow, session, capability if kind == "model" else "")


def _local_ttl(ttl_s: float) -> float:
    """The slice ends here a little before it lapses at the registry."""
    return max(ttl_s - min(1.0, ttl_s * 0.2), 0.0)


def _exhausted(
    rule: BudgetRule,
    state: budgets_pb2.BudgetState,
    amount: int,
    capability: str,
    unreported: int,
    own_free: int,
    *,
    held_elsewhere: bool,
) -> BudgetExhausted:
    """The refusal, with the registry's figures corrected by what this sidecar knows of its own
    slice: what it spent since its last report is spent, and what it holds unused remains (the
    registry counts both as reserved)."""
    period = PERIOD_NAMES.get(rule.period, "total")
    subject = f", session {state.subject}" if state.subject else ""
    return BudgetExhausted(
        budget_id=rule.id,
        scope=describe(rule.scope, rule.value) + subject,
        period=f"{period} {state.period_key}".strip(),
        limit_micro_usd=state.budget.limit_micro_usd or rule.limit_micro_usd,
        spent_micro_usd=state.spent_micro_usd + unreported,
        reserved_micro_usd=max(state.reserved_micro_usd - unreported - own_free, 0),
        needed_micro_usd=amount,
        capability=capability,
        set_command=rule.set_command,
        held_elsewhere=held_elsewhere,
    )
