"""Who may see which sessions, and who may say how one ended.

Receipts hold what agents were asked (raw arguments, when the bundle keeps them) and what
calls cost: operators see every session and every cost; an agent sees only the sessions it
took part in, as caller or callee, and no cost report (costs span every agent). An outcome is
reported only by an agent whose own sidecar shipped a receipt of that session: one that took
part, proven by its signed receipt chain rather than claimed.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshwarden.registry.authz import Caller
from meshwarden.registry.errors import PermissionDenied
from meshwarden.v1 import receipts_pb2


def sees_everything(caller: Caller) -> bool:
    return caller.operator


def agent_of(caller: Caller) -> str:
    """The agent name a non-operator caller sees sessions as; PermissionDenied for anyone else."""
    if caller.identity is None or caller.identity.kind != "agent":
        raise PermissionDenied(f"session data is for operators and the agents that took part, not {caller}")
    return caller.identity.name


def took_part(agent: str, receipts: Iterable[receipts_pb2.Receipt]) -> bool:
    return any(agent in (r.caller_agent, r.callee_agent) for r in receipts)


def check_may_read(caller: Caller, session_id: str, receipts: Iterable[receipts_pb2.Receipt]) -> None:
    if sees_everything(caller):
        return
    agent = agent_of(caller)
    if not took_part(agent, receipts):
        raise PermissionDenied(
            f"agent {agent} took no part in session {session_id!r}; an agent sees only its own sessions "
            "(operators see all, with the operator token)"
        )


def check_may_report(caller: Caller, session_id: str, receipts: Iterable[receipts_pb2.Receipt]) -> None:
    """PermissionDenied unless the caller's own sidecar shipped a receipt of the session."""
    if caller.identity is None or caller.identity.kind != "agent":
        raise PermissionDenied(f"only agents' sidecars report session outcomes, not {caller}")
    mine = caller.identity.spiffe_id
    if not any(r.sidecar_spiffe_id == mine for r in receipts):
        raise PermissionDenied(
            f"agent {caller.identity.name} took no part in session {session_id!r}: the registry holds no receipt of "
            "its sidecar in it; only an agent that made or served a call of the session reports its outcome"
        )
