"""A real agent for the integration tests: echoes, reports the deadline it was given, sleeps,
fails on request, and can break its own output contract."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import grpc
from opentelemetry import trace

import meshwarden

parser = argparse.ArgumentParser()
parser.add_argument("--sidecar", required=True)
parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT, unix:PATH, or 'private' (the SDK's default)")
parser.add_argument("--version", default="1.0.0")
parser.add_argument("--schema-variant", default="a", help="b changes echo's input schema (schema drift)")
parser.add_argument("--work-as", default="probe.work", help="the name probe.work is served under (call trees)")
parser.add_argument("--delay-s", type=float, default=0.0, help="echo answers this much later (a slow instance)")
parser.add_argument("--fail-every", type=int, default=0, help="probe.flaky fails every Nth call (0: never)")
parser.add_argument("--relay-as", default="probe.relay", help="name of the relay capability (distinct per agent)")
options = parser.parse_args()

agent = meshwarden.Agent(
    version=options.version, sidecar=options.sidecar, listen=None if options.listen == "private" else options.listen
)
calls_seen = 0

ECHO_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {"n": {"type": "integer"}, "text": {"type": "string"}},
}
if options.schema_variant == "b":
    ECHO_INPUT = {**ECHO_INPUT, "required": ["text"]}


@agent.capability("echo", input_schema=ECHO_INPUT)
async def echo(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    global calls_seen
    calls_seen += 1
    if options.delay_s:
        await asyncio.sleep(options.delay_s)
    return {
        "echo": args,
        "instance_id": agent.instance_id,
        "version": agent.version,
        "pid": os.getpid(),
        "caller": ctx.caller_agent,
        "session_id": ctx.session_id,
        "calls_seen": calls_seen,
        **({"task": [ctx.task_id, ctx.fencing_token]} if ctx.task_id else {}),  # a call made for a task
    }


runs_by_key: dict[str, int] = {}


@agent.capability("probe.count")
async def count(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    """Counts its runs per idempotency key (after an optional sleep, so calls are in flight)."""
    await asyncio.sleep(args.get("sleep", 0))
    runs_by_key[ctx.idempotency_key] = runs_by_key.get(ctx.idempotency_key, 0) + 1
    return {"key": ctx.idempotency_key, "runs": runs_by_key[ctx.idempotency_key], "instance_id": agent.instance_id}


@agent.capability("probe.runs")
async def runs(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    return {"runs_by_key": runs_by_key, "instance_id": agent.instance_id}


@agent.capability("probe.deadline")
async def deadline(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    return {"time_remaining": ctx.time_remaining()}


@agent.capability("probe.deadline_default", timeout_s=7.0)
async def deadline_default(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    """Declares a 7 s default timeout; reports the deadline it was given."""
    return {"time_remaining": ctx.time_remaining()}


@agent.capability("probe.slow_default", timeout_s=0.5)
async def slow_default(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    """Declares a 0.5 s default timeout, and takes longer."""
    await asyncio.sleep(3)
    return {}


flaky_calls = 0


@agent.capability("probe.flaky")
async def flaky(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    """Fails every --fail-every'th call with INTERNAL (never when 0)."""
    global flaky_calls
    flaky_calls += 1
    if options.fail_every and flaky_calls % options.fail_every == 0:
        raise RuntimeError("intermittent failure")
    return {"instance_id": agent.instance_id, "n": flaky_calls}


