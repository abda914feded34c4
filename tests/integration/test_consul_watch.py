"""The Consul watch in this process against the fake Consul agent over real HTTP: what it
accepts into the routing catalog, and what it refuses."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator

import pytest

from meshwarden.addresses import HostPort
from meshwarden.clock import SystemClock
from meshwarden.sidecar.catalog import Catalog
from meshwarden.sidecar.discovery.consul_api import ConsulApi, TtlCheck
from meshwarden.sidecar.discovery.consul_service import schema_document, schema_key, service_definition
from meshwarden.sidecar.discovery.consul_settings import ConsulSettings
from meshwarden.sidecar.discovery.consul_watch import ConsulWatch
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.v1 import catalog_pb2
from tests.integration.consul_fake import FakeConsul
from tests.integration.test_consul_discovery import eventually

pytestmark = pytest.mark.integration

TD = "meshwarden.local"
SCHEMA = json.dumps({"type": "object", "required": ["amount"]})


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeConsul, ConsulApi]]:
    fake = FakeConsul(token="t")
    await fake.start()
    settings = ConsulSettings(
        address=HostPort("127.0.0.1", fake.port), scheme="http", token="t", ca_file=None, client_cert=None, verify=True
    )
    client = ConsulApi(settings)
    try:
        yield fake, client
    finally:
        await client.close()
        await fake.close()


def local(name: str, instance_id: str, spiffe_id: str, port: int) -> LocalAgent:
    agent = LocalAgent(name, instance_id, f"127.0.0.1:{port}", spiffe_id)
    agent.register("1.0.0", [catalog_pb2.Capability(name="billing.refund", input_schema_json=SCHEMA)])
    return agent


async def register(client: ConsulApi, agent: LocalAgent, *, with_schemas: bool = True) -> None:
    assert agent.registration is not None
    if with_schemas:
        for spec in agent.registration.capabilities.values():
            await client.kv_put(schema_key(spec.schema_hash), schema_document(spec))
    check = TtlCheck(f"meshwarden:{agent.instance_id}", "check", 30.0, 60.0, "passing")
    await client.register(service_definition(agent, agent.registration, check))


async def watching(client: ConsulApi, catalog: Catalog) -> asyncio.Task[None]:
    watch = ConsulWatch(client, catalog, trust_domain=TD, wait_s=1.0, rng=random.Random(1), clock=SystemClock())
    return asyncio.create_task(watch.run())


async def test_an_entry_listing_another_agent_s_identity_never_reaches_routing(
    api: tuple[FakeConsul, ConsulApi], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = api
    catalog = Catalog()
    task = await watching(client, catalog)
    try:
        # "mallory" registers under the name billing, listing its own SPIFFE ID: routing would
        # then accept mallory's certificate for billing. Refused, and said so.
        await register(client, local("billing", "mallory-1", f"spiffe://{TD}/agent/mallory", 7001))
        await register(client, local("billing", "billing-1", f"spiffe://{TD}/agent/billing", 7002))
        await eventually(lambda: {i.instance_id for i in catalog.instances()} == {"billing-1"}, "the real billing")
        await eventually(lambda: "only spiffe://meshwarden.local/agent/billing may serve" in caplog.text, "a warning")
        assert [e.instance_id for e in catalog.endpoints("billing.refund")] == ["billing-1"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_instance_waits_for_its_schema_document_then_routes(api: tuple[FakeConsul, ConsulApi]) -> None:
    fake, client = api
    catalog = Catalog()
    task = await watching(client, catalog)
    agent = local("billing", "billing-1", f"spiffe://{TD}/agent/billing", 7002)
    try:
        await register(client, agent, with_schemas=False)
        await eventually(lambda: fake.requests_to("GET", "/v1/kv/meshwarden/schemas/"), "a schema read")
        assert not catalog.instances()  # not routable without its contract
        assert agent.registration is not None
        spec = agent.registration.capabilities["billing.refund"]
        forged = json.dumps({"input_schema_json": "{}", "output_schema_json": ""}).encode()
        await client.kv_put(schema_key(spec.schema_hash), forged)  # a document that does not hash right
        await eventually(lambda: len(fake.requests_to("GET", "/v1/kv/meshwarden/schemas/")) >= 3, "more reads")
        assert not catalog.instances()
        await client.kv_put(schema_key(spec.schema_hash), schema_document(spec))
        await eventually(lambda: catalog.endpoints("billing.refund"), "routable once the document is right")
        assert catalog.endpoints("billing.refund")[0].capability.input_schema_json == SCHEMA
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
