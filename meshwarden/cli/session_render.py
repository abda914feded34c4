"""How sessions, timelines and cost tables look on a terminal and in `--output json`. Pure
functions of the registry's answers, so tests need no registry.

A session's timeline is its calls in the order they started; its tree follows parent_call_id
(who called whom). A call whose parent is not in the session (or that has none) is a root.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from google.protobuf import json_format, timestamp_pb2

from meshwarden import session_labels
from meshwarden.clock import iso_utc
from meshwarden.receipt_calls import ReceiptCall, calls_of
from meshwarden.v1 import receipts_pb2

SESSION_COLUMNS: Final = (
    "SESSION",
    "STATE",
    "STARTED-FOR",
    "LAUNCHED-BY",
    "WORKFLOW",
    "LABELS",
    "CALLS",
    "FAILED",
    "TOKENS",
    "COST",
    "AGENTS",
    "STARTED",
    "LAST-ACTIVITY",
)
TIMELINE_COLUMNS: Final = (
    "#",
    "AT",
    "CALLER",
    "CALLEE",
    "CAPABILITY",
    "VERSION",
    "POLICY",
    "ATTEMPT",
    "LATENCY",
    "STATUS",
    "USAGE",
    "COST",
)


def usd(micro: int) -> str:
    return f"${micro / 1_000_000:.6f}"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.ToNanoseconds() / 1e9


def sessions_table(sessions: Sequence[receipts_pb2.SessionSummary]) -> str:
    rows = [SESSION_COLUMNS] + [
        (
            s.session_id,
            s.state,
            started_for(s),
            s.launched_by or "-",
            s.workflow_id or "-",
            session_labels.shown(dict(s.labels)),
            str(s.calls),
            str(s.failures),
            f"{s.input_tokens}+{s.output_tokens}",
            usd(s.cost_micro_usd),
            ",".join(s.agents) or "-",
            iso_utc(_seconds(s.started_at)),
            iso_utc(_seconds(s.last_activity_at)),
        )
        for s in sessions
    ]
    return table(rows)


def started_for(summary: receipts_pb2.SessionSummary) -> str:
    """Who the session was started for; a conflicting principal a later receipt named is shown
    beside it (never instead of it)."""
    shown = summary.started_for or "-"
    return f"{shown} (also named: {summary.started_for_conflict})" if summary.started_for_conflict else shown


def session_json(summary: receipts_pb2.SessionSummary) -> dict[str, object]:
    return {
        "session_id": summary.session_id,
        "workflow_id": summary.workflow_id,
        "state": summary.state,
        "started_for": summary.started_for,
        "launched_by": summary.launched_by,
        "started_for_conflict": summary.started_for_conflict,
        "labels": dict(sorted(summary.labels.items())),
        "agents": list(summary.agents),
        "teams": list(summary.teams),
        "calls": summary.calls,
        "failures": summary.failures,
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "cost_micro_usd": summary.cost_micro_usd,
        "started_at": summary.started_at.ToJsonString(),
        "last_activity_at": summary.last_activity_at.ToJsonString(),
    }


def _usage_text(call: ReceiptCall) -> str:
    if call.usage is None:
        return "-"
    if call.call_kind == "tool":
        return "per-call price"  # the bundle's cost_micro_usd of the tool
    model = call.usage.model or "?"
    # Model calls are measured by the gateway; an agent's own report is labelled as such, and
    # so is the gateway's estimate of a stream cut before the provider's usage came.
    source = "" if call.usage_measured_by == "gateway" else " (reported by agent)"
    if call.usage_estimated:
        source = " (estimated: stream cut)"
    return f"{model} {call.usage.input_tokens}+{call.usage.output_tokens} tok{source}"


def _latency(call: ReceiptCall) -> str:
    return f"{call.latency_us / 1000:.1f}ms"


def _status(call: ReceiptCall) -> str:
    if call.kill_switch_id:
        return f"{call.status} (kill switch {call.kill_switch_id})"
    return call.status + (f" ({call.error_kind})" if call.error_kind else "")


def timeline(response: receipts_pb2.GetSessionResponse) -> str:
    """The header, the calls in order, and the tree of who called whom."""
    calls = calls_of(response.receipts)
    summary = response.summary
    head = f"session {summary.session_id}" + (f" (workflow {summary.workflow_id})" if summary.workflow_id else "")
    state = summary.state + (f": {response.outcome_detail}" if response.outcome_detail else "")
    lines = [
        f"{head}: {state}",
        f"{summary.calls} calls, {usd(summary.cost_micro_usd)}, agents {', '.join(summary.agents) or '-'}, "
        f"from {iso_utc(_seconds(summary.started_at))} to {iso_utc(_seconds(summary.last_activity_at))}",
        f"started for {started_for(summary)}, launched by {summary.launched_by or '-'}",
        "",
    ]
    start = calls[0].started_at if calls else 0.0
    rows = [TIMELINE_COLUMNS] + [
        (
            str(n),
            f"+{(c.started_at - start) * 1000:.0f}ms",
            c.caller_agent or "-",
            c.callee_agent or ":".join(_answered_by(c)).strip(":") or "-",
            c.capability,
            c.version or "-",
            c.policy_decision or "-",
            str(c.attempt),
            _latency(c),
            _status(c),
            _usage_text(c),
            usd(c.cost_micro_usd),
        )
        for n, c in enumerate(calls, start=1)
    ]
    lines += [table(rows), "", "who called whom:"]
    lines += tree_lines(calls) or ["(no calls)"]
    return "\n".join(lines)


def tree_lines(calls: Sequence[ReceiptCall]) -> list[str]:
    ids = {c.call_id for c in calls}
    children: dict[str, list[ReceiptCall]] = {}
    roots = []
    for call in calls:  # already in start order, so siblings are too
        if call.parent_call_id and call.parent_call_id in ids and call.parent_call_id != call.call_id:
            children.setdefault(call.parent_call_id, []).append(call)
        else:
            roots.append(call)
    lines: list[str] = []

    def walk(call: ReceiptCall, prefix: str, branch: str, seen: frozenset[str]) -> None:
        lines.append(f"{prefix}{branch}{_node(call)}")
        below = children.get(call.call_id, [])
        inner = prefix + ("" if not branch else ("   " if branch == "└─ " else "│  "))
        for i, child in enumerate(below):
            if child.call_id not in seen:  # receipts could name a cycle; never loop on one
                walk(child, inner, "└─ " if i == len(below) - 1 else "├─ ", seen | {child.call_id})

    for root in roots:
        walk(root, "", "", frozenset({root.call_id}))
    return lines


def _answered_by(call: ReceiptCall) -> tuple[str, str]:
    """What answered a call no agent answered: ("model", PROVIDER) or ("tool", "SERVER.TOOL");
    ("", "") for an agent call."""
    if call.call_kind == "model":
        return "model", call.model_provider or "?"
    if call.call_kind == "tool":
        server, tool = call.tool_server, call.tool_name
        if not server:  # a receipt from before the tool fields: its capability is SERVER.TOOL
            server, _, tool = call.capability.partition(".")
        return "tool", f"{server}.{tool}"
    return "", ""


def _node(call: ReceiptCall) -> str:
    kind, name = _answered_by(call)
    callee = f"{call.callee_agent} {call.version}".strip() or (
        f"model provider {name}" if kind == "model" else f"{kind} {name}".strip() or "?"
    )
    parts = [
        f"{call.caller_agent or '?'} -> {call.capability} ({callee})",
        call.policy_decision or "-",
        f"attempt {call.attempt}",
        _latency(call),
        _status(call),
    ]
    if call.call_kind == "tool":
        parts.append(f"risk {call.tool_risk or '?'}, result {call.tool_result_class or '?'}")
    if call.approval_id:
        parts.append(f"approval {call.approval_id} {call.approval_decision}".rstrip())
    if call.usage is not None:
        parts += [_usage_text(call), usd(call.cost_micro_usd)]
    if call.task_id:
        parts.append(f"task {call.task_id} token {call.fencing_token}")
    return "  ".join(parts)


def timeline_json(response: receipts_pb2.GetSessionResponse) -> dict[str, object]:
    calls = calls_of(response.receipts)
    return {
        "session": session_json(response.summary),
        "outcome_detail": response.outcome_detail,
        "calls": [call_json(c) for c in calls],
        "receipts": [json_format.MessageToDict(r, preserving_proto_field_name=True) for r in response.receipts],
    }


def call_json(call: ReceiptCall) -> dict[str, object]:
    return {
        "call_id": call.call_id,
        "parent_call_id": call.parent_call_id,
        "caller_agent": call.caller_agent,
        "callee_agent": call.callee_agent,
        "capability": call.capability,
        "version": call.version,
        "policy_decision": call.policy_decision,
        "attempt": call.attempt,
        "latency_us": call.latency_us,
        "status": call.status,
        "error_kind": call.error_kind,
        "kill_switch_id": call.kill_switch_id,
        "task_id": call.task_id,
        "fencing_token": call.fencing_token,
        "started_at": call.started_at,
        "usage": None
        if call.usage is None
        else {
            "model": call.usage.model,
            "input_tokens": call.usage.input_tokens,
            "output_tokens": call.usage.output_tokens,
            "cost_micro_usd": call.usage.cost_micro_usd,
            "measured_by": call.usage_measured_by,
        },
        "cost_micro_usd": call.cost_micro_usd,
        "call_kind": call.call_kind,
        "model_provider": call.model_provider,
        "usage_estimated": call.usage_estimated,
        "tool_server": call.tool_server,
        "tool_name": call.tool_name,
        "tool_risk": call.tool_risk,
        "tool_result_class": call.tool_result_class,
        "approval_id": call.approval_id,
        "approval_decision": call.approval_decision,
    }


def costs_table(by: str, rows: Sequence[receipts_pb2.CostRow]) -> str:
    header = (
        by.upper(),
        "SPEND",
        "CALLS",
        "FAILED",
        "SUCCESS-RATE",
        "TOKENS",
        "SUCCESSFUL-OUTCOMES",
        "COST/SUCCESS",
        "SPEND-ON-FAILED-SESSIONS",
    )
    body = [
        (
            r.key or "(none)",
            usd(r.cost_micro_usd),
            str(r.calls),
            str(r.failures),
            _rate(r.calls - r.failures, r.calls),
            f"{r.input_tokens}+{r.output_tokens}",
            str(r.successful_outcomes),
            usd(r.cost_per_successful_outcome_micro_usd) if r.successful_outcomes else "-",
            usd(r.failed_session_cost_micro_usd),
        )
        for r in rows
    ]
    total = sum(r.cost_micro_usd for r in rows)
    calls = sum(r.calls for r in rows)
    failures = sum(r.failures for r in rows)
    wasted = sum(r.failed_session_cost_micro_usd for r in rows)
    ending = ("TOTAL", usd(total), str(calls), str(failures), _rate(calls - failures, calls), "", "", "", usd(wasted))
    return table([header, *body, ending])


def _rate(good: int, of: int) -> str:
    return f"{100 * good / of:.1f}%" if of else "-"


def cost_json(row: receipts_pb2.CostRow) -> dict[str, object]:
    return {
        "key": row.key,
        "cost_micro_usd": row.cost_micro_usd,
        "calls": row.calls,
        "failures": row.failures,
        "success_rate": round((row.calls - row.failures) / row.calls, 4) if row.calls else None,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "sessions": row.sessions,
        "successful_outcomes": row.successful_outcomes,
        "cost_per_successful_outcome_micro_usd": row.cost_per_successful_outcome_micro_usd,
        "failed_session_cost_micro_usd": row.failed_session_cost_micro_usd,
    }
