"""Weighted version routes and session pinning in the routing stage."""

from __future__ import annotations

import logging
import random
from collections import Counter

import pytest

from meshwarden.errors import NoHealthyInstance
from meshwarden.sidecar.catalog import Catalog
from meshwarden.sidecar.routes import RouteTable, SessionPins
from meshwarden.sidecar.stages import routing
from meshwarden.sidecar.stages.breaker import BreakerBoard
from meshwarden.v1 import registry_pb2
from tests.unit.sidecar.fakes import Recorder, call, catalog_of, instance

TWO_VERSIONS = (
    instance("a1", "billing", "2.3.1"),
    instance("a2", "billing", "2.3.1"),
    instance("b1", "billing", "2.4.0"),
)


class Now:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def stage(
    catalog: Catalog,
    weights: dict[str, int] | None = None,
    *,
    seed: int = 11,
    breakers: BreakerBoard | None = None,
    sessions: SessionPins | None = None,
) -> tuple[routing.Routing, RouteTable, SessionPins]:
    routes = RouteTable()
    if weights is not None:
        routes.set("billing.refund", weights)
    pins = sessions if sessions is not None else SessionPins()
    return routing.Routing(Recorder(), catalog, random.Random(seed), breakers, routes, pins), routes, pins


def versions_of(s: routing.Routing, n: int, **kw: object) -> Counter[str]:
    return Counter(str(s.choose(call(**kw)).version) for _ in range(n))


def test_versions_are_chosen_roughly_by_weight() -> None:
    s, _, _ = stage(catalog_of(*TWO_VERSIONS), {"2.3.1": 90, "2.4.0": 10})
    picks = versions_of(s, 1000)
    assert abs(picks["2.3.1"] / 1000 - 0.90) <= 0.05
    assert abs(picks["2.4.0"] / 1000 - 0.10) <= 0.05


def test_an_even_split_is_even_and_p2c_still_spreads_within_a_version() -> None:
    s, _, _ = stage(catalog_of(*TWO_VERSIONS), {"2.3.1": 50, "2.4.0": 50})
    instances = Counter(s.choose(call()).instance_id for _ in range(1000))
    assert abs((instances["a1"] + instances["a2"]) / 1000 - 0.5) <= 0.05
    assert instances["a1"] > 100 and instances["a2"] > 100


def test_weight_zero_and_unlisted_versions_are_not_chosen() -> None:
    catalog = catalog_of(*TWO_VERSIONS, instance("c1", "billing", "2.5.0"))
    s, _, _ = stage(catalog, {"2.3.1": 0, "2.4.0": 100})
    assert versions_of(s, 200) == Counter({"2.4.0": 200})


def test_weights_apply_only_within_the_callers_range() -> None:
    s, _, _ = stage(catalog_of(*TWO_VERSIONS), {"2.3.1": 1, "2.4.0": 99})
    assert versions_of(s, 100, version_range="~2.3.0") == Counter({"2.3.1": 100})


def test_when_no_weighted_version_is_live_routing_falls_back_to_all_instances() -> None:
    s, _, _ = stage(catalog_of(*TWO_VERSIONS), {"9.0.0": 100})
    assert set(versions_of(s, 300)) == {"2.3.1", "2.4.0"}


def test_a_weighted_version_whose_circuits_are_open_is_passed_over() -> None:
    board = BreakerBoard(failures=1, reset_s=60.0)
    board.breaker("b1").open()
    s, _, _ = stage(catalog_of(*TWO_VERSIONS), {"2.4.0": 100}, breakers=board)
    assert set(versions_of(s, 50)) == {"2.3.1"}


def test_a_route_update_replaces_or_clears_routes() -> None:
    routes = RouteTable()
    routes.set("billing.refund", {"2.3.1": 100})
    routes.set("shipping.track", {"1.0.0": 1})
    routes.apply(registry_pb2.RouteUpdate(full=False, routes=[registry_pb2.Route(capability="shipping.track")]))
    assert routes.weights("shipping.track") == {}
    assert routes.weights("billing.refund")
    routes.apply(registry_pb2.RouteUpdate(full=True))
    assert routes.weights("billing.refund") == {}


def test_a_session_keeps_its_first_version_when_the_weights_change() -> None:
    s, routes, _ = stage(catalog_of(*TWO_VERSIONS), {"2.3.1": 100, "2.4.0": 0})
    assert str(s.choose(call(session_id="s1")).version) == "2.3.1"
    routes.set("billing.refund", {"2.3.1": 0, "2.4.0": 100})
    assert versions_of(s, 50, session_id="s1") == Counter({"2.3.1": 50})
    assert str(s.choose(call(session_id="s2")).version) == "2.4.0"


