"""What an operator does from the console: decide an approval, engage or lift a kill switch.

Each goes through the same domain logic as the CLI's RPC (registry.approvals; the Controls
servicer, registry.api.controls, which also cancels the tasks in a switch's scope and waits
for the sidecars' acknowledgements), as the logged-in operator, so the audit log names the
operator credential and, beside it, the name typed at login (as the CLI's $USER).
A kill switch's time to effect is what the servicer measured: from the change being stored
to the last live sidecar acknowledging it. The servicer stores it with an engaged switch (the
page reads it from there, whoever engaged it); a lift's is kept here for the page's notice.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from google.protobuf import duration_pb2

from meshwarden.control_scopes import describe
from meshwarden.registry.api.controls import ControlsApi
from meshwarden.registry.approvals import Approvals, StoredApproval
from meshwarden.registry.authz import Caller, reset_current_caller, set_current_caller
from meshwarden.registry.store.records import KillEffect
from meshwarden.v1 import controls_pb2

ENFORCEMENT_WAIT_S: Final = 5
MAX_REMEMBERED: Final = 256


@dataclass(frozen=True, slots=True)
class Effect:
    """How a control change reached the sidecars."""

    switch_id: str
    scope: str
    enforced: int
    expected: int
    took_s: float

    def __str__(self) -> str:
        return effect_text(self)


def effect_text(effect: Effect | KillEffect) -> str:
    return f"in force at {effect.enforced} of {effect.expected} live sidecar(s) after {effect.took_s:.3f} s"


class Actions:
    def __init__(self, approvals: Approvals, controls: ControlsApi) -> None:
        self._approvals, self._controls = approvals, controls
        self.effects: OrderedDict[str, Effect] = OrderedDict()  # by switch id: engaged, then lifted

    async def decide(self, approval_id: str, approve: bool, reason: str, operator: Caller) -> StoredApproval:
        return await self._approvals.decide(approval_id, approve, reason, operator)

    async def kill(self, kind: int, value: str, reason: str, ttl_s: int, operator: Caller) -> Effect:
        request = controls_pb2.KillRequest(
            scope_kind=kind,  # type: ignore[arg-type]
            scope_value=value,
            reason=reason,
            wait=duration_pb2.Duration(seconds=ENFORCEMENT_WAIT_S),
        )
        if ttl_s:
            request.ttl.FromSeconds(ttl_s)
        token = set_current_caller(operator)
        try:
            reply = await self._controls.Kill(request, None)  # type: ignore[arg-type]
        finally:
            reset_current_caller(token)
        return self._remember(reply.kill_switch, reply.enforcement)

    async def lift(self, switch_id: str, reason: str, operator: Caller) -> Effect:
        request = controls_pb2.LiftKillRequest(
            id=switch_id, reason=reason, wait=duration_pb2.Duration(seconds=ENFORCEMENT_WAIT_S)
        )
        token = set_current_caller(operator)
        try:
            reply = await self._controls.LiftKill(request, None)  # type: ignore[arg-type]
        finally:
            reset_current_caller(token)
        return self._remember(reply.kill_switch, reply.enforcement)

    def _remember(self, switch: controls_pb2.KillSwitch, enforcement: controls_pb2.Enforcement) -> Effect:
        effect = Effect(
            switch_id=switch.id,
            scope=describe(switch.scope_kind, switch.scope_value),
            enforced=enforcement.enforced,
            expected=enforcement.expected,
            took_s=enforcement.took.ToTimedelta().total_seconds(),
        )
        self.effects[switch.id] = effect
        while len(self.effects) > MAX_REMEMBERED:
            self.effects.popitem(last=False)
        return effect
