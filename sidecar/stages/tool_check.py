"""Tool calls only: is it a tool the active bundle declares, does its server still serve the
input schema the bundle declares (schema drift, both hashes named), and do the arguments
match that schema? What it finds goes into `call.record.tool` for policy (the tool's risk),
approvals (the arguments' hash), receipts and spans; the tool's declared cost, if any, becomes
the call's `cost_estimate_micro_usd` (what a budget stage reserves, and Cedar's context sees).

Runs before the policy stage, so Cedar sees arguments that match the tool's schema. It reads
the server's live tools from the sidecar's connection to it, connecting on first use; so it
sits inside the server's breaker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError

from meshwarden.clock import Clock
from meshwarden.errors import BadPayload, DeadlineExceeded, PolicyDenied, ToolSchemaDrift, UnknownTool
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Handler, Layer, Reply, ToolUse
from meshwarden.sidecar.hops.mcp_upstreams import LiveTool, McpUpstreams
from meshwarden.sidecar.policy.cedar_values import ArgumentsNotMappable, parse_arguments

MAX_VALIDATORS = 1024


class ToolCheck:
    def __init__(self, next: Handler, policy: PolicyHolder, upstreams: McpUpstreams, clock: Clock) -> None:
        self._next, self._policy, self._upstreams, self._clock = next, policy, upstreams, clock
        self._validators: dict[str, Any] = {}  # by schema hash: compiled once

    async def __call__(self, call: Call) -> Reply:
        active = self._policy.active
        if active is None:
            raise PolicyDenied(
                f"{call.caller.agent} may not call {call.capability}: no policy bundle is active on this sidecar "
                "(default deny); see `meshwarden bundle status`"
            )
        declared = active.mcp_servers.tool(call.capability)
        server = active.mcp_servers.servers.get(call.capability.partition(".")[0])
        if declared is None or server is None:
            raise UnknownTool(call.capability, active.label)
        connection = self._upstreams.connection(server)
        try:
            async with asyncio.timeout(max(call.deadline - self._clock.monotonic(), 0.001)):
                await connection.client()  # connects (and lists the tools) on first use
        except TimeoutError as exc:
            raise DeadlineExceeded(
                f"MCP server {server.name} did not finish connecting within the deadline of {call.capability}"
            ) from exc
        live = connection.tools.get(declared.name)
        if live is None:
            raise ToolSchemaDrift(
                call.capability, declared.input_schema_sha256, "nothing: the server lists no such tool"
            )
        if live.schema_sha256 != declared.input_schema_sha256:
            raise ToolSchemaDrift(call.capability, declared.input_schema_sha256, live.schema_sha256)
        self._validate(call, live)
        call.record.tool = ToolUse(
            server=declared.server,
            tool=declared.name,
            schema_sha256=declared.input_schema_sha256,
            risk=declared.risk,
            arguments_sha256=call.payload_sha256,
            cost_micro_usd=declared.cost_micro_usd,
        )
        if declared.cost_micro_usd is not None:  # the bundle's price: what a budget stage reserves
            call = replace(call, cost_estimate_micro_usd=declared.cost_micro_usd)
        return await self._next(call)

    def _validate(self, call: Call, live: LiveTool) -> None:
        try:
            arguments = call.cedar_arguments() if call.payload else parse_arguments(b"{}")
        except ArgumentsNotMappable as exc:
            raise BadPayload(f"arguments of {call.capability}: {exc}") from exc
        validator = self._validator(live)
        error = jsonschema.exceptions.best_match(validator.iter_errors(_plain(arguments)))
        if error is not None:
            where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            raise BadPayload(
                f"arguments of {call.capability} do not match its input schema at {where}: {error.message}"
            )

    def _validator(self, live: LiveTool) -> Any:
        found = self._validators.get(live.schema_sha256)
        if found is None:
            try:
                cls = jsonschema.validators.validator_for(live.input_schema, default=jsonschema.Draft202012Validator)
                cls.check_schema(live.input_schema)
            except SchemaError as exc:
                raise BadPayload(f"the input schema of {live.name} is not valid JSON Schema: {exc.message}") from exc
            found = cls(live.input_schema)
            if len(self._validators) >= MAX_VALIDATORS:
                self._validators.pop(next(iter(self._validators)))
            self._validators[live.schema_sha256] = found
        return found


def _plain(value: object) -> object:
    """parse_arguments keeps numbers with a fraction as text (Cedar has no floats); JSON Schema
    must see them as numbers."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and type(value) is not str:  # _JsonNumberText
        return float(value)
    return value


def layer(policy: PolicyHolder, upstreams: McpUpstreams, clock: Clock) -> Layer:
    return lambda next: ToolCheck(next, policy, upstreams, clock)
