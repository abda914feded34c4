"""The budgets' RPCs (meshwarden.v1.Budgets): proto in, registry.budgets, proto out.

Operators set, list and lift budgets (their token; set and lift are audited); sidecars follow
the set and lease and sync slices with their agent's SVID, the holder being the SPIFFE ID of
that certificate, never a field. Who may call what is registry.authz's table, applied by the
interceptor (registry.api.authorization), which also turns errors into statuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import grpc

from meshwarden.budget_scopes import MAX_MICRO_USD
from meshwarden.registry import keyset
from meshwarden.registry.api.service import Handler
from meshwarden.registry.authz import current_caller
from meshwarden.registry.budgets import BudgetRow, Budgets, BudgetState, SliceReport
from meshwarden.registry.errors import InvalidInput, Unauthenticated
from meshwarden.registry.wire import duration, timestamp
from meshwarden.v1 import budgets_pb2

MAX_REPORTS: Final = 10_000
MAX_ID_CHARS: Final = 128

Context = grpc.aio.ServicerContext[Any, Any]


class BudgetsApi:
    def __init__(self, budgets: Budgets) -> None:
        self._budgets = budgets

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "SetBudget": self.SetBudget,
            "ListBudgets": self.ListBudgets,
            "LiftBudget": self.LiftBudget,
            "WatchBudgets": self.WatchBudgets,
            "LeaseSlice": self.LeaseSlice,
            "SyncSlices": self.SyncSlices,
        }

    async def WatchBudgets(
        self, _request: budgets_pb2.WatchBudgetsRequest, _: Context
    ) -> AsyncIterator[budgets_pb2.BudgetSet]:
        revision = -1
        while True:
            current, budgets = await self._budgets.current()
            if current != revision:
                yield budgets_pb2.BudgetSet(revision=current, budgets=[budget_to_proto(b) for b in budgets])
                revision = current
            await self._budgets.next_change(revision)

    async def SetBudget(self, request: budgets_pb2.SetBudgetRequest, _: Context) -> budgets_pb2.SetBudgetResponse:
        budget, created = await self._budgets.set(
            request.scope,
            request.scope_value,
            request.period,
            request.limit_micro_usd,
            request.soft_limit_micro_usd,
            request.reason,
            current_caller(),
        )
        return budgets_pb2.SetBudgetResponse(budget=budget_to_proto(budget), created=created)

    async def ListBudgets(self, request: budgets_pb2.ListBudgetsRequest, _: Context) -> budgets_pb2.ListBudgetsResponse:
        _check_id("session_id", request.session_id)
        states, next_cursor = keyset.page(
            await self._budgets.states(request.session_id),
            lambda s: (s.budget.id, s.subject),
            (str, str),
            request.cursor,
            request.limit,
            keyset.MAX_PAGE,
        )
        return budgets_pb2.ListBudgetsResponse(budgets=[state_to_proto(s) for s in states], next_cursor=next_cursor)

    async def LiftBudget(self, request: budgets_pb2.LiftBudgetRequest, _: Context) -> budgets_pb2.LiftBudgetResponse:
        if not request.id:
            raise InvalidInput("id", "is required (see meshwarden budget list)")
        _check_id("id", request.id)
        return budgets_pb2.LiftBudgetResponse(
            budget=budget_to_proto(await self._budgets.lift(request.id, request.reason, current_caller()))
        )

    async def LeaseSlice(self, request: budgets_pb2.LeaseSliceRequest, _: Context) -> budgets_pb2.LeaseSliceResponse:
        spiffe_id = _holder("lease a budget slice")
        for name in ("instance_id", "budget_id", "subject", "slice_id"):
            _check_id(name, getattr(request, name))
        grant = await self._budgets.lease(
            request.instance_id,
            spiffe_id,
            request.budget_id,
            request.subject,
            request.slice_id,
            request.need_micro_usd,
            request.want_micro_usd,
        )
        return budgets_pb2.LeaseSliceResponse(
            slice_id=grant.slice_id,
            granted_micro_usd=grant.granted_micro_usd,
            ttl=duration(grant.ttl_s),
            sync_every=duration(self._budgets.settings.sync_every_s),
            exhausted=grant.exhausted,
            retry_after=duration(grant.retry_after_s),
            state=state_to_proto(grant.state),
        )

    async def SyncSlices(self, request: budgets_pb2.SyncSlicesRequest, _: Context) -> budgets_pb2.SyncSlicesResponse:
        spiffe_id = _holder("report budget slices")
        _check_id("instance_id", request.instance_id)
        if len(request.slices) > MAX_REPORTS:
            raise InvalidInput("slices", f"holds {len(request.slices)} reports; send at most {MAX_REPORTS} at once")
        for n, r in enumerate(request.slices):
            for name in ("used_micro_usd", "in_flight_micro_usd", "keep_micro_usd"):
                if getattr(r, name) > MAX_MICRO_USD:
                    raise InvalidInput(f"slices[{n}].{name}", f"is over {MAX_MICRO_USD} (a billion dollars)")
        reports = [
            SliceReport(
                slice_id=r.slice_id[:MAX_ID_CHARS],
                used_micro_usd=r.used_micro_usd,
                in_flight_micro_usd=r.in_flight_micro_usd,
                keep_micro_usd=r.keep_micro_usd,
                release=r.release,
            )
            for r in request.slices
        ]
        statuses = await self._budgets.sync(request.instance_id, spiffe_id, reports)
        return budgets_pb2.SyncSlicesResponse(
            slices=[
                budgets_pb2.SliceStatus(
                    slice_id=s.slice_id,
                    live=s.live,
                    recalled=s.recalled,
                    ttl=duration(s.ttl_s),
                    granted_micro_usd=s.granted_micro_usd,
                )
                for s in statuses
            ],
            sync_every=duration(self._budgets.settings.sync_every_s),
        )


def budget_to_proto(budget: BudgetRow) -> budgets_pb2.Budget:
    return budgets_pb2.Budget(
        id=budget.id,
        scope=budget.scope,  # type: ignore[arg-type]
        scope_value=budget.scope_value,
        period=budget.period,  # type: ignore[arg-type]
        limit_micro_usd=budget.limit_micro_usd,
        soft_limit_micro_usd=budget.soft_limit_micro_usd,
        reason=budget.reason,
        created_by=budget.created_by,
        created_at=timestamp(budget.created_at),
    )


def state_to_proto(state: BudgetState) -> budgets_pb2.BudgetState:
    return budgets_pb2.BudgetState(
        budget=budget_to_proto(state.budget),
        period_key=state.period.key,
        subject=state.subject,
        spent_micro_usd=state.spent_micro_usd,
        reserved_micro_usd=state.reserved_micro_usd,
        in_flight_micro_usd=state.in_flight_micro_usd,
        remaining_micro_usd=state.remaining_micro_usd,
        slices=state.slices,
        soft_limit_crossed=state.soft_crossed,
        period_ends_at=timestamp(state.period.ends_at) if state.period.ends_at is not None else None,
    )


def _holder(action: str) -> str:
    caller = current_caller()
    if caller.identity is None or caller.identity.kind != "agent":
        raise Unauthenticated(f"to {action}, present an agent's SVID (the sidecar's) on the registry's mTLS port")
    return caller.identity.spiffe_id


def _check_id(name: str, value: str) -> None:
    if len(value) > MAX_ID_CHARS:
        raise InvalidInput(name, f"is {len(value)} characters; at most {MAX_ID_CHARS}")
