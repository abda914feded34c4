"""Session timelines, trees, session lists and cost tables as the CLI prints them, and the
--since/--until times it accepts."""

from __future__ import annotations

import argparse

import pytest

from meshwarden.cli import session_render
from meshwarden.cli.costs_cmd import costs_request
from meshwarden.cli.main import build_parser
from meshwarden.cli.sessions_cmd import list_request
from meshwarden.cli.time_window import parse_time
from meshwarden.receipt_calls import calls_of
from meshwarden.v1 import receipts_pb2
from tests.unit.receipt_fixtures import both_sides, receipt, stamp

NOW = 1_800_000_000.0


def session() -> receipts_pb2.GetSessionResponse:
    receipts = [
        *both_sides(
            "c1", "frontdesk", "planner", "plan", at=1000.0, latency_us=50_000, usage=("gpt-4o", 900, 120, 4200)
        ),
        *both_sides("c2", "planner", "billing", "billing.refund", parent="c1", at=1000.01, version="2.4.0"),
        *both_sides("c3", "billing", "kb", "kb.search", parent="c2", at=1000.02, usage=("mini", 10, 2, 30)),
        receipt(
            "outbound",
            "c4",
            "planner",
            "kb",
            "kb.search",
            parent="c1",
            at=1000.03,
            status="PERMISSION_DENIED",
            decision="deny",
        ),
    ]
    summary = receipts_pb2.SessionSummary(
        session_id="s1",
        workflow_id="w1",
        state="succeeded",
        agents=["frontdesk", "planner"],
        calls=4,
        cost_micro_usd=4230,
        started_at=stamp(1000.0),
        last_activity_at=stamp(1001.0),
    )
    return receipts_pb2.GetSessionResponse(summary=summary, outcome_detail="ticket T-7 resolved", receipts=receipts)


def test_the_tree_shows_who_called_whom() -> None:
    lines = session_render.tree_lines(calls_of(session().receipts))
    assert [line[: line.index(")") + 1] for line in lines] == [
        "frontdesk -> plan (planner 1.0.0)",
        "├─ planner -> billing.refund (billing 2.4.0)",
        "│  └─ billing -> kb.search (kb 1.0.0)",
        "└─ planner -> kb.search (kb 1.0.0)",
    ]
    assert "deny" in lines[3] and "PERMISSION_DENIED" in lines[3]
    assert "gpt-4o 900+120 tok" in lines[0] and "$0.004200" in lines[0]


def test_the_timeline_lists_each_call_in_order_with_everything_an_operator_asks() -> None:
    text = session_render.timeline(session())
    assert text.splitlines()[0] == "session s1 (workflow w1): succeeded: ticket T-7 resolved"
    lines = text.splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith("#"))
    for column in ("CAPABILITY", "VERSION", "POLICY", "ATTEMPT", "LATENCY", "STATUS", "USAGE", "COST"):
        assert column in lines[at]
    rows = lines[at + 1 : at + 5]
    assert [r.split()[4] for r in rows] == ["plan", "billing.refund", "kb.search", "kb.search"]
    assert "50.0ms" in rows[0] and "+10ms" in rows[1]


def test_a_call_whose_parent_is_missing_is_a_root_and_a_cycle_does_not_loop() -> None:
    receipts = [*both_sides("a", "x", "y", "one", parent="b"), *both_sides("b", "y", "x", "two", parent="a")]
    receipts += both_sides("orphan", "x", "y", "three", parent="gone", at=1001.0)
    lines = session_render.tree_lines(calls_of(receipts))
    assert lines[-1].startswith("x -> three")


def test_the_json_timeline_has_calls_and_receipts() -> None:
    body = session_render.timeline_json(session())
    assert body["session"]["state"] == "succeeded"  # type: ignore[index]
    calls = body["calls"]
    assert [c["parent_call_id"] for c in calls] == ["", "c1", "c2", "c1"]  # type: ignore[union-attr]
    assert len(body["receipts"]) == 7  # type: ignore[arg-type]


def test_the_cost_table_has_a_total_and_no_cost_per_success_without_a_success() -> None:
    rows = [
        receipts_pb2.CostRow(
            key="planner",
            cost_micro_usd=8400,
            calls=2,
            successful_outcomes=2,
            cost_per_successful_outcome_micro_usd=4200,
            input_tokens=10,
            output_tokens=5,
        ),
        receipts_pb2.CostRow(key="", cost_micro_usd=0, calls=1, failures=1, failed_session_cost_micro_usd=0),
    ]
    lines = session_render.costs_table("agent", rows).splitlines()
    assert lines[0].split() == [
        "AGENT",
        "SPEND",
        "CALLS",
        "FAILED",
        "SUCCESS-RATE",
        "TOKENS",
        "SUCCESSFUL-OUTCOMES",
        "COST/SUCCESS",
        "SPEND-ON-FAILED-SESSIONS",
    ]
    assert lines[1].split() == ["planner", "$0.008400", "2", "0", "100.0%", "10+5", "2", "$0.004200", "$0.000000"]
    assert lines[2].split() == ["(none)", "$0.000000", "1", "1", "0.0%", "0+0", "0", "-", "$0.000000"]
    assert lines[3].split() == ["TOTAL", "$0.008400", "3", "1", "66.7%", "$0.000000"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", NOW - 90),
        ("15m", NOW - 900),
        ("1h", NOW - 3600),
        ("2d", NOW - 172800),
        ("2026-11-21T08:00Z", 1795248000.0),
        ("2026-11-21T08:00", 1795248000.0),
        ("2026-11-21T09:00:00+01:00", 1795248000.0),
    ],
)
def test_since_takes_an_age_or_a_time(text: str, seconds: float) -> None:
    assert parse_time(text, now=NOW) == seconds


