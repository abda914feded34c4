"""What goes into a policy decision and what comes out: the engine's boundary types."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Direction(enum.Enum):
    OUTBOUND = "outbound"  # the local agent calls out: may it call this capability?
    INBOUND = "inbound"  # a peer calls in: may this caller call the local agent's capability?


@dataclass(frozen=True, slots=True)
class Caller:
    agent: str  # the agent name, as the SPIFFE ID names it
    spiffe_id: str = ""  # from the mTLS handshake inbound, the local SVID outbound; "" if unknown


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFacts:
    """What the context of a decision says besides the arguments."""

    now_unix_s: int  # from the sidecar's clock (rt.clock), never read by the engine itself
    session_id: str = ""
    workflow_id: str = ""
    cost_estimate_micro_usd: int | None = None  # the caller's declared estimate; None if it gave none


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policy_ids: tuple[str, ...]  # the @ids of the deciding policies; () for default deny
    reason: str  # for the caller and the receipt: the policies' @reason, or why nothing permits
    # Allowed only once a person approves (every deciding permit has @approval): the risk
    # factors (their @approval texts) and how long a decision may take; () when none is needed.
    approval_risks: tuple[str, ...] = ()
    approval_ttl_s: int = 0
