from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from meshwarden.errors import BadPayload, NoHealthyInstance, SchemaDrift, UnknownCapability
from meshwarden.sidecar.catalog import Catalog
from meshwarden.sidecar.latency import LatencyBoard
from meshwarden.sidecar.stages import routing
from meshwarden.v1 import registry_pb2
from tests.unit.sidecar.fakes import FakeClock, Recorder, call, catalog_of, hash_of, instance


def route(catalog: Catalog, inner: Recorder | None = None) -> tuple[routing.Routing, Recorder]:
    rec = inner or Recorder()
    return routing.Routing(rec, catalog, random.Random(7)), rec


async def test_unknown_capability_is_named() -> None:
    stage, _ = route(catalog_of(instance("b1", "billing", "2.0.0")))
    with pytest.raises(UnknownCapability) as info:
        await stage(call("shipping.track"))
    assert "shipping.track" in info.value.message


async def test_before_the_first_catalog_the_sidecar_says_it_is_not_synced() -> None:
    stage, _ = route(Catalog())
    with pytest.raises(NoHealthyInstance) as info:
        await stage(call())
    assert "not received the catalog" in info.value.message


async def test_capability_whose_last_instance_left_is_unavailable_not_unknown() -> None:
    catalog = catalog_of(instance("b1", "billing", "2.0.0"))
    catalog.apply(registry_pb2.WatchEvent(revision=2, removed=registry_pb2.InstanceRemoved(instance_id="b1")))
    stage, _ = route(catalog)
    with pytest.raises(NoHealthyInstance) as info:
        await stage(call())
    assert "last instance left" in info.value.message


async def test_version_range_selects_only_matching_versions() -> None:
    stage, rec = route(catalog_of(instance("b1", "billing", "1.9.0"), instance("b2", "billing", "2.4.0")))
    for _ in range(20):
        await stage(call(version_range="^2"))
    assert {c.target.instance_id for c in rec.calls if c.target} == {"b2"}


async def test_no_version_in_range_lists_live_versions() -> None:
    stage, _ = route(catalog_of(instance("b1", "billing", "1.9.0"), instance("b2", "billing", "2.4.0")))
    with pytest.raises(NoHealthyInstance) as info:
        await stage(call(version_range="^3"))
    assert "1.9.0, 2.4.0" in info.value.message


async def test_invalid_range_is_bad_input() -> None:
    stage, _ = route(catalog_of(instance("b1", "billing", "1.9.0")))
    with pytest.raises(BadPayload) as info:
        await stage(call(version_range="not a range!"))
    assert "not a range!" in info.value.message


async def test_pinned_schema_routes_to_matching_hash_only() -> None:
    stage, rec = route(
        catalog_of(
            instance("old", "billing", "2.0.0", schema_hash=hash_of(1)),
            instance("new", "billing", "2.1.0", schema_hash=hash_of(2)),
        )
    )
    for _ in range(10):
        await stage(call(schema_hash=hash_of(1)))
    assert {c.target.instance_id for c in rec.calls if c.target} == {"old"}


async def test_pinned_schema_that_nobody_serves_is_drift() -> None:
    stage, _ = route(catalog_of(instance("b1", "billing", "2.0.0", schema_hash=hash_of(1))))
    with pytest.raises(SchemaDrift) as info:
        await stage(call(schema_hash=hash_of(9)))
    assert hash_of(9) in info.value.message and hash_of(1) in info.value.message


async def test_p2c_avoids_the_instance_with_a_call_in_flight() -> None:
    held = Recorder(hold=asyncio.Event())
    stage, _ = route(catalog_of(instance("b1", "billing", "2.0.0"), instance("b2", "billing", "2.0.0")), held)
    first = asyncio.create_task(stage(call()))
    await asyncio.sleep(0)
    busy = held.calls[0].target.instance_id if held.calls[0].target else ""
    released = Recorder()
    stage._next = released  # the next calls complete at once
    for _ in range(10):
        await stage(call())
    assert busy not in {c.target.instance_id for c in released.calls if c.target}
    assert held.hold is not None
    held.hold.set()
    await first


def measured(latency: LatencyBoard, instance_id: str, seconds: float, now: float) -> None:
    for _ in range(2):  # the first answer is not measured (it paid for the connection)
        latency.observe("billing.refund", instance_id, seconds, now)


async def test_p2c_sends_less_traffic_to_an_instance_that_answered_markedly_slower() -> None:
    clock = FakeClock()
    latency = LatencyBoard(clock.monotonic)
    catalog = catalog_of(instance("b1", "billing", "2.0.0"), instance("b2", "billing", "2.0.0"))
    stage = routing.Routing(Recorder(), catalog, random.Random(7), latency=latency)
    measured(latency, "b1", 0.300, clock.now)
    measured(latency, "b2", 0.010, clock.now)
    picks = Counter(stage.choose(call()).instance_id for _ in range(200))
    assert picks["b2"] == 200  # two instances: P2C compares both, and b1 is 30 times slower
    clock.now += 60  # b1 got no calls for a minute, b2 kept answering in 10 ms: b1 gets a probe
    measured(latency, "b2", 0.010, clock.now)
    assert stage.choose(call()).instance_id == "b1"


async def test_comparable_latencies_leave_the_choice_to_calls_in_flight() -> None:
    clock = FakeClock()
    latency = LatencyBoard(clock.monotonic)
    catalog = catalog_of(instance("b1", "billing", "2.0.0"), instance("b2", "billing", "2.0.0"))
    stage = routing.Routing(Recorder(), catalog, random.Random(7), latency=latency)
    measured(latency, "b1", 0.004, clock.now)
    measured(latency, "b2", 0.003, clock.now)  # faster, but not markedly
    picks = Counter(stage.choose(call()).instance_id for _ in range(200))
    assert picks["b1"] > 50 and picks["b2"] > 50


async def test_routing_feeds_the_latency_board_with_each_attempt() -> None:
    clock = FakeClock()
    latency = LatencyBoard(clock.monotonic)
    stage, _ = route(catalog_of(instance("b1", "billing", "2.0.0")))
    stage._latency = latency
    await stage(call())
    await stage(call())
    (view,) = latency.snapshot()
    assert (view.capability, view.instance_id, view.calls) == ("billing.refund", "b1", 1)
