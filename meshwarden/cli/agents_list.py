"""What `meshwarden agents list` does once its flags are parsed: ask the registry for the
instances and for what their agents have in progress (running sessions, tasks held), then
print them as tables or as JSON (agents_cmd.py holds the flags, so that `--help` imports none
of this)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Final

import grpc
from google.protobuf import timestamp_pb2

from meshwarden.cli import exit_codes, registry_access
from meshwarden.cli.session_render import table
from meshwarden.registry_client import registry_channel, registry_stub
from meshwarden.v1 import catalog_pb2, registry_pb2, session_insights_pb2, session_insights_pb2_grpc

TABLE_COLUMNS: Final = (
    "AGENT",
    "VERSION",
    "INSTANCE",
    "HEALTH",
    "PEER",
    "CAPABILITIES",
    "LEASE-EXPIRES-IN",
    "SVID-EXPIRES-IN",
    "SPIFFE-ID",
    "ENROLLED-BY",
    "WHY",
)
HEALTH_NAMES: Final = {
    catalog_pb2.HEALTH_STATE_HEALTHY: "HEALTHY",
    catalog_pb2.HEALTH_STATE_DEGRADED: "DEGRADED",
    catalog_pb2.HEALTH_STATE_ISOLATED: "ISOLATED",
}
ACTIVITY_COLUMNS: Final = ("AGENT", "INSTANCES", "SESSIONS-RUNNING", "TASKS-RUNNING")
UNRECORDED: Final = "unrecorded"
NO_REPORTS: Final = catalog_pb2.InstanceHealth(state=catalog_pb2.HEALTH_STATE_HEALTHY, reason="no reports")


def run(args: argparse.Namespace) -> int:
    try:
        access = registry_access.resolve(args, os.environ)
    except registry_access.AccessError as exc:
        print(f"meshwarden agents list: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        request = registry_pb2.ListInstancesRequest(
            agent=args.agent, capability=args.capability, limit=max(args.limit, 0), cursor=args.cursor
        )
        reply, activity = asyncio.run(_fetch(access, request, args.timeout))
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error("meshwarden agents list", err, access.address)
    instances = list(reply.instances)
    if reply.next_cursor:  # stderr, so the table and the JSON stay what they were
        print(f"more: --cursor {reply.next_cursor}", file=sys.stderr)
    health = {h.instance_id: h for h in reply.health}
    if args.output == "json":
        listed = [instance_json(i, health.get(i.instance_id), activity.get(i.agent)) for i in instances]
        print(json.dumps(listed, indent=2))
    else:
        print(render_table(instances, now=time.time(), health=health))
        if instances:
            print()
            print(render_activity(instances, activity))
        else:
            print("(no instances match)", file=sys.stderr)
    return exit_codes.OK


async def _fetch(
    access: registry_access.RegistryAccess, request: registry_pb2.ListInstancesRequest, timeout_s: float
) -> tuple[registry_pb2.ListInstancesResponse, dict[str, session_insights_pb2.AgentActivity]]:
    """The page of instances, then what the page's agents have in progress (one call each)."""
    async with registry_channel(access.address, access.trust) as channel:
        reply: registry_pb2.ListInstancesResponse = await registry_stub(channel).ListInstances(
            request, timeout=timeout_s, metadata=access.metadata()
        )
        agents = sorted({i.agent for i in reply.instances})
        if not agents:
            return reply, {}
        activity: session_insights_pb2.ListAgentActivityResponse = await session_insights_pb2_grpc.SessionInsightsStub(
            channel
        ).ListAgentActivity(
            session_insights_pb2.ListAgentActivityRequest(agents=agents), timeout=timeout_s, metadata=access.metadata()
        )
        return reply, {a.agent: a for a in activity.agents}


