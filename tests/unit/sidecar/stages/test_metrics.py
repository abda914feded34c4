"""The metrics stage counts a call once it ends, with bounded labels, from the call's record."""

from __future__ import annotations

import grpc
import pytest

from meshwarden.errors import PolicyDenied, Unclassified
from meshwarden.sidecar.call import Call, Reply
from meshwarden.sidecar.call_metrics import SidecarMetrics, SidecarState
from meshwarden.sidecar.stages import metrics
from meshwarden.usage import Usage
from tests.unit.sidecar.fakes import FakeClock, call


def value(m: SidecarMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


async def test_counts_status_latency_bytes_retries_decisions_and_usage() -> None:
    m, clock = SidecarMetrics(), FakeClock()

    async def inner(c: Call) -> Reply:
        clock.now += 0.004
        c.record.policy_decision, c.record.attempt = "allow", 3
        usage = Usage(model="m", input_tokens=7, output_tokens=2, cost_micro_usd=1_500_000)
        return Reply(b'{"ok":1}', "b-1", "billing", "1.0.0", usage)

    stage = metrics.Metrics(inner, m, "outbound", lambda capability: capability == "billing.refund", clock)
    await stage(call(payload=b'{"amount":5}'))
    labels = {"direction": "outbound", "capability": "billing.refund"}
    assert value(m, "meshwarden_sidecar_calls_total", **labels, status="OK", error="") == 1
    assert value(m, "meshwarden_sidecar_call_duration_seconds_bucket", **labels, le="0.005") == 1
    assert value(m, "meshwarden_sidecar_call_duration_seconds_bucket", **labels, le="0.002") == 0
    assert value(m, "meshwarden_sidecar_request_bytes_total", **labels) == len(b'{"amount":5}')
    assert value(m, "meshwarden_sidecar_result_bytes_total", **labels) == len(b'{"ok":1}')
    assert value(m, "meshwarden_sidecar_retries_total", capability="billing.refund") == 2
    assert value(m, "meshwarden_sidecar_policy_decisions_total", direction="outbound", decision="allow") == 1
    assert value(m, "meshwarden_sidecar_cost_usd_total", **labels) == 1.5
    assert value(m, "meshwarden_sidecar_tokens_total", **labels, type="input") == 7
    assert value(m, "meshwarden_sidecar_calls_in_flight", direction="outbound") == 0


async def test_a_capability_it_does_not_know_is_counted_as_other() -> None:
    m = SidecarMetrics()

    async def deny(c: Call) -> Reply:
        c.record.policy_decision = "deny"
        raise PolicyDenied("no")

    stage = metrics.Metrics(deny, m, "inbound", lambda capability: False, FakeClock())
    with pytest.raises(PolicyDenied):
        await stage(call(capability="made.up.name"))
    labels = {"direction": "inbound", "capability": "_other"}
    assert value(m, "meshwarden_sidecar_calls_total", **labels, status="PERMISSION_DENIED", error="policy_denied") == 1
    assert value(m, "meshwarden_sidecar_policy_decisions_total", direction="inbound", decision="deny") == 1


def test_breaker_states_and_bundle_revision_are_read_at_scrape_time() -> None:
    m = SidecarMetrics()
    states = {"b-1": "closed"}
    m.watch(SidecarState(breaker_states=lambda: states, bundle_revision=lambda: 7, catalog_revision=lambda: 3))
    assert value(m, "meshwarden_sidecar_breaker_state", peer_instance="b-1", state="closed") == 1
    states["b-1"] = "open"
    assert value(m, "meshwarden_sidecar_breaker_state", peer_instance="b-1", state="open") == 1
    assert value(m, "meshwarden_sidecar_breaker_state", peer_instance="b-1", state="closed") == 0
    assert value(m, "meshwarden_sidecar_bundle_revision") == 7


async def test_kinds_this_version_does_not_know_share_one_label() -> None:
    m = SidecarMetrics()

    kinds = iter(["new_kind_a", "new_kind_b", "new_kind_c"])

    async def inner(c: Call) -> Reply:
        raise Unclassified(grpc.StatusCode.ABORTED, next(kinds), "newer", {})

    stage = metrics.Metrics(inner, m, "inbound", lambda capability: True, FakeClock())
    for _ in range(3):
        with pytest.raises(Unclassified):
            await stage(call())
    labels = {"direction": "inbound", "capability": "billing.refund", "status": "ABORTED"}
    assert value(m, "meshwarden_sidecar_calls_total", **labels, error="unclassified") == 3