@agent.capability("probe.sleep", input_schema={"type": "object", "required": ["seconds"]})
async def sleep(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    await asyncio.sleep(args["seconds"])
    return {"slept": args["seconds"]}


started: list[str] = []
cancelled: list[str] = []


@agent.capability("probe.wait")
async def wait(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    """Waits `seconds`, recording (by `tag`) that it started and whether it was cancelled."""
    started.append(args.get("tag", ""))
    try:
        await asyncio.sleep(args.get("seconds", 30))
    except asyncio.CancelledError:
        cancelled.append(args.get("tag", ""))
        raise
    return {"waited": args.get("seconds", 30), "tag": args.get("tag", "")}


@agent.capability("probe.waits")
async def waits(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    return {"started": started, "cancelled": cancelled, "instance_id": agent.instance_id}


held: dict[str, int] = {}
releases: dict[str, asyncio.Event] = {}


@agent.capability("probe.hold")
async def hold(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    """Counts its runs per `tag`, then holds the call until probe.release frees that tag: a
    handler that outlives its caller's deadline for as long as a test wants."""
    tag = args.get("tag", "")
    held[tag] = held.get(tag, 0) + 1
    await releases.setdefault(tag, asyncio.Event()).wait()
    return {"tag": tag, "runs": held[tag], "key": ctx.idempotency_key}


@agent.capability("probe.release")
async def release(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    """Frees the calls probe.hold holds under `tag` (and any that arrive later)."""
    releases.setdefault(args.get("tag", ""), asyncio.Event()).set()
    return {"held": held}


@agent.capability("probe.held")
async def held_runs(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    return {"held": held, "pid": os.getpid()}


@agent.capability("probe.fail")
async def fail(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    if args.get("how") == "refuse":
        raise meshwarden.HandlerError("the probe refuses: amount too high")
    raise RuntimeError("secret internal detail")


@agent.capability("probe.busy")
async def busy(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    """Answers UNAVAILABLE on purpose when this instance is among `busy` (its model provider is
    down, say): gRPC's "try again", for the mesh to retry elsewhere."""
    if agent.instance_id in args.get("busy", []):
        raise meshwarden.HandlerError("busy: the model provider is down", grpc.StatusCode.UNAVAILABLE)
    return {"instance_id": agent.instance_id, "attempt": ctx.attempt}


@agent.capability("probe.bad_result", output_schema={"type": "object", "required": ["ok"]})
async def bad_result(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    return {"not_ok": True}


@agent.capability(options.work_as)
async def work(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    """Reports the usage it is given (deterministic costs for the tests), makes the nested calls
    it is given (a tree within one session), reports the session's outcome when asked, and
    fails at the end when asked."""
    if "usage" in args:
        ctx.report_usage(**args["usage"])
    children = []
    for nested in args.get("calls", []):
        try:  # on_behalf_of: a principal this agent claims for the session (its sidecar must refuse another)
            result = await ctx.invoke(
                nested["capability"],
                nested.get("args", {}),
                on_behalf_of=nested.get("on_behalf_of"),
                session_labels=nested.get("session_labels"),  # later labels: the sidecar keeps the first
            )
        except meshwarden.Refused as refused:
            if not nested.get("catch"):
                raise
            children.append({"refused": refused.kind})
            continue
        children.append(
            {"call_id": result.call_id, "value": result.value, "cost": result.usage and result.usage.cost_micro_usd}
        )
    if "outcome" in args:
        await ctx.report_outcome(args["outcome"], args.get("detail", ""))
    if args.get("fail"):  # after spending: the spend must survive the failure
        raise meshwarden.HandlerError("failed after spending")
    return {
        "call_id": ctx.call_id,
        "parent_call_id": ctx.parent_call_id,
        "session_id": ctx.session_id,
        "workflow_id": ctx.workflow_id,
        "on_behalf_of": ctx.on_behalf_of,
        "session_labels": dict(ctx.session_labels),
        "children": children,
    }


@agent.capability("probe.sync_relay")
def sync_relay(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    """A plain-def handler that calls on through the mesh with the blocking client."""
    inner = ctx.invoke_sync("echo", {"text": "via sync"})
    return {"relayed": inner.value, "by": inner.agent}


@agent.capability(options.relay_as)
async def relay(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    """Reports the trace context it runs in (no OpenTelemetry SDK here: only the API), then
    calls `to` if given, so tests can follow one trace across agents."""
    here = trace.get_current_span().get_span_context()
    seen = {"agent": agent.name, "trace_id": f"{here.trace_id:032x}", "parent_span_id": f"{here.span_id:016x}"}
    if not args.get("to"):
        return {"seen": [seen]}
    inner = await ctx.invoke(args["to"], args.get("payload", {}))
    return {"seen": [seen, *inner.value["seen"]]}


agent.run(announce=True)
