"""Usage and outcomes with real processes: usage travels from the callee agent back to its
caller, nested calls name their parent, a session's outcome reaches the registry, and the
registry's sessions, timelines and cost tables add up."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest

import meshwarden
from meshwarden import errors
from meshwarden.receipt_calls import calls_of
from meshwarden.session_labels import InvalidLabels
from meshwarden.supervise import meshwarden_argv
from meshwarden.v1 import receipts_pb2
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable

pytestmark = pytest.mark.integration


async def test_a_call_without_usage_has_none(mesh: LocalMesh) -> None:
    top = await mesh.sidecar("frontdesk")
    await mesh.pair("echoer")
    async with meshwarden.Client(top.addresses["listen"]) as client:
        result = await routable(client, "echo", {"n": 1})
    assert result.usage is None


async def test_an_outcome_is_stored_once_and_a_second_is_refused_naming_the_first(mesh: LocalMesh) -> None:
    side = await mesh.sidecar("frontdesk")
    async with meshwarden.Client(side.addresses["listen"]) as client:
        with pytest.raises(errors.UnknownCapability):  # a call of the session: frontdesk takes part in it
            await client.invoke("nobody.here", {}, session_id="s-out", timeout=5)
        await client.report_outcome("s-out", "succeeded", "ticket T-1 resolved")
        with pytest.raises(errors.OutcomeAlreadyReported) as refused:
            await client.report_outcome("s-out", "failed")
        with pytest.raises(grpc.aio.AioRpcError) as bad:  # past the SDK's own check: the sidecar refuses too
            await client._stub.ReportOutcome(receipts_pb2.ReportOutcomeRequest(session_id="s-x", outcome="won"))
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "outcome" in (bad.value.details() or "")
    assert "succeeded" in refused.value.message and "frontdesk" in refused.value.message


# Deterministic usage, one model per agent, so every sum below is exact.
SUPPORT_USAGE = {"model": "gpt-4o-mini", "input_tokens": 500, "output_tokens": 100, "cost_micro_usd": 1000}
BILLING_USAGE = {"model": "claude-3-5-haiku", "input_tokens": 4000, "output_tokens": 1000, "cost_micro_usd": 20000}
LABELS = {"repository": "acme/api", "resource": "db-prod"}  # what session s-p works on
KB_USAGE = {"model": "text-embedding-3-small", "input_tokens": 1500, "output_tokens": 0, "cost_micro_usd": 30}


async def until(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 20.0) -> None:
    """Receipts reach the registry in batches (every second by default): wait for them."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not happen within {within_s} s")
        await asyncio.sleep(0.2)


