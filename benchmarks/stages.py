"""The sidecar's stages alone: CPU per call through the real outbound and inbound pipelines,
without the network.

`latency.py` measures the mesh end to end, where the stages are a small share of a call
(most of it is the grpc.aio hops) and runs on a shared machine differ by more than the
stages cost. This script takes the network out: it builds both pipelines exactly as
`sidecar/pipeline.py` does, from a real `Runtime` (catalog, breakers, routes, schemas, local
agent), with the peer hop and the agent replaced by handlers that answer at once, and times
calls through them in one process. So it tells what the stages cost and what a change to
them saved, to the microsecond, but not what a call costs.

Policy runs in development mode (`allow_without_policy`, no bundle), so Cedar is left out:
its decisions are `policy_decisions.py`'s subject. Each figure is the fastest of `--repeats`
runs of `--calls` calls (the least disturbed by other work on the machine), for calls with
and without an idempotency key, and for the pipelines without the resilience stages
(retries, breaker, idempotency), to tell what those cost in place.

    PYTHONPATH=. .venv/bin/python benchmarks/stages.py [--calls 20000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Sequence

from meshwarden.clock import SystemClock
from meshwarden.identity.svid import Svid
from meshwarden.schema_hash import schema_hash
from meshwarden.sidecar import config, pipeline
from meshwarden.sidecar.agent_app import AgentApp
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Caller, Handler, Layer, Reply, compose
from meshwarden.sidecar.catalog import Catalog
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.peer_channels import PeerChannels
from meshwarden.sidecar.runtime import Runtime
from meshwarden.sidecar.schemas import SchemaCache
from meshwarden.sidecar.stages.breaker import BreakerBoard
from meshwarden.v1 import catalog_pb2, registry_pb2

TRUST_DOMAIN = "spiffe://meshwarden.local"
RESILIENCE = frozenset({"retries", "breaker", "idempotency"})
SCHEMA = json.dumps({"type": "object", "properties": {"data": {"type": "string"}}})
PAYLOAD = json.dumps({"data": "x" * 1000}).encode()


def _no_svid() -> Svid:
    raise RuntimeError("the stages benchmark opens no connection")


def runtime(agent: str, instance_id: str) -> Runtime:
    cfg = config.load(argparse.Namespace(agent=agent, data_dir="/nonexistent", allow_without_policy="true"), {})
    catalog = Catalog()
    echo = catalog_pb2.Capability(
        name="echo", input_schema_json=SCHEMA, schema_hash=schema_hash(json.loads(SCHEMA), {})
    )
    instances = [
        catalog_pb2.Instance(
            instance_id=f"echo-{n}",
            agent="echo",
            version="1.0.0",
            peer_address=f"127.0.0.1:{9000 + n}",
            spiffe_id=f"{TRUST_DOMAIN}/agent/echo",
            capabilities=[echo],
        )
        for n in (1, 2)
    ]
    catalog.apply(registry_pb2.WatchEvent(revision=1, snapshot=registry_pb2.CatalogSnapshot(instances=instances)))
    local = LocalAgent(agent, instance_id, "127.0.0.1:1", f"{TRUST_DOMAIN}/agent/{agent}")
    local.register("1.0.0", [echo])
    return Runtime(
        config=cfg,
        clock=SystemClock(),
        rng=random.Random(1),
        catalog=catalog,
        schemas=SchemaCache(),
        local=local,
        peer_channels=PeerChannels([], _no_svid),
        agent_app=AgentApp("127.0.0.1:1", []),
        policy=PolicyHolder(),
        breakers=BreakerBoard(),
    )


async def _answer(call: Call) -> Reply:
    target = call.target
    return Reply(b'{"ok":true}', target.instance_id if target else "", "echo", "1.0.0")


def _without(layers: list[Layer], names: frozenset[str]) -> list[Layer]:
    """The layers whose stage is not in `names` (a layer is named by the module of what it builds)."""
    return [layer for layer in layers if type(layer(_answer)).__module__.rsplit(".", 1)[-1] not in names]


def outbound(rt: Runtime, skip: frozenset[str]) -> Handler:
    return compose(_without(pipeline.outbound_layers(rt), skip), innermost=_answer)


def inbound(rt: Runtime, skip: frozenset[str]) -> Handler:
    return compose(_without(pipeline.inbound_layers(rt), skip), innermost=_answer)


def outbound_call(keyed: bool) -> Call:
    return Call(
        call_id=uuid.uuid4().hex,
        capability="echo",
        payload=PAYLOAD,
        caller=Caller("client", "client-1", f"{TRUST_DOMAIN}/agent/client"),
        deadline=time.monotonic() + 30,
        idempotency_key=uuid.uuid4().hex if keyed else "",
    )


def inbound_call(keyed: bool) -> Call:
    return Call(
        call_id=uuid.uuid4().hex,
        capability="echo",
        payload=PAYLOAD,
        caller=Caller("client", "client-1", f"{TRUST_DOMAIN}/agent/client"),
        deadline=time.monotonic() + 30,
        idempotency_key=uuid.uuid4().hex if keyed else "",
        target_instance_id="echo-1",
        claimed_caller="client",
        schema_hash=schema_hash(json.loads(SCHEMA), {}),
    )


async def per_call_us(handler: Handler, make: Callable[[], Call], calls: int, repeats: int) -> float:
    """CPU time of this process, fastest of `repeats` runs after one unmeasured, in µs per call;
    building the calls is not timed. CPU time, not wall time: the machine may be shared."""
    best = float("inf")
    for run in range(repeats + 1):
        batch = [make() for _ in range(calls)]
        started = time.process_time()
        for call in batch:
            await handler(call)
        if run:
            best = min(best, (time.process_time() - started) / calls * 1e6)
    return best


async def measure(calls: int, repeats: int) -> list[tuple[str, float]]:
    rows = []
    for direction, build, make, agent in (
        ("outbound", outbound, outbound_call, "client"),
        ("inbound", inbound, inbound_call, "echo"),
    ):
        for keyed in (False, True):
            for skip, label in ((frozenset(), "all stages"), (RESILIENCE, "without retries, breaker, idempotency")):
                handler = build(runtime(agent, f"{agent}-1" if direction == "outbound" else "echo-1"), skip)
                us = await per_call_us(handler, lambda: make(keyed), calls, repeats)  # noqa: B023 - used at once
                rows.append((f"{direction:8s} {'keyed  ' if keyed else 'unkeyed'} {label}", us))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per run")
    parser.add_argument("--repeats", type=int, default=7, help="runs per figure; the fastest counts")
    args = parser.parse_args(argv)
    for label, us in asyncio.run(measure(args.calls, args.repeats)):
        print(f"{label:58s} {us:7.2f} µs per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
