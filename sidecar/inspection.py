"""What the admin port tells an operator about this sidecar, like Envoy's /config_dump:
`/config` (every effective setting and where it came from) and `/status` (the bundle and this
agent's slice of it, routes, kill switches, catalog, breakers and instance health, receipt
backlog, this sidecar's clock). `meshwarden sidecar config` and `sidecar status` print them.

Read-only and free of secrets, as everything on the admin port: a join token shows as set or
not, provider and tool credentials never appear. Policy text is not shown, only each applicable
policy's @id, effect and @reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from meshwarden.sidecar.config import OPTIONS, SidecarConfig
from meshwarden.sidecar.instance_health import assess
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.policy import Direction
from meshwarden.sidecar.runtime import Runtime
from meshwarden.sidecar.spool_backlog import Backlog
from meshwarden.v1 import catalog_pb2

SECRET_OPTIONS: Final = frozenset({"join_token"})
HEALTH_NAMES: Final = {
    catalog_pb2.HEALTH_STATE_HEALTHY: "HEALTHY",
    catalog_pb2.HEALTH_STATE_DEGRADED: "DEGRADED",
    catalog_pb2.HEALTH_STATE_ISOLATED: "ISOLATED",
}


@dataclass(frozen=True, slots=True)
class Inspection:
    """What the views read, all owned elsewhere."""

    rt: Runtime
    local: LocalAgent
    trusted_key_ids: tuple[str, ...]
    backlog: Callable[[], Backlog] | None  # None: receipts off


def config_view(config: SidecarConfig) -> dict[str, object]:
    """Every option: its flag, effective value (as a person writes it) and origin."""
    settings = []
    for option in OPTIONS:
        value = getattr(config, option.key, None)
        shown = ("(set)" if value else "") if option.key in SECRET_OPTIONS else _written(value)
        settings.append(
            {"key": option.key, "flag": option.flag, "value": shown, "origin": config.origins.get(option.key, "")}
        )
    return {"agent": config.agent, "settings": settings}


def status_view(seen: Inspection) -> dict[str, object]:
    rt, local = seen.rt, seen.local
    status, active = rt.policy.status, rt.policy.active
    registration = local.registration
    backlog = seen.backlog() if seen.backlog is not None else None
    breakers = rt.breakers.states()
    health = {a.instance_id: a for a in assess(rt.breakers, rt.latency)}
    return {
        "agent": local.name,
        "instance_id": local.instance_id,
        "spiffe_id": local.spiffe_id,
        "version": str(registration.version) if registration is not None else None,
        "serves": local.capability_names(),
        "now": rt.clock.wall(),
        "bundle": {
            "active_revision": status.active_revision,
            "active_digest": status.active_digest,
            "label": active.label if active is not None else None,
            "refused_revision": status.refused_revision,
            "refusal": status.refusal,
            "trusted_key_ids": list(seen.trusted_key_ids),
            "allow_without_policy": rt.config.allow_without_policy,
            "outbound_slice": _slice(rt, Direction.OUTBOUND),
            "inbound_slice": _slice(rt, Direction.INBOUND),
        },
        "routes": rt.routes.all(),
        "kill_switches": [
            {"id": s.id, "scope": s.scope, "reason": s.reason, "expires_at": s.expires_at}
            for s in rt.controls.in_force()
        ],
        "catalog": {
            "revision": rt.catalog.revision,
            "synced": rt.catalog.synced,
            "capabilities_seen": sorted(rt.catalog.seen()),
            "instances": [
                {
                    "instance_id": i.instance_id,
                    "agent": i.agent,
                    "version": i.version,
                    "peer_address": i.peer_address,
                    "breaker": breakers.get(i.instance_id, "closed"),
                    "health": HEALTH_NAMES.get(health[i.instance_id].state, "HEALTHY")
                    if i.instance_id in health
                    else "HEALTHY",
                    "health_reason": health[i.instance_id].reason if i.instance_id in health else "",
                }
                for i in rt.catalog.instances()
            ],
        },
        "receipts": None
        if backlog is None
        else {
            "backlog": backlog.receipts,
            "backlog_bytes": backlog.bytes,
            "oldest_started_at": backlog.oldest_started_at,
        },
    }


def _slice(rt: Runtime, direction: Direction) -> list[dict[str, str]]:
    active = rt.policy.active
    if active is None:
        return []
    return [{"id": i, "effect": e, "reason": r} for i, e, r in active.slice_summary(direction)]


def _written(value: object) -> str:
    """A value as a person writes it on the command line ("127.0.0.1:7410", "30", "off")."""
    if value is None:
        return "off"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Path):
        return str(value)
    return str(value)