async def test_sessions_timelines_and_costs_from_the_receipts(mesh: LocalMesh) -> None:
    """frontdesk -> support (plan.work) -> billing (bill.work) -> kb (kb.work) in session s-a,
    which support reports succeeded; frontdesk -> billing in s-b, reported failed; frontdesk
    -> kb in s-c, still running. Teams come from the bundle's entities (support, finance,
    knowledge)."""
    top = await mesh.sidecar("frontdesk")
    await mesh.pair("support", "1.0.0", "--work-as", "plan.work")
    await mesh.pair("billing", "2.4.0", "--work-as", "bill.work")
    await mesh.pair("kb", "1.2.0", "--work-as", "kb.work")
    tree = {
        "usage": SUPPORT_USAGE,
        "outcome": "succeeded",
        "detail": "ticket T-1 resolved",
        "calls": [
            {
                "capability": "bill.work",
                "args": {"usage": BILLING_USAGE, "calls": [{"capability": "kb.work", "args": {"usage": KB_USAGE}}]},
            }
        ],
    }
    async with meshwarden.Client(top.addresses["listen"]) as client:
        for capability in ("plan.work", "bill.work", "kb.work"):
            await routable(client, capability, {})
        after_warm_up = time.time()  # what follows is what the tables below count
        top_call = await client.invoke("plan.work", tree, session_id="s-a", workflow_id="wf-1", timeout=10)
        # Usage travels back to each caller; nested calls name their parent and keep session and workflow.
        assert top_call.usage == meshwarden.Usage("gpt-4o-mini", 500, 100, 1000)
        [bill] = top_call.value["children"]
        assert bill["cost"] == 20000 and bill["value"]["children"][0]["cost"] == 30
        assert bill["value"]["parent_call_id"] == top_call.call_id
        assert (bill["value"]["session_id"], bill["value"]["workflow_id"]) == ("s-a", "wf-1")
        await client.invoke("bill.work", {"usage": BILLING_USAGE}, session_id="s-b", workflow_id="wf-2", timeout=10)
        await client.report_outcome("s-b", "failed", "the customer disputed the refund")
        await client.invoke("kb.work", {"usage": KB_USAGE}, session_id="s-c", workflow_id="wf-2", timeout=10)

    async def costs(by: str) -> dict[str, tuple[int, int, int, int]]:
        request = receipts_pb2.CostsRequest(by=by)
        request.since.FromNanoseconds(int(after_warm_up * 1e9))
        reply = await mesh.ask_receipts("Costs", request)
        return {
            r.key: (r.cost_micro_usd, r.calls, r.successful_outcomes, r.cost_per_successful_outcome_micro_usd)
            for r in reply.rows
        }

    async def all_shipped() -> bool:  # every call's callee-side receipt, with its usage, is stored
        return (await costs("workflow")).get("wf-1", (0,))[0] == 21030 and (await costs("workflow")).get("wf-2", (0,))[
            0
        ] == 20030

    await until(all_shipped, "the receipts of every call reaching the registry")

    # spend, calls, successful outcomes (sessions that succeeded and involved the key), cost per success
    assert (await costs("workflow"))["wf-1"] == (21030, 3, 1, 21030)
    assert (await costs("workflow"))["wf-2"] == (20030, 2, 0, 0)
    by_agent = await costs("agent")
    assert {k: by_agent[k] for k in ("support", "billing", "kb")} == {
        "support": (1000, 1, 1, 1000),
        "billing": (40000, 2, 1, 40000),
        "kb": (60, 2, 1, 60),
    }
    by_team = await costs("team")
    assert (by_team["finance"], by_team["knowledge"]) == ((40000, 2, 1, 40000), (60, 2, 1, 60))
    assert by_team["support"] == (1000, 1, 1, 1000)
    by_capability = await costs("capability")
    assert (by_capability["plan.work"][0], by_capability["bill.work"][0], by_capability["kb.work"][0]) == (
        1000,
        40000,
        60,
    )
    by_model = await costs("model")
    assert {k: by_model[k][:3] for k in ("gpt-4o-mini", "claude-3-5-haiku", "text-embedding-3-small")} == {
        "gpt-4o-mini": (1000, 1, 1),
        "claude-3-5-haiku": (40000, 2, 1),
        "text-embedding-3-small": (60, 2, 1),
    }

    async def sessions(**filters: str) -> list[str]:
        reply = await mesh.ask_receipts("ListSessions", receipts_pb2.ListSessionsRequest(**filters))
        return sorted(s.session_id for s in reply.sessions)

    assert await sessions() == ["s-a", "s-b", "s-c"]
    assert await sessions(state="running") == ["s-c"]
    assert await sessions(state="finished") == ["s-a", "s-b"]
    assert await sessions(agent="kb") == ["s-a", "s-c"]
    assert await sessions(team="finance") == ["s-a", "s-b"]
    assert await sessions(workflow_id="wf-2") == ["s-b", "s-c"]
    future = receipts_pb2.ListSessionsRequest()
    future.since.FromSeconds(int(time.time()) + 3600)
    assert (await mesh.ask_receipts("ListSessions", future)).sessions == []

    async def session_a() -> receipts_pb2.GetSessionResponse:
        reply: receipts_pb2.GetSessionResponse = await mesh.ask_receipts(
            "GetSession", receipts_pb2.GetSessionRequest(session_id="s-a")
        )
        return reply

    async def both_sides_shipped() -> bool:  # the caller-side receipts ship on their own schedule
        return len((await session_a()).receipts) == 6

    await until(both_sides_shipped, "both sidecars' receipts of s-a reaching the registry")
    shown = await session_a()
    assert (shown.summary.state, shown.summary.calls, shown.summary.cost_micro_usd) == ("succeeded", 3, 21030)
    assert shown.outcome_detail == "ticket T-1 resolved"
    calls = {c.capability: c for c in calls_of(shown.receipts)}
    assert calls["plan.work"].call_id == top_call.call_id and calls["plan.work"].parent_call_id == ""
    assert calls["bill.work"].parent_call_id == calls["plan.work"].call_id
    assert calls["kb.work"].parent_call_id == calls["bill.work"].call_id
    assert all(c.sides == ("outbound", "inbound") and c.policy_decision == "allow" for c in calls.values())

    # The operator's command, for real: the tree of who called whom.
    flags = ["--registry", mesh.registry_address, "--ca-pin", mesh.registry.addresses["ca_fingerprint"]]  # type: ignore[union-attr]
    env = {**os.environ, "MESHWARDEN_OPERATOR_TOKEN": mesh.operator_token()}
    show = await asyncio.to_thread(
        subprocess.run,
        meshwarden_argv("session", "show", "s-a", *flags),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert show.returncode == 0, show.stderr
    tree_lines = show.stdout.split("who called whom:\n")[1].splitlines()
    assert tree_lines[0].startswith("frontdesk -> plan.work (support 1.0.0)  allow  attempt 1")
    assert tree_lines[1].startswith("└─ support -> bill.work (billing 2.4.0)")
    assert tree_lines[2].startswith("   └─ billing -> kb.work (kb 1.2.0)") and "$0.000030" in tree_lines[2]
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await mesh.ask_receipts("GetSession", receipts_pb2.GetSessionRequest(session_id="nope"))
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND and "nope" in (unknown.value.details() or "")

    # The operator's questions as commands (issue 19): tables and JSON, exit codes.
    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, meshwarden_argv(*args, *flags), capture_output=True, text=True, env=env, timeout=60
        )

    failed = await cli("sessions", "list", "--state", "failed", "--output", "json")
    assert failed.returncode == 0, failed.stderr
    [s_b] = json.loads(failed.stdout)
    assert (s_b["session_id"], s_b["calls"], s_b["failures"], s_b["input_tokens"]) == ("s-b", 1, 0, 4000)
    first = await cli("sessions", "list", "--order", "oldest", "--limit", "2", "--output", "json")
    assert [s["session_id"] for s in json.loads(first.stdout)] == ["s-a", "s-b"]
    cursor = first.stderr.split("--cursor ")[1].strip()
    rest = await cli("sessions", "list", "--order", "oldest", "--limit", "2", "--cursor", cursor)
    assert rest.returncode == 0 and [line.split()[0] for line in rest.stdout.splitlines()[1:]] == ["s-c"]
    by_workflow = await cli("costs", "--by", "workflow", "--output", "json")
    rows = {r["key"]: r for r in json.loads(by_workflow.stdout)}
    assert (rows["wf-2"]["sessions"], rows["wf-2"]["failed_session_cost_micro_usd"]) == (2, 20000)
    assert (rows["wf-1"]["successful_outcomes"], rows["wf-1"]["cost_per_successful_outcome_micro_usd"]) == (1, 21030)
    refusals = await cli("costs", "--by", "refusal")
    assert refusals.returncode == 0 and "SPEND-ON-FAILED-SESSIONS" in refusals.stdout
    assert "(not refused)" in refusals.stdout
    assert (await cli("costs", "--by", "colour")).returncode == 2
    # Question 1 in one command: each agent's instances and what it has in progress; only s-c
    # runs (frontdesk -> kb), s-a and s-b reported their outcomes.
    running = await cli("agents", "list")
    assert running.returncode == 0, running.stderr
    activity = running.stdout.split("\n\n")[1].splitlines()
    assert activity[0].split() == ["AGENT", "INSTANCES", "SESSIONS-RUNNING", "TASKS-RUNNING"]
    assert {line.split()[0]: line.split()[1:] for line in activity[1:]} == {
        "billing": ["1", "0", "0"],
        "kb": ["1", "1", "0"],
        "support": ["1", "0", "0"],
    }
    listed = json.loads((await cli("agents", "list", "--agent", "kb", "--output", "json")).stdout)
    assert [i["agent_activity"] for i in listed] == [{"sessions_running": 1, "tasks_running": 0}]
    bad_cursor = await cli("sessions", "list", "--cursor", "nonsense")
    assert bad_cursor.returncode == 2 and "cursor" in bad_cursor.stderr
    piped = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", shlex.join(meshwarden_argv("session", "show", "s-a", *flags)) + " | head -1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert piped.stdout and "Traceback" not in piped.stderr, piped.stderr

    # A handler that spends, then fails: the spend is kept, in the receipts and for the caller.
    async with meshwarden.Client(top.addresses["listen"]) as client:
        with pytest.raises(errors.AgentFailed) as spent:
            await client.invoke(
                "bill.work", {"usage": BILLING_USAGE, "fail": True}, session_id="s-d", workflow_id="wf-3", timeout=10
            )
    assert spent.value.usage == meshwarden.Usage("claude-3-5-haiku", 4000, 1000, 20000)

    async def failed_spend_kept() -> bool:
        return (await costs("workflow")).get("wf-3", (0,))[0] == 20000

    await until(failed_spend_kept, "the failed call's spend reaching the registry")
    s_d = await mesh.ask_receipts("GetSession", receipts_pb2.GetSessionRequest(session_id="s-d"))
    assert (s_d.summary.calls, s_d.summary.failures, s_d.summary.cost_micro_usd) == (1, 1, 20000)


