"""The stage order in sidecar/pipeline.py is the order README.md documents, and the outer
stages are one composition that every kind of call passes (shown with a test double kind)."""

from __future__ import annotations

import argparse
import random
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
import semantic_version
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from meshwarden.clock import SystemClock
from meshwarden.errors import KillSwitchEngaged, PayloadTooLarge, PolicyDenied
from meshwarden.identity.svid import Svid
from meshwarden.sidecar import config, pipeline, tracing_setup
from meshwarden.sidecar.agent_app import AgentApp
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Caller, Handler, Layer, Reply
from meshwarden.sidecar.call_metrics import OTHER_CAPABILITY
from meshwarden.sidecar.catalog import CapabilitySpec, Catalog, Endpoint
from meshwarden.sidecar.controls import Controls
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.peer_channels import PeerChannels
from meshwarden.sidecar.receipt_spool import ReceiptSpool, SpoolReader, spool_path
from meshwarden.sidecar.runtime import Runtime
from meshwarden.sidecar.schemas import SchemaCache
from meshwarden.sidecar.stages.breaker import BreakerBoard
from meshwarden.sidecar.tracing_settings import TracingSettings
from meshwarden.sidecar.tracing_setup import SidecarTracing
from meshwarden.usage import Usage
from meshwarden.v1 import controls_pb2 as K
from meshwarden.v1 import receipts_pb2

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

README = Path(__file__).parents[3] / "README.md"


def documented(direction: str) -> list[str]:
    text = README.read_text()
    block = text.split(f"<!-- pipeline:{direction} -->", 1)[1].split("<!-- /pipeline -->", 1)[0]
    return re.findall(r"^\d+\. `([a-z_]+)`", block, flags=re.MULTILINE)


def stage_names(handler: Handler) -> list[str]:
    names = []
    current: object = handler
    while current is not None:
        names.append(type(current).__module__.rsplit(".", 1)[-1])
        current = getattr(current, "_next", None)
    return names


def no_svid() -> Svid:
    raise AssertionError("building the pipeline must not need an SVID")


async def runtime(
    tmp_path: Path, tracing: SidecarTracing | None = None, controls: Controls | None = None, **options: object
) -> Runtime:
    cfg = config.load(argparse.Namespace(agent="a", data_dir="/nonexistent", **options), {})
    return Runtime(
        config=cfg,
        clock=SystemClock(),
        rng=random.Random(1),
        catalog=Catalog(),
        schemas=SchemaCache(),
        local=LocalAgent("a", "a-1", "127.0.0.1:1", ""),
        peer_channels=PeerChannels([], no_svid),
        agent_app=AgentApp("127.0.0.1:1", []),
        policy=PolicyHolder(),
        breakers=BreakerBoard(),
        receipts=ReceiptSpool.open(tmp_path, instance_id="a-1", spiffe_id=""),
        tracing=tracing,
        controls=controls or Controls(None, time.time),
    )


async def test_outbound_order_matches_the_readme(tmp_path: Path) -> None:
    assert stage_names(pipeline.outbound(await runtime(tmp_path))) == documented("outbound")
    assert documented("outbound")[-1] == "peer"


async def test_the_outer_stages_come_first_for_every_kind_as_documented(tmp_path: Path) -> None:
    outer = [
        type(layer(_answer)).__module__.rsplit(".", 1)[-1] for layer in pipeline.outer_layers(await runtime(tmp_path))
    ]
    assert outer == documented("outer")
    admission = ["known_capability"]  # an agent call's own check, placed among the outer stages before policy
    assert [name for name in documented("outbound") if name not in admission][: len(outer)] == outer
    assert documented("outbound").index("known_capability") == documented("outbound").index("outbound_policy") - 1


async def test_inbound_order_matches_the_readme(tmp_path: Path) -> None:
    assert stage_names(pipeline.inbound(await runtime(tmp_path))) == documented("inbound")
    assert documented("inbound")[-1] == "deliver"


async def test_tool_order_matches_the_readme(tmp_path: Path) -> None:
    assert stage_names(pipeline.tool(await runtime(tmp_path))) == documented("tool")
    assert documented("tool")[-1] == "mcp_server"


async def test_every_kind_of_outbound_call_shares_the_outer_stages(tmp_path: Path) -> None:
    rt = await runtime(tmp_path)
    outer = ["tracing", "metrics", "receipts", "session_principal", "kill_switch", "task_fence", "payload_limit"]
    assert stage_names(pipeline.outbound(rt))[: len(outer)] == outer == stage_names(pipeline.tool(rt))[: len(outer)]
    tool = stage_names(pipeline.tool(rt))
    assert tool.index("tool_check") < tool.index("outbound_policy") < tool.index("approval") < tool.index("mcp_server")


