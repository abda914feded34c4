"""registry.console.traffic: who calls whom, rates, error rates and p99 from calls."""

from __future__ import annotations

from meshwarden.receipt_calls import calls_of
from meshwarden.registry.console.traffic import percentile, traffic
from tests.unit.receipt_fixtures import both_sides, receipt


def test_edges_count_each_call_once_with_failures_rate_and_p99() -> None:
    receipts = []
    for n in range(100):
        status = "UNAVAILABLE" if n < 7 else "OK"
        receipts += both_sides(
            f"c{n}", "frontdesk", "billing", "billing.refund", latency_us=1000 * (n + 1), status=status
        )
    receipts += both_sides("k1", "planner", "kb", "kb.search")
    seen = traffic(calls_of(receipts), window_s=50.0)
    [busiest, other] = seen.edges
    assert (busiest.caller, busiest.callee, busiest.flow.calls, busiest.flow.failures) == (
        "frontdesk",
        "billing",
        100,
        7,
    )
    assert busiest.flow.per_s == 2.0 and busiest.flow.error_rate == 0.07
    assert busiest.flow.p99_ms == 99.0  # nearest rank: the 99th of 100 latencies, 1..100 ms
    assert (other.caller, other.callee, other.flow.calls) == ("planner", "kb", 1)
    assert seen.served["billing"].calls == 100 and seen.made["frontdesk"].calls == 100
    assert "frontdesk" not in seen.served


def test_model_and_tool_calls_go_to_their_provider_and_server() -> None:
    model = receipt("outbound", "m1", "support", "", "model.chat")
    model.call_kind, model.model_provider = "model", "openai"
    tool = receipt("outbound", "t1", "support", "", "tickets.read")
    tool.call_kind = "tool"
    seen = traffic(calls_of([model, tool]), window_s=60.0)
    assert {(e.caller, e.callee) for e in seen.edges} == {("support", "model:openai"), ("support", "tool:tickets")}


def test_percentile_by_nearest_rank() -> None:
    assert percentile([], 0.99) == 0.0
    assert percentile([5], 0.99) == 5.0
    assert percentile([1, 2, 3, 4], 0.5) == 2.0