async def test_who_a_session_was_started_for_is_carried_and_cannot_be_changed_downstream(mesh: LocalMesh) -> None:
    """frontdesk starts s-p for user:alice, labelled repository=acme/api, -> support, which calls
    billing twice: once plainly but naming other labels (billing's handler sees user:alice and
    the first labels), once claiming user:mallory (support's sidecar refuses it). The registry
    lists s-p as started for user:alice, launched by frontdesk, with the refused claim flagged,
    and with its first labels (filtered by --label); the same arguments twice make it a suspect
    at --repeats 2."""
    top = await mesh.sidecar("frontdesk")
    await mesh.pair("support", "1.0.0", "--work-as", "plan.work")
    await mesh.pair("billing", "2.4.0", "--work-as", "bill.work")
    tree = {
        "calls": [
            {"capability": "bill.work", "args": {}, "session_labels": {"repository": "other/repo"}},
            {"capability": "bill.work", "args": {}, "on_behalf_of": "user:mallory", "catch": True},
        ]
    }
    async with meshwarden.Client(top.addresses["listen"]) as client:
        for capability in ("plan.work", "bill.work"):
            await routable(client, capability, {})
        with pytest.raises(errors.BadPayload):  # bounded and printable, like every identifier
            await client.invoke("plan.work", {}, session_id="s-bad", on_behalf_of="user:\n", timeout=10)
        with pytest.raises(InvalidLabels, match="not a label key"):  # the SDK refuses before sending
            await client.invoke("plan.work", {}, session_id="s-bad", session_labels={"Repo": "x"}, timeout=10)
        reply = await client.invoke(
            "plan.work", tree, session_id="s-p", on_behalf_of="user:alice", session_labels=LABELS, timeout=10
        )
    plain, forged = reply.value["children"]
    assert plain["value"]["on_behalf_of"] == "user:alice" and forged == {"refused": "principal_mismatch"}
    assert reply.value["session_labels"] == plain["value"]["session_labels"] == LABELS

    async def listed() -> receipts_pb2.SessionSummary | None:
        request = receipts_pb2.ListSessionsRequest(started_for="user:alice")
        found = [s for s in (await mesh.ask_receipts("ListSessions", request)).sessions if s.session_id == "s-p"]
        return found[0] if found and found[0].calls == 3 and found[0].started_for_conflict else None

    await until(lambda: _is_set(listed()), "s-p's receipts reaching the registry")
    summary = await listed()
    assert summary is not None
    assert (summary.started_for, summary.launched_by, summary.started_for_conflict) == (
        "user:alice",
        "frontdesk",
        "user:mallory",
    )
    assert dict(summary.labels) == LABELS

    flags = ["--registry", mesh.registry_address, "--ca-pin", mesh.registry.addresses["ca_fingerprint"]]  # type: ignore[union-attr]
    env = {**os.environ, "MESHWARDEN_OPERATOR_TOKEN": mesh.operator_token()}

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, meshwarden_argv(*args, *flags), capture_output=True, text=True, env=env, timeout=60
        )

    table = await cli("sessions", "list", "--started-for", "user:alice")
    assert table.returncode == 0, table.stderr
    assert "STARTED-FOR" in table.stdout and "user:alice (also named: user:mallory)" in table.stdout
    assert "LABELS" in table.stdout and "repository=acme/api,resource=db-prod" in table.stdout
    labelled = await cli("sessions", "list", "--label", "repository=acme/api", "--output", "json")
    assert labelled.returncode == 0, labelled.stderr
    assert [(s["session_id"], s["labels"]) for s in json.loads(labelled.stdout)] == [("s-p", LABELS)]
    other = await cli("sessions", "list", "--label", "repository=acme/api", "--label", "resource=db-test")
    assert other.returncode == 0 and "s-p" not in other.stdout, other.stderr
    suspects = await cli("sessions", "suspect", "--repeats", "2", "--reason", "repeating", "--output", "json")
    assert suspects.returncode == 8, suspects.stderr  # found: a script can alert on it
    [suspect] = [s for s in json.loads(suspects.stdout) if s["session_id"] == "s-p"]
    assert (suspect["max_repeats"], suspect["repeated_capability"]) == (2, "bill.work")
    assert suspect["started_for"] == "user:alice"
    changes = await cli("changes", "--output", "json")
    assert changes.returncode in (0, 8), changes.stderr
    assert isinstance(json.loads(changes.stdout), list)
    bad = await cli("sessions", "suspect", "--idle", "soon")
    assert bad.returncode == 2 and "--idle" in bad.stderr


async def _is_set(found: Awaitable[object]) -> bool:
    return (await found) is not None