def instance_json(
    instance: catalog_pb2.Instance,
    health: catalog_pb2.InstanceHealth | None = None,
    activity: session_insights_pb2.AgentActivity | None = None,
) -> dict[str, object]:
    """The JSON object `--output json` prints for one instance (keys are a stable interface);
    `agent_activity` is its agent's, the same on every instance of the agent."""
    health = health or NO_REPORTS
    activity = activity or session_insights_pb2.AgentActivity(agent=instance.agent)
    return {
        "agent": instance.agent,
        "version": instance.version,
        "instance_id": instance.instance_id,
        "peer_address": instance.peer_address,
        "spiffe_id": instance.spiffe_id,
        "capabilities": [
            {
                "name": c.name,
                "schema_hash": c.schema_hash,
                "description": c.description,
                "default_timeout_ms": c.default_timeout_ms or None,
            }
            for c in instance.capabilities
        ],
        "registered_at": instance.registered_at.ToJsonString(),
        "lease_expires_at": instance.lease_expires_at.ToJsonString(),
        "svid_expires_at": instance.svid_expires_at.ToJsonString() if instance.HasField("svid_expires_at") else None,
        "enrolled_by": enrolment_json(instance),
        "health": {
            "state": HEALTH_NAMES.get(health.state, "HEALTHY"),
            "reason": health.reason,
            "reporters": health.reporters,
            "updated_at": health.updated_at.ToJsonString() if health.HasField("updated_at") else None,
        },
        "agent_activity": {"sessions_running": activity.sessions_running, "tasks_running": activity.tasks_in_progress},
    }


def render_activity(
    instances: Sequence[catalog_pb2.Instance], activity: Mapping[str, session_insights_pb2.AgentActivity]
) -> str:
    """One row per agent of the page: its instances listed, the sessions running that it took
    part in, the tasks its instances hold (leased or running)."""
    counts: dict[str, int] = {}
    for instance in instances:
        counts[instance.agent] = counts.get(instance.agent, 0) + 1
    rows = [ACTIVITY_COLUMNS] + [
        (
            agent,
            str(count),
            str(activity[agent].sessions_running) if agent in activity else "-",
            str(activity[agent].tasks_in_progress) if agent in activity else "-",
        )
        for agent, count in sorted(counts.items())
    ]
    return table(rows)


def render_table(
    instances: Sequence[catalog_pb2.Instance],
    *,
    now: float,
    health: Mapping[str, catalog_pb2.InstanceHealth] | None = None,
) -> str:
    health = health or {}
    rows = [TABLE_COLUMNS] + [
        (
            i.agent,
            i.version,
            i.instance_id,
            HEALTH_NAMES.get(health.get(i.instance_id, NO_REPORTS).state, "HEALTHY"),
            i.peer_address,
            ",".join(c.name for c in i.capabilities) or "-",
            _expires_in(i.lease_expires_at.ToNanoseconds() / 1e9 - now),
            _svid_expires_in(i.svid_expires_at, now) if i.HasField("svid_expires_at") else "-",
            i.spiffe_id or "-",
            enrolled_by(i),
            health.get(i.instance_id, NO_REPORTS).reason or "-",
        )
        for i in instances
    ]
    return table(rows)


def enrolled_by(instance: catalog_pb2.Instance) -> str:
    """Who let the instance in, for a table cell: "operator:sha256:1a2b… (claims alice)", "spire"."""
    enrolment = instance.enrolment
    principal = enrolment.principal or UNRECORDED  # a registry that does not record enrolments
    return f"{principal} (claims {enrolment.claimed_user})" if enrolment.claimed_user else principal


def enrolment_json(instance: catalog_pb2.Instance) -> dict[str, object]:
    enrolment = instance.enrolment
    return {
        "how": enrolment.how or UNRECORDED,
        "principal": enrolment.principal or UNRECORDED,
        "token_id": enrolment.token_id or None,
        "claimed_user": enrolment.claimed_user or None,
        "enrolled_at": enrolment.enrolled_at.ToJsonString() if enrolment.HasField("enrolled_at") else None,
    }


def _expires_in(seconds: float) -> str:
    return "expired" if seconds <= 0 else f"{seconds:.1f}s"


def _svid_expires_in(expires_at: timestamp_pb2.Timestamp, now: float) -> str:
    """SVIDs live for hours: "59m58s", "1h00m", "2d03h"."""
    seconds = int(expires_at.ToNanoseconds() / 1e9 - now)
    if seconds <= 0:
        return "expired"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
