"""Approvals: a person's decision on one call that policy marks as needing it.

The rules live here, the storage behind registry.store.ApprovalStore:
- An approval is bound to the calling agent, what it calls and the sha256 of the exact
  argument bytes; a call with other arguments never uses it (approving one refund does not
  approve another).
- It is used at most once: `request` moves it from approved to used in one conditional write.
- It expires: pending or approved and unused at `expires_at`, it becomes expired, which denies
  (deny by default). Expiry is written lazily, whenever approvals are read or waited on, with
  an audit entry by the registry itself.
- Every state change is audited, like kill switches (registry.audit).

Sidecars learn decisions from `changed`, an event set (and replaced) on every decision, which
the WaitApproval stream awaits with the approval's expiry as its timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Final

from meshwarden.clock import Clock
from meshwarden.registry.audit import Audit, logged
from meshwarden.registry.authz import Caller, require_agent
from meshwarden.registry.errors import Conflict, InvalidInput, PermissionDenied, UnknownControl
from meshwarden.registry.store import ApprovalStore
from meshwarden.registry.store.records import APPROVED, DENIED, EXPIRED, PENDING, USED, StoredApproval

log = logging.getLogger(__name__)

__all__ = [
    "APPROVAL_ID",
    "APPROVED",
    "DENIED",
    "EXPIRED",
    "PENDING",
    "USED",
    "Answer",
    "ApprovalAsk",
    "Approvals",
    "StoredApproval",
    "is_final",
]

MIN_TTL_S: Final = 1
MAX_TTL_S: Final = 7 * 24 * 3600
MAX_ARGUMENTS_CHARS: Final = 64 * 1024  # what a reviewer is shown; larger arguments are shown by hash only
MAX_FACTOR_CHARS: Final = 200
MAX_FACTORS: Final = 16
MAX_REASON_CHARS: Final = 1000
SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
APPROVAL_ID: Final = re.compile(r"ap-[0-9a-f]{12}")
FINAL_STATES: Final = frozenset({DENIED, EXPIRED, USED})


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalAsk:
    """What a sidecar asks an approval for: one call, as its policy stage saw it."""

    agent: str
    spiffe_id: str
    call_kind: str
    capability: str
    arguments_sha256: str
    arguments_json: str
    risk_factors: tuple[str, ...]
    policy_ids: tuple[str, ...]
    bundle: str
    session_id: str
    workflow_id: str
    call_id: str
    ttl_s: int
    approval_id: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    approval: StoredApproval
    granted: bool  # this request used the approval: the call may go


class Approvals:
    def __init__(self, store: ApprovalStore, clock: Clock, audit_log: Audit) -> None:
        self._store, self._clock, self._audit = store, clock, audit_log
        self._changed = asyncio.Event()
        # Finding an approval of the same arguments and opening one if there is none is one
        # step: two retries of one call asking at once get the same approval, not two.
        self._asking = asyncio.Lock()

    @property
    def changed(self) -> asyncio.Event:
        """Set when any approval is decided; replaced by a fresh event at the same time."""
        return self._changed

    async def request(self, ask: ApprovalAsk, caller: Caller | None = None) -> Answer:
        """With a `caller` (the server's case), only for the caller's own agent, whose SPIFFE ID
        is the caller's certificate's."""
        if caller is not None:
            identity = require_agent(caller, ask.agent, "ask for an approval")
            ask = dataclasses.replace(ask, spiffe_id=identity.spiffe_id)
        _check_ask(ask)
        await self.expire()
        if ask.approval_id:
            return await self._retry(ask)
        async with self._asking:
            approved = await self._store.find(ask.agent, ask.capability, ask.arguments_sha256, APPROVED)
            if approved is not None:
                return await self._use(approved, ask.call_id)
            pending = await self._store.find(ask.agent, ask.capability, ask.arguments_sha256, PENDING)
            if pending is not None:  # the same call asked again (a retry that did not keep the id)
                return Answer(approval=pending, granted=False)
            return Answer(approval=await self._open(ask), granted=False)

    async def get(self, approval_id: str) -> StoredApproval:
        await self.expire()
        found = await self._store.get(approval_id)
        if found is None:
            raise UnknownControl(f"no approval {approval_id!r}; see meshwarden approvals list --all")
        return found

    async def wait(self, approval_id: str, caller: Caller | None = None) -> StoredApproval:
        """The approval once it is decided for good (is_final), or expired at its expiry; with a
        `caller`, only the approval's own agent may wait for it."""
        approval = await self.get(approval_id)
        if caller is not None:
            require_agent(caller, approval.agent, f"wait for approval {approval.id}")
        while not is_final(approval):
            changed = self._changed
            left = approval.expires_at - self._clock.wall()
            try:
                await asyncio.wait_for(changed.wait(), max(left, 0.0) + 0.05)
            except TimeoutError:
                pass  # its time ended: `get` expires it
            approval = await self.get(approval.id)
        return approval

    async def recent(
        self, *, pending_only: bool, limit: int, after: tuple[float, str] | None = None, oldest_first: bool = False
    ) -> list[StoredApproval]:
        """Newest first (or oldest), strictly after the keyset cursor `after` (requested_at, id)."""
        await self.expire()
        return await self._store.recent(pending_only=pending_only, limit=limit, after=after, oldest_first=oldest_first)

    async def decide(self, approval_id: str, approve: bool, reason: str, caller: Caller) -> StoredApproval:
        reason = reason.strip()
        if not reason:
            raise InvalidInput("reason", "is required: say why, for the caller and the audit log")
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidInput("reason", f"is {len(reason)} characters; at most {MAX_REASON_CHARS}")
        current = await self.get(approval_id)
        if current.state != PENDING:
            raise Conflict(
                f"approval {approval_id} is {current.state}, not pending"
                + (f" (decided by {current.decided_by}: {current.reason})" if current.decided_by else "")
                + "; only a pending approval can be decided"
            )
        state = APPROVED if approve else DENIED
        action = "approval.approve" if approve else "approval.deny"
        entry = self._audit.entry(caller, action, _target(current), reason, current.id)
        decided_by = entry.actor + (f" ({entry.claimed_user})" if entry.claimed_user else "")
        if not await self._store.decide(approval_id, PENDING, state, entry.at, decided_by, reason, entry):
            raise Conflict(f"approval {approval_id} was decided or expired meanwhile; see meshwarden approvals show")
        logged(entry)
        self._notify()
        return await self.get(approval_id)

    async def expire(self) -> list[StoredApproval]:
        """Expires every approval whose time ended (pending: nobody decided; approved: not used)."""
        ended: list[StoredApproval] = []
        for approval in await self._store.due(self._clock.wall()):
            why = "nobody decided in time" if approval.state == PENDING else "it was approved but not used in time"
            entry = self._audit.entry(None, "approval.expire", _target(approval), why, approval.id)
            if await self._store.decide(
                approval.id, approval.state, EXPIRED, entry.at, approval.decided_by or "registry", why, entry
            ):
                logged(entry)
                ended.append(approval)
                log.info("approval %s expired: %s", approval.id, why)
        if ended:
            self._notify()
        return ended

    async def _retry(self, ask: ApprovalAsk) -> Answer:
        found = await self._store.get(ask.approval_id)
        if found is None or found.agent != ask.agent:
            raise UnknownControl(f"no approval {ask.approval_id!r} for agent {ask.agent}")
        if found.capability != ask.capability or found.arguments_sha256 != ask.arguments_sha256:
            raise PermissionDenied(
                f"approval {found.id} is for {found.capability} with arguments sha256 {found.arguments_sha256[:16]}…, "
                f"not {ask.capability} with arguments sha256 {ask.arguments_sha256[:16]}…: an approval covers only the "
                "exact arguments it was given for; ask again without the approval id"
            )
        if found.state == APPROVED:
            return await self._use(found, ask.call_id)
        return Answer(approval=found, granted=False)

    async def _use(self, approval: StoredApproval, call_id: str) -> Answer:
        entry = self._audit.entry(None, "approval.use", _target(approval), "", f"{approval.id} by call {call_id}")
        if not await self._store.use(approval.id, entry.at, call_id, entry):  # another call used it first
            current = await self._store.get(approval.id) or approval
            return Answer(approval=current, granted=False)
        logged(entry)
        return Answer(approval=await self._store.get(approval.id) or approval, granted=True)

    async def _open(self, ask: ApprovalAsk) -> StoredApproval:
        approval_id = "ap-" + secrets.token_hex(6)
        entry = self._audit.entry(
            None, "approval.request", f"{ask.agent} -> {ask.capability}", "; ".join(ask.risk_factors), approval_id
        )
        approval = StoredApproval(
            id=approval_id,
            state=PENDING,
            agent=ask.agent,
            spiffe_id=ask.spiffe_id,
            call_kind=ask.call_kind,
            capability=ask.capability,
            arguments_sha256=ask.arguments_sha256,
            requested_at=entry.at,
            expires_at=entry.at + ask.ttl_s,
            arguments_json=ask.arguments_json if len(ask.arguments_json) <= MAX_ARGUMENTS_CHARS else "",
            risk_factors=ask.risk_factors,
            policy_ids=ask.policy_ids,
            bundle=ask.bundle,
            session_id=ask.session_id,
            workflow_id=ask.workflow_id,
            call_id=ask.call_id,
        )
        await self._store.insert(approval, entry)
        logged(entry)
        log.info("approval %s requested: %s -> %s (%s)", approval_id, ask.agent, ask.capability, ask.risk_factors)
        return approval

    def changed_elsewhere(self) -> None:
        """Another replica decided an approval (registry.replicas): wakes this one's waiters."""
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


def is_final(approval: StoredApproval) -> bool:
    """Decided for good from a waiting call's point of view (approved counts: it can be used)."""
    return approval.state in FINAL_STATES or approval.state == APPROVED


def _target(approval: StoredApproval) -> str:
    return f"{approval.agent} -> {approval.capability}"


def _check_ask(ask: ApprovalAsk) -> None:
    if not SHA256_HEX.fullmatch(ask.arguments_sha256):
        raise InvalidInput("arguments_sha256", "must be 64 lowercase hex digits (sha256 of the argument bytes)")
    if not MIN_TTL_S <= ask.ttl_s <= MAX_TTL_S:
        raise InvalidInput("ttl_s", f"must be from {MIN_TTL_S} to {MAX_TTL_S} seconds, got {ask.ttl_s}")
    if ask.approval_id and not APPROVAL_ID.fullmatch(ask.approval_id):
        raise InvalidInput("approval_id", f"{ask.approval_id[:40]!r} is no approval id (ap- and 12 hex digits)")
    if len(ask.risk_factors) > MAX_FACTORS or any(len(f) > MAX_FACTOR_CHARS for f in ask.risk_factors):
        raise InvalidInput("risk_factors", f"at most {MAX_FACTORS}, each at most {MAX_FACTOR_CHARS} characters")
    for name, value in (
        ("capability", ask.capability),
        ("call_kind", ask.call_kind),
        ("session_id", ask.session_id),
        ("workflow_id", ask.workflow_id),
        ("call_id", ask.call_id),
        ("bundle", ask.bundle),
    ):
        if len(value) > 256:
            raise InvalidInput(name, f"is {len(value)} characters; at most 256")
    if not ask.capability:
        raise InvalidInput("capability", "is required")
