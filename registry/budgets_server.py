"""The gRPC face of budgets (meshwarden.v1.Budgets): proto in, registry.budgets call, proto out.

Operators set, list and lift budgets (their token; set and lift are audited); sidecars follow
the set and lease and sync slices with their agent's SVID, the holder being the SPIFFE ID of
that certificate, never a field. Errors become statuses in registry.rescue.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc

from meshwarden.budget_scopes import MAX_MICRO_USD
from meshwarden.registry.authz import Authorizer, Caller, method
from meshwarden.registry.budgets import Budgets, BudgetState, SliceReport
from meshwarden.registry.errors import InvalidInput, Unauthenticated
from meshwarden.registry.rescue import abort, serve_unary_async
from meshwarden.registry.store.sqlite.budgets import BudgetRow
from meshwarden.registry.wire import duration, timestamp
from meshwarden.v1 import budgets_pb2, budgets_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME: Final = budgets_pb2.DESCRIPTOR.services_by_name["Budgets"].full_name
SET_BUDGET: Final = method(SERVICE_NAME, "SetBudget")
LIST_BUDGETS: Final = method(SERVICE_NAME, "ListBudgets")
LIFT_BUDGET: Final = method(SERVICE_NAME, "LiftBudget")
WATCH_BUDGETS: Final = method(SERVICE_NAME, "WatchBudgets")
LEASE_SLICE: Final = method(SERVICE_NAME, "LeaseSlice")
SYNC_SLICES: Final = method(SERVICE_NAME, "SyncSlices")
MAX_REPORTS: Final = 10_000
MAX_ID_CHARS: Final = 128

Context = grpc.aio.ServicerContext[Any, Any]


class BudgetsService(budgets_pb2_grpc.BudgetsServicer):
    def __init__(self, budgets: Budgets, authorizer: Authorizer) -> None:
        self._budgets, self._authorizer = budgets, authorizer

    async def SetBudget(self, request: budgets_pb2.SetBudgetRequest, context: Context) -> budgets_pb2.SetBudgetResponse:
        return await serve_unary_async(SET_BUDGET, self._set, request, context, self._authorizer)

    async def ListBudgets(
        self, request: budgets_pb2.ListBudgetsRequest, context: Context
    ) -> budgets_pb2.ListBudgetsResponse:
        return await serve_unary_async(LIST_BUDGETS, self._list, request, context, self._authorizer)

    async def LiftBudget(
        self, request: budgets_pb2.LiftBudgetRequest, context: Context
    ) -> budgets_pb2.LiftBudgetResponse:
        return await serve_unary_async(LIFT_BUDGET, self._lift, request, context, self._authorizer)

    async def LeaseSlice(
        self, request: budgets_pb2.LeaseSliceRequest, context: Context
    ) -> budgets_pb2.LeaseSliceResponse:
        return await serve_unary_async(LEASE_SLICE, self._lease, request, context, self._authorizer)

    async def SyncSlices(
        self, request: budgets_pb2.SyncSlicesRequest, context: Context
    ) -> budgets_pb2.SyncSlicesResponse:
        return await serve_unary_async(SYNC_SLICES, self._sync, request, context, self._authorizer)

    async def WatchBudgets(
        self, request: budgets_pb2.WatchBudgetsRequest, context: Context
    ) -> AsyncIterator[budgets_pb2.BudgetSet]:
        try:
            caller = self._authorizer.caller(context)
            self._authorizer.check(WATCH_BUDGETS, caller)
            revision = -1
            while True:
                current, budgets = await self._budgets.current()
                if current != revision:
                    yield budgets_pb2.BudgetSet(revision=current, budgets=[budget_to_proto(b) for b in budgets])
                    revision = current
                await self._budgets.next_change(revision)
        except Exception as exc:  # noqa: BLE001 -- the stream's rescue: the error becomes a status
            await abort(context, exc, WATCH_BUDGETS)

    async def _set(self, request: budgets_pb2.SetBudgetRequest, caller: Caller) -> budgets_pb2.SetBudgetResponse:
        budget, created = await self._budgets.set(
            request.scope,
            request.scope_value,
            request.period,
            request.limit_micro_usd,
            request.soft_limit_micro_usd,
            request.reason,
            caller,
        )
        return budgets_pb2.SetBudgetResponse(budget=budget_to_proto(budget), created=created)

    async def _list(self, request: budgets_pb2.ListBudgetsRequest, _caller: Caller) -> budgets_pb2.ListBudgetsResponse:
        _check_id("session_id", request.session_id)
        states = await self._budgets.states(request.session_id)
        return budgets_pb2.ListBudgetsResponse(budgets=[state_to_proto(s) for s in states])

    async def _lift(self, request: budgets_pb2.LiftBudgetRequest, caller: Caller) -> budgets_pb2.LiftBudgetResponse:
        if not request.id:
            raise InvalidInput("id", "is required (see meshwarden budget list)")
        _check_id("id", request.id)
        return budgets_pb2.LiftBudgetResponse(
            budget=budget_to_proto(await self._budgets.lift(request.id, request.reason, caller))
        )

    async def _lease(self, request: budgets_pb2.LeaseSliceRequest, caller: Caller) -> budgets_pb2.LeaseSliceResponse:
        spiffe_id = _holder(caller, "lease a budget slice")
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

    async def _sync(self, request: budgets_pb2.SyncSlicesRequest, caller: Caller) -> budgets_pb2.SyncSlicesResponse:
        spiffe_id = _holder(caller, "report budget slices")
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


def _holder(caller: Caller, action: str) -> str:
    if caller.identity is None or caller.identity.kind != "agent":
        raise Unauthenticated(f"to {action}, present an agent's SVID (the sidecar's) on the registry's mTLS port")
    return caller.identity.spiffe_id


def _check_id(name: str, value: str) -> None:
    if len(value) > MAX_ID_CHARS:
        raise InvalidInput(name, f"is {len(value)} characters; at most {MAX_ID_CHARS}")