def test_without_routes_a_session_pins_the_version_p2c_picked_first() -> None:
    s, _, pins = stage(catalog_of(*TWO_VERSIONS))
    first = str(s.choose(call(session_id="s1")).version)
    assert versions_of(s, 50, session_id="s1") == Counter({first: 50})
    assert len(pins) == 1


def test_a_session_moves_when_its_version_is_gone(caplog: pytest.LogCaptureFixture) -> None:
    catalog = catalog_of(*TWO_VERSIONS)
    s, _, _ = stage(catalog, {"2.4.0": 100})
    assert str(s.choose(call(session_id="s1")).version) == "2.4.0"
    catalog.apply(registry_pb2.WatchEvent(revision=5, removed=registry_pb2.InstanceRemoved(instance_id="b1")))
    with caplog.at_level(logging.INFO, logger="meshwarden.sidecar.stages.routing"):
        assert str(s.choose(call(session_id="s1")).version) == "2.3.1"
    assert "session s1 moved billing.refund from version 2.4.0 (it is gone) to 2.3.1" in caplog.text
    catalog.apply(registry_pb2.WatchEvent(revision=6, upserted=instance("b2", "billing", "2.4.0")))
    assert str(s.choose(call(session_id="s1")).version) == "2.3.1"  # pinned to the new one now


def test_a_session_moves_when_its_versions_circuits_are_open() -> None:
    board = BreakerBoard(failures=1, reset_s=60.0)
    s, _, _ = stage(catalog_of(*TWO_VERSIONS), {"2.4.0": 100}, breakers=board)
    assert str(s.choose(call(session_id="s1")).version) == "2.4.0"
    board.breaker("b1").open()
    assert str(s.choose(call(session_id="s1")).version) == "2.3.1"


def test_a_session_moves_when_its_versions_instances_failed_in_this_call() -> None:
    s, _, _ = stage(catalog_of(*TWO_VERSIONS), {"2.4.0": 100})
    assert str(s.choose(call(session_id="s1")).version) == "2.4.0"
    retry = call(session_id="s1", avoid_instances=frozenset({"b1"}), attempt=2)
    assert str(s.choose(retry).version) == "2.3.1"
    assert str(s.choose(call(session_id="s1")).version) == "2.3.1"


def test_a_pinned_version_outside_the_range_is_not_used() -> None:
    s, _, _ = stage(catalog_of(*TWO_VERSIONS), {"2.4.0": 100})
    assert str(s.choose(call(session_id="s1")).version) == "2.4.0"
    assert str(s.choose(call(session_id="s1", version_range="~2.3.0")).version) == "2.3.1"


def test_pins_are_a_bounded_lru_that_expires() -> None:
    now = Now()
    pins = SessionPins(max_sessions=2, ttl_s=10.0, now=now)
    s, _, _ = stage(catalog_of(*TWO_VERSIONS), {"2.4.0": 100}, sessions=pins)
    for session in ("s1", "s2", "s3"):
        s.choose(call(session_id=session))
    assert len(pins) == 2 and pins.get("s1", "billing.refund") is None
    assert pins.get("s3", "billing.refund") is not None
    now.t = 11.0
    assert pins.get("s3", "billing.refund") is None


def test_a_session_whose_versions_are_all_isolated_fails_naming_the_session_and_version() -> None:
    board = BreakerBoard(failures=1, reset_s=60.0)
    s, _, _ = stage(catalog_of(*TWO_VERSIONS), {"2.4.0": 100}, breakers=board)
    assert str(s.choose(call(session_id="s1")).version) == "2.4.0"
    for instance_id in ("a1", "a2", "b1"):
        board.breaker(instance_id).open()
    with pytest.raises(NoHealthyInstance) as info:
        s.choose(call(session_id="s1", version_range="^2.3"))
    assert "session s1 is on version 2.4.0, whose instances are all isolated (circuit open)" in info.value.message
    assert "no other version in range" in info.value.message and "billing.refund (^2.3)" in info.value.message
    assert s.choose(call()).instance_id in {"a1", "a2", "b1"}  # without a session the breaker stage says it


def test_a_session_whose_version_left_the_range_says_so() -> None:
    catalog = catalog_of(*TWO_VERSIONS)
    s, _, _ = stage(catalog, {"2.4.0": 100})
    assert str(s.choose(call(session_id="s1")).version) == "2.4.0"
    catalog.apply(registry_pb2.WatchEvent(revision=5, removed=registry_pb2.InstanceRemoved(instance_id="b1")))
    with pytest.raises(NoHealthyInstance) as info:
        s.choose(call(session_id="s1", version_range="^2.4"))
    assert "live versions are 2.3.1; session s1 was on version 2.4.0" in info.value.message
