"""The console's HTTP face over real registry parts, without a browser: the door (logins,
cookies, headers, CSRF, roles), paging, escaping, and writes going through the domain."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator

import aiohttp
import pytest

from meshwarden.budget_scopes import MONTH, TEAM
from meshwarden.identity.spiffe_ids import Identity, agent_id
from meshwarden.registry.approvals import ApprovalAsk
from meshwarden.registry.authz import Caller
from meshwarden.registry.controls import KillEffect
from meshwarden.registry.model import JOIN_TOKEN, NOT_RECORDED, Capability, Enrolment, InstanceSpec
from meshwarden.registry.store.records import SidecarBundleStatus
from meshwarden.registry.store.sqlite.sessions import store_aggregates
from meshwarden.registry.task_queue import Submission
from meshwarden.schema_hash import schema_hash
from meshwarden.v1 import controls_pb2 as K
from meshwarden.v1 import receipts_pb2
from tests.unit.receipt_fixtures import both_sides
from tests.unit.registry.console.conftest import Served
from tests.unit.registry.test_session_queries import insert_rows

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:  # cookies for 127.0.0.1
        yield session


async def log_in(http: aiohttp.ClientSession, served: Served, token: str, user: str = "ann") -> str:
    """Logs in; the CSRF token of the login."""
    async with http.post(f"{served.url}/login", data={"token": token, "user": user}) as reply:
        assert reply.status == 200 and reply.url.path == "/map", await reply.text()
        found = CSRF.search(await reply.text())
    assert found is not None
    return found.group(1)


async def test_without_a_login_pages_send_to_the_form_and_live_updates_get_401(
    served: Served, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{served.url}/approvals", allow_redirects=False) as reply:
        assert reply.status == 303 and reply.headers["Location"] == "/login"
        assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
        assert reply.headers["X-Frame-Options"] == "DENY" and reply.headers["Cache-Control"] == "no-store"
    async with http.get(f"{served.url}/approvals", headers={"X-Console-Live": "1"}) as reply:
        assert reply.status == 401
    async with http.post(f"{served.url}/kills", data={"kind": "all", "reason": "x"}, allow_redirects=False) as reply:
        assert reply.status == 303  # no login, no write


async def test_a_login_sets_a_strict_http_only_cookie_and_a_wrong_token_is_audited(
    served: Served, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{served.url}/login", data={"token": "mwo1.wrong", "user": HOSTILE}) as reply:
        assert reply.status == 401 and "not this registry" in await reply.text()
    async with http.post(
        f"{served.url}/login", data={"token": served.operator_token, "user": "ann"}, allow_redirects=False
    ) as reply:
        assert reply.status == 303
        cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie  # plain HTTP on loopback
    entries = await served.sources.audit.page(0, 10)
    assert [e.action for e in entries] == ["console.login", "console.login.failed"]
    assert entries[0].actor == served.operator.identity and entries[0].claimed_user == "ann"
    assert entries[1].claimed_user == HOSTILE[:64] and "127.0.0.1" in entries[1].actor
    async with http.get(f"{served.url}/audit") as page:
        text = await page.text()
    assert HOSTILE not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


async def test_every_view_answers_and_the_map_pages_fifty_agents_at_a_time(
    served: Served, http: aiohttp.ClientSession
) -> None:
    by_token = Enrolment(how=JOIN_TOKEN, principal="operator:sha256:0123456789abcdef", claimed_user=HOSTILE[:64])
    for n in range(120):
        spec = InstanceSpec(
            agent=f"agent-{n:03d}",
            version="1.0.0",
            peer_address="127.0.0.1:7411",
            capabilities=(Capability(name=f"cap.{n}", schema_hash=schema_hash({}, {})),),
            enrolment=by_token if n == 0 else NOT_RECORDED,
        )
        await served.sources.catalog.register(spec)
    await log_in(http, served, served.operator_token)
    for path in ("/map", "/sessions", "/costs", "/approvals", "/kills", "/tasks", "/bundles", "/audit"):
        async with http.get(served.url + path) as reply:
            assert reply.status == 200, path
    async with http.get(f"{served.url}/map") as reply:
        first = await reply.text()
    assert "120 agent(s), 120 instance(s)" in first and first.count('class="agent"') == 50
    assert "agent-000" in first and "agent-049" in first and "agent-050" not in first
    # who enrolled each agent's instances, the claimed name escaped like everything agents bring
    assert "operator:sha256:0123456789abcdef (claims &lt;script&gt;alert(1)&lt;/script&gt;" in first
    assert HOSTILE[:64] not in first and first.count('<td class="enrolled-by">unrecorded</td>') == 49
    async with http.get(f"{served.url}/map?after=agent-099") as reply:
        last = await reply.text()
    assert last.count('class="agent"') == 20 and "agent-119" in last and "Next agents" not in last
    async with http.get(f"{served.url}/map", headers={"X-Console-Live": "1"}) as reply:
        live = await reply.text()
    assert "<html" not in live and live.count('class="agent"') == 50  # the live part only


async def test_writes_need_the_operator_role_the_csrf_token_and_this_origin(
    served: Served, http: aiohttp.ClientSession
) -> None:
    csrf = await log_in(http, served, served.viewer_token, "vera")
    kill = {"csrf": csrf, "kind": "agent", "value": "billing", "reason": HOSTILE}
    async with http.post(f"{served.url}/kills", data=kill, allow_redirects=False) as reply:
        assert reply.status == 403 and "read-only viewer token" in await reply.text()
    http.cookie_jar.clear()
    csrf = await log_in(http, served, served.operator_token)
    async with http.post(f"{served.url}/kills", data={**kill, "csrf": "forged"}, allow_redirects=False) as reply:
        assert reply.status == 403 and "CSRF" in await reply.text()
    async with http.post(
        f"{served.url}/kills", data={**kill, "csrf": csrf}, headers={"Origin": "https://evil.example"}
    ) as reply:
        assert reply.status == 403 and "may not write to this console" in await reply.text()
    assert (await served.sources.controls.current()).kill_switches == ()
    async with http.post(f"{served.url}/kills", data={**kill, "csrf": csrf}) as reply:
        page = await reply.text()
    [switch] = (await served.sources.controls.current()).kill_switches
    assert switch.reason == HOSTILE and switch.created_by == served.operator.identity
    assert f"Kill switch {switch.id} on agent billing engaged: in force at 0 of 0 live sidecar(s)" in page
    assert HOSTILE not in page and "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in page
    async with http.post(f"{served.url}/kills/{switch.id}/lift", data={"csrf": csrf, "reason": "ok"}) as reply:
        assert f"Kill switch {switch.id} on agent billing lifted" in await reply.text()
    assert (await served.sources.controls.current()).kill_switches == ()
    async with http.post(f"{served.url}/kills/ks-00000000/lift", data={"csrf": csrf, "reason": "x"}) as reply:
        assert "not lifted: no kill switch &#39;ks-00000000&#39; is in force" in await reply.text()
    async with http.post(f"{served.url}/kills", data={"csrf": csrf, "kind": "nonsense", "reason": "x"}) as reply:
        assert reply.status == 400


async def test_logging_out_ends_the_login(served: Served, http: aiohttp.ClientSession) -> None:
    csrf = await log_in(http, served, served.operator_token)
    async with http.post(f"{served.url}/logout", data={"csrf": csrf}) as reply:
        assert reply.url.path == "/login"
    async with http.get(f"{served.url}/map", allow_redirects=False) as reply:
        assert reply.status == 303 and reply.headers["Location"].startswith("/login")


async def test_a_pending_call_is_shown_escaped_and_denied_with_a_reason(
    served: Served, http: aiohttp.ClientSession
) -> None:
    arguments = json.dumps({"customer_id": HOSTILE, "amount_cents": 25000}).encode()
    asked = (
        await served.sources.approvals.request(
            ApprovalAsk(
                agent="support",
                spiffe_id="spiffe://meshwarden.local/agent/support",
                call_kind="agent",
                capability="billing.refund",
                arguments_sha256=hashlib.sha256(arguments).hexdigest(),
                arguments_json=arguments.decode(),
                risk_factors=(HOSTILE,),
                policy_ids=("refund-large",),
                bundle="demo rev 2",
                session_id="s-1",
                workflow_id="",
                call_id="c-1",
                ttl_s=60,
            )
        )
    ).approval
    csrf = await log_in(http, served, served.viewer_token, "vera")
    async with http.get(f"{served.url}/approvals") as reply:
        page = await reply.text()
    assert asked.id in page and 'class="decide"' not in page  # the viewer sees the call, and no form
    assert HOSTILE not in page and page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2  # arguments and why
    http.cookie_jar.clear()
    csrf = await log_in(http, served, served.operator_token)
    decision = {"csrf": csrf, "decision": "deny", "reason": "second refund this week"}
    async with http.post(f"{served.url}/approvals/{asked.id}", data=decision) as reply:
        assert f"Approval {asked.id} denied: support -&gt; billing.refund." in await reply.text()
    decided = await served.sources.approvals.get(asked.id)
    assert decided.state == "denied" and decided.reason == "second refund this week"
    assert decided.decided_by == f"{served.operator.identity} (ann (console))"
    async with http.post(f"{served.url}/approvals/{asked.id}", data=decision) as reply:
        assert "not pending" in await reply.text()  # decided already: said on the page, nothing changes
    async with http.post(f"{served.url}/approvals/{asked.id}", data={**decision, "reason": " "}) as reply:
        assert "reason is required" in await reply.text()


async def test_the_task_list_and_the_approval_queue_page_fifty_at_a_time(
    served: Served, http: aiohttp.ClientSession
) -> None:
    for n in range(60):
        served.clock.now += 1  # distinct creation times: the cursor is (time, id)
        await served.sources.task_queue.submit(Submission(kind="refund", workflow_id="", input_json="{}"), "op")
        await served.sources.approvals.request(
            ApprovalAsk(
                agent="support",
                spiffe_id="spiffe://meshwarden.local/agent/support",
                call_kind="agent",
                capability="billing.refund",
                arguments_sha256=hashlib.sha256(f"{n}".encode()).hexdigest(),
                arguments_json=json.dumps({"n": n}),
                risk_factors=(),
                policy_ids=("refund-large",),
                bundle="demo rev 2",
                session_id="",
                workflow_id="",
                call_id=f"c-{n}",
                ttl_s=3600,
            )
        )
    await log_in(http, served, served.viewer_token, "vera")
    seen: dict[str, list[str]] = {}
    for path, row in (("/tasks", r"<tr><td>(task-[^<]+)</td>"), ("/approvals", r'data-approval="([^"]+)"')):
        url, pages = served.url + path, []
        while url:
            async with http.get(url) as reply:
                text = await reply.text()
            pages.append(re.findall(row, text))
            found = re.search(r'<a class="next" href="([^"]+)"', text)
            url = served.url + found.group(1).replace("&amp;", "&") if found else ""
        assert [len(p) for p in pages] == [50, 10], path
        seen[path] = [item for p in pages for item in p]
    assert len(set(seen["/tasks"])) == len(set(seen["/approvals"])) == 60


async def test_sessions_filter_sort_stuck_work_first_and_page_with_a_cursor(
    served: Served, http: aiohttp.ClientSession
) -> None:
    receipts = [
        *both_sides("stuck-call", "frontdesk", "kb", "kb.search", session="s-stuck", at=10.0),
        *(
            r
            for n in range(60)
            for r in both_sides(f"c{n}", "frontdesk", "billing", "billing.refund", session=f"s{n:02d}", at=1000.0 + n)
        ),
    ]

    def keep(connection: sqlite3.Connection) -> None:
        insert_rows(connection, receipts)
        store_aggregates(connection, receipts, receipts_pb2.Receipt.FromString)

    await served.db.write(keep)
    await log_in(http, served, served.operator_token)
    async with http.get(f"{served.url}/sessions?window=all") as reply:
        first = await reply.text()
    assert first.count('class="session"') == 50 and "s59" in first and "s-stuck" not in first  # newest first
    async with http.get(f"{served.url}/sessions") as reply:  # no window asked: every session, from the totals
        default = await reply.text()  # (these sessions are decades old: any window but "all" shows none)
    listed = re.compile(r'<tr class="session"><td><a href="/sessions/([^"]+)"')
    assert listed.findall(default) == listed.findall(first) and len(listed.findall(first)) == 50
    cursor = re.search(r'href="/sessions\?cursor=([^&"]+)', first)
    assert cursor is not None
    async with http.get(f"{served.url}/sessions?window=all&cursor={cursor.group(1)}") as reply:
        rest = await reply.text()
    assert rest.count('class="session"') == 11 and "s-stuck" in rest and "Next sessions" not in rest
    async with http.get(f"{served.url}/sessions?window=all&order=oldest&state=running") as reply:
        oldest = await reply.text()
    rows = re.findall(r'<tr class="session"><td><a href="/sessions/([^"]+)"', oldest)
    assert rows[:2] == ["s-stuck", "s00"]  # the longest idle on top
    async with http.get(f"{served.url}/sessions?window=all&agent=kb") as reply:
        only_kb = await reply.text()
    assert re.findall(r'<tr class="session"><td><a href="/sessions/([^"]+)"', only_kb) == ["s-stuck"]


async def test_costs_carry_failures_success_rate_tokens_and_spend_on_failed_sessions_beside_budgets(
    served: Served, http: aiohttp.ClientSession
) -> None:
    receipts = [
        *both_sides("ok", "frontdesk", "billing", "billing.refund", session="s-bad", at=1000.0, usage=("m", 5, 7, 30)),
        *both_sides(
            "broke",
            "frontdesk",
            "billing",
            "billing.refund",
            session="s-bad",
            at=1001.0,
            status="INTERNAL",
            usage=("m", 2, 3, 10),
        ),
    ]

    def keep(connection: sqlite3.Connection) -> None:
        insert_rows(connection, receipts)
        store_aggregates(connection, receipts, receipts_pb2.Receipt.FromString)

    await served.db.write(keep)
    billing = Identity(
        spiffe_id=agent_id("meshwarden.local", "billing"), trust_domain="meshwarden.local", kind="agent", name="billing"
    )
    await served.sources.sessions.report_outcome(
        receipts_pb2.ReportOutcomeRequest(session_id="s-bad", outcome="failed"),
        Caller(billing, 0.0, operator=False, sent_bad_operator_token=False, peer="t"),
    )
    operator = Caller(None, 0.0, True, False, "t", operator_id=served.operator.identity)
    await served.sources.budgets.set(TEAM, "finance", MONTH, 50_000_000, 0, "q4", operator)
    await log_in(http, served, served.operator_token)
    async with http.get(f"{served.url}/costs?by=agent&window=all") as reply:
        text = await reply.text()
    rows = re.findall(r'<tr class="cost">(.*?)</tr>', text, re.S)
    cells = [re.sub(r"<[^>]+>", "|", row).replace("\n", "") for row in rows]
    # billing: 2 calls, 1 failed (50.0%), 7 in / 10 out tokens, $0.000040 spent, all of it in a failed session
    assert any("|billing||2||1||50.0%||7 / 10||$0.000040||0||-||$0.000040|" in c for c in cells), cells
    assert "team finance" in text and "$50.000000" in text  # the budget, beside the spend
    for by, key in (
        ("version", "billing@1.0.0"),
        ("caller", "frontdesk -&gt; billing"),
        ("agent-model", "billing x m"),
    ):
        async with http.get(f"{served.url}/costs?by={by}&window=all") as reply:
            assert f'<tr class="cost"><td>{key}</td><td>2</td><td>1</td>' in await reply.text(), by


async def test_a_switch_engaged_elsewhere_shows_its_stored_time_to_effect(
    served: Served, http: aiohttp.ClientSession
) -> None:
    operator = Caller(None, 0.0, True, False, "t", operator_id=served.operator.identity)
    switch, _ = await served.sources.controls.kill(K.SCOPE_KIND_AGENT, "billing", "from the CLI", 0, operator)
    await served.sources.controls.record_effect(KillEffect(switch_id=switch.id, enforced=6, expected=6, took_s=0.0142))
    await log_in(http, served, served.operator_token)
    async with http.get(f"{served.url}/kills") as reply:
        page = await reply.text()
    row = re.search(rf'<tr class="switch" data-switch="{switch.id}">.*?</tr>', page, re.S)
    assert row is not None and "in force at 6 of 6 live sidecar(s) after 0.014 s" in row.group(0)


async def test_bundle_status_pages_fifty_sidecars_with_those_refusing_first(
    served: Served, http: aiohttp.ClientSession
) -> None:
    for n in range(120):
        refusing = n in (7, 99)
        await served.stores.bundles.put_status(
            SidecarBundleStatus(
                instance_id=f"i-{n:03d}",
                agent=f"agent-{n:03d}",
                active_revision=1,
                active_digest="sha256:" + "a" * 64,
                refused_revision=2 if refusing else 0,
                refusal=f"bad signature {HOSTILE}" if refusing else "",
                reported_at=served.clock.wall(),
            )
        )
    await log_in(http, served, served.operator_token)
    async with http.get(f"{served.url}/bundles") as reply:
        first = await reply.text()
    assert "120 sidecar(s) reported: 0 on the latest revision, 2 refusing one." in first
    rows = re.findall(r"<td>(i-\d{3})</td>", first)
    assert len(rows) == 50 and rows[:3] == ["i-007", "i-099", "i-000"]  # what needs a person on top
    assert HOSTILE not in first and "bad signature &lt;script&gt;" in first
    pages = [rows]
    while (after := re.search(r'href="/bundles\?after=([^"]+)"', first)) is not None:
        async with http.get(f"{served.url}/bundles?after={after.group(1)}") as reply:
            first = await reply.text()
        pages.append(re.findall(r"<td>(i-\d{3})</td>", first))
    seen = [instance for page in pages for instance in page]
    assert [len(p) for p in pages] == [50, 50, 20] and sorted(seen) == [f"i-{n:03d}" for n in range(120)]