def test_bad_flags_are_refused_naming_the_flag() -> None:
    with pytest.raises(ValueError, match="--since"):
        costs_request("agent", "yesterday", NOW)
    args = argparse.Namespace(
        state="",
        agent="",
        team="",
        workflow="",
        since="",
        until="soon",
        limit=10,
        order="newest",
        cursor="",
        started_for="",
        label=[],
    )
    with pytest.raises(ValueError, match="--until"):
        list_request(args, NOW)
    with pytest.raises(ValueError, match="--limit"):
        list_request(argparse.Namespace(**{**vars(args), "until": "", "limit": 0}), NOW)


@pytest.mark.parametrize(
    ("labels", "words"),
    [(["repository"], "is not KEY=VALUE"), (["a=1", "a=2"], "given twice"), (["Repo=x"], "not a label key")],
)
def test_a_bad_label_flag_is_refused_naming_it(labels: list[str], words: str) -> None:
    args = build_parser().parse_args(["sessions", "list", *(f"--label={label}" for label in labels)])
    with pytest.raises(ValueError, match=words):
        list_request(args, NOW)


def test_labels_filter_all_at_once_and_show_in_the_table_and_json() -> None:
    args = build_parser().parse_args(
        ["sessions", "list", "--label", "repository=acme/api", "--label", "resource=db-prod"]
    )
    assert dict(list_request(args, NOW).labels) == {"repository": "acme/api", "resource": "db-prod"}
    labelled = receipts_pb2.SessionSummary(session_id="s1", labels={"resource": "db-prod", "repository": "acme/api"})
    plain = receipts_pb2.SessionSummary(session_id="s2")
    header, first, second = session_render.sessions_table([labelled, plain]).splitlines()
    assert "LABELS" in header and "repository=acme/api,resource=db-prod" in first and " - " in second
    assert session_render.session_json(labelled)["labels"] == {"repository": "acme/api", "resource": "db-prod"}


def test_the_commands_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["sessions", "list", "--state", "running", "--agent", "kb", "--since", "1h"])
    request = list_request(args, NOW)
    assert (request.state, request.agent, request.since.seconds) == ("running", "kb", int(NOW - 3600))
    assert parser.parse_args(["session", "show", "s1", "--output", "json"]).session_id == "s1"
    assert parser.parse_args(["costs", "--by", "model", "--since", "30m"]).by == "model"
    with pytest.raises(SystemExit):
        parser.parse_args(["costs", "--by", "colour"])


def test_tool_and_model_calls_show_what_answered_them_and_what_is_estimated() -> None:
    tool = receipt("outbound", "t1", "support", "", "tickets.refund", parent="c1", at=1000.05, version="")
    tool.call_kind, tool.tool_server, tool.tool_name = "tool", "tickets", "refund"
    tool.tool_risk, tool.tool_result_class = "destructive", "ok"
    tool.approval_id, tool.approval_decision, tool.task_id = "ap-123", "approved", "task-9"
    model = receipt("outbound", "m1", "support", "", "gpt-test", at=1000.06, version="", usage=("gpt-test", 16, 3, 22))
    model.call_kind, model.model_provider, model.model_stream_cut = "model", "openai", True
    model.input_tokens_estimated = model.output_tokens_estimated = True
    receipts = [*both_sides("c1", "frontdesk", "support", "support.help"), tool, model]
    lines = session_render.tree_lines(calls_of(receipts))
    assert lines[1].startswith("└─ support -> tickets.refund (tool tickets.refund)")
    assert "risk destructive, result ok" in lines[1] and "approval ap-123 approved" in lines[1]
    assert "task task-9" in lines[1]
    assert lines[2].startswith("support -> gpt-test (model provider openai)")
    assert "gpt-test 16+3 tok (estimated: stream cut)" in lines[2]
    response = receipts_pb2.GetSessionResponse(summary=receipts_pb2.SessionSummary(session_id="s1"), receipts=receipts)
    rows = session_render.timeline(response).splitlines()
    assert any(r.split()[3] == "tool:tickets.refund" for r in rows if r[:1].isdigit())
    [shown] = [c for c in session_render.timeline_json(response)["calls"] if c["call_id"] == "t1"]  # type: ignore[union-attr]
    assert (shown["tool_server"], shown["tool_name"], shown["approval_id"]) == ("tickets", "refund", "ap-123")