# A test double kind of call: its own routing (one fixed server) and last hop, behind the same
# outer stages as every other kind.
SEARCH = Endpoint(
    "search-1",
    "search",
    semantic_version.Version("1.0.0"),
    "127.0.0.1:9",
    "",
    CapabilitySpec("search.query", "{}", "{}", ""),
)


def route_to_search() -> Layer:
    class Route:
        def __init__(self, next: Handler) -> None:
            self._next = next

        async def __call__(self, call: Call) -> Reply:
            call.record.target, call.record.attempt = SEARCH, call.attempt
            return await self._next(replace(call, target=SEARCH))

    return Route


async def _answer(call: Call) -> Reply:
    assert call.target is SEARCH and call.kind == "tool"
    return Reply(b'{"hits":3}', SEARCH.instance_id, SEARCH.agent, "1.0.0", Usage(input_tokens=5, cost_micro_usd=9))


def tool_call(payload: bytes = b'{"q":"x"}') -> Call:
    return Call(
        call_id="t1",
        capability="search.query",
        payload=payload,
        caller=Caller("a", "a-1"),
        deadline=time.monotonic() + 5,
        kind="tool",
        traceparent=PARENT,
    )


def spooled(tmp_path: Path) -> list[receipts_pb2.Receipt]:
    reader = SpoolReader(spool_path(tmp_path))
    found = []
    for chain in reader.chains():
        batch = reader.batch(chain, 1000, 1 << 30)
        for body in batch.bodies if batch else ():
            found.append(receipts_pb2.Receipt.FromString(body))
    return found


async def test_a_new_kind_of_call_passes_the_same_outer_stages(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    traced = tracing_setup.build(TracingSettings(enabled=True), agent="a", instance_id="a-1", exporter=exporter)
    rt = await runtime(tmp_path, traced, allow_without_policy=True)
    handler = pipeline.of_kind(rt, [route_to_search()], _answer)
    reply = await handler(tool_call())
    assert reply.result == b'{"hits":3}'
    [receipt] = spooled(tmp_path)  # the receipt, with the usage the last hop reported
    assert (receipt.capability, receipt.callee_agent, receipt.status) == ("search.query", "search", "OK")
    assert receipt.usage.cost_micro_usd == 9 and receipt.attempt == 1
    calls = rt.metrics.registry.get_sample_value(
        "meshwarden_sidecar_calls_total",
        {"direction": "outbound", "capability": OTHER_CAPABILITY, "status": "OK", "error": ""},
    )
    assert calls == 1  # the metric (a capability the catalog does not list is OTHER_CAPABILITY)
    assert traced is not None
    traced.provider.force_flush()
    [span] = exporter.get_finished_spans()  # the span, continuing the caller's trace
    assert span.context is not None and f"{span.context.trace_id:032x}" == PARENT.split("-")[1]
    assert span.attributes is not None and span.attributes["meshwarden.instance"] == "search-1"


async def test_the_outer_refusals_hold_for_a_new_kind_of_call(tmp_path: Path) -> None:
    controls = Controls(None, time.time)
    rt = await runtime(tmp_path, controls=controls, max_payload_bytes=16)
    handler = pipeline.of_kind(rt, [route_to_search()], _answer)
    with pytest.raises(PolicyDenied):  # no bundle: default deny, for every kind
        await handler(tool_call())
    with pytest.raises(PayloadTooLarge):
        await handler(tool_call(b'{"q":"' + b"x" * 32 + b'"}'))
    controls.apply(
        K.ControlsUpdate(
            revision=1,
            kill_switches=[
                K.KillSwitch(id="ks-1", scope_kind=K.SCOPE_KIND_CAPABILITY, scope_value="search.query", reason="r")
            ],
        )
    )
    with pytest.raises(KillSwitchEngaged) as killed:
        await handler(tool_call())
    assert killed.value.switch_id == "ks-1"
    assert [(r.status, r.error_kind, r.kill_switch_id) for r in spooled(tmp_path)] == [
        ("PERMISSION_DENIED", "policy_denied", ""),
        ("RESOURCE_EXHAUSTED", "payload_too_large", ""),
        ("FAILED_PRECONDITION", "killed", "ks-1"),
    ]


async def test_model_order_matches_the_readme(tmp_path: Path) -> None:
    assert stage_names(pipeline.model(await runtime(tmp_path))) == documented("model")
    assert documented("model")[-1] == "provider"
