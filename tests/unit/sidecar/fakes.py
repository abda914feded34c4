"""Test doubles for stage unit tests: a catalog built from plain values, a recording inner
handler, a clock the test moves by hand."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from meshwarden.sidecar.call import Call, Caller, Reply
from meshwarden.sidecar.catalog import Catalog
from meshwarden.v1 import catalog_pb2, registry_pb2

OBJECT_WITH_AMOUNT = json.dumps(
    {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "integer"}}}
)


def hash_of(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def instance(
    instance_id: str,
    agent: str,
    version: str,
    capability: str = "billing.refund",
    schema: str = OBJECT_WITH_AMOUNT,
    schema_hash: str = hash_of(1),
) -> catalog_pb2.Instance:
    return catalog_pb2.Instance(
        instance_id=instance_id,
        agent=agent,
        version=version,
        peer_address=f"127.0.0.1:{9000 + len(instance_id)}",
        capabilities=[catalog_pb2.Capability(name=capability, input_schema_json=schema, schema_hash=schema_hash)],
    )


def catalog_of(*instances: catalog_pb2.Instance, revision: int = 1) -> Catalog:
    catalog = Catalog()
    catalog.apply(
        registry_pb2.WatchEvent(revision=revision, snapshot=registry_pb2.CatalogSnapshot(instances=instances))
    )
    return catalog


def call(
    capability: str = "billing.refund", payload: bytes = b'{"amount": 50}', deadline: float = 1e9, **kw: object
) -> Call:
    return Call(
        call_id="c1",
        capability=capability,
        payload=payload,
        caller=Caller("caller", "caller-1"),
        deadline=deadline,
        **kw,
    )  # type: ignore[arg-type]


@dataclass
class Recorder:
    """Inner handler: records the calls it got, answers from their target."""

    calls: list[Call] = field(default_factory=list)
    hold: asyncio.Event | None = None

    async def __call__(self, c: Call) -> Reply:
        self.calls.append(c)
        if self.hold is not None:
            await self.hold.wait()
        target = c.target
        return Reply(b"{}", target.instance_id if target else "", target.agent if target else "", "")


@dataclass
class FakeClock:
    now: float = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now
