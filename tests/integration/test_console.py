"""The web console in a real browser: Playwright drives Debian's chromium (never a downloaded
browser) against a real mesh whose registry serves the console. One mesh and one browser for
the module; each test opens its own browser context (its own cookies).

Logged in as an operator, every view opens; a refund held for approval appears in the queue
without a reload, is approved in the page and the agent's call completes; a kill switch
engaged in the page refuses calls until it is lifted there. The viewer token looks but cannot
act, a login ends after its idle time, and failed logins are audited and then rate-limited.
What agents and people type (arguments, names, reasons) is shown as text, never run.
Screenshots are kept in test-artifacts/console/ (gitignored).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest
import pytest_asyncio

import meshwarden
from meshwarden import errors
from meshwarden.v1 import controls_pb2, controls_pb2_grpc
from tests.integration.mesh import LocalMesh
from tests.integration.test_approvals import POLICIES, pending
from tests.integration.test_calls import routable
from tests.integration.test_policy import billing_pair
from tests.system_tools import require_program

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM_FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
IDLE_S: Final = 5  # the console logins' idle time in this module (the live pages poll every 2 s)
ARTIFACTS: Final = Path(__file__).parents[2] / "test-artifacts" / "console"
HOSTILE: Final = '<img src=x onerror="window.__pwned=1"><script>__pwned=1</script>'  # 64: fits a user name
VIEWS: Final = {
    "/map": "Agents and who calls whom",
    "/sessions": "Sessions",
    "/costs": "Costs and budgets",
    "/approvals": "Approvals",
    "/kills": "Kill switches",
    "/tasks": "Tasks",
    "/bundles": "Policy bundles",
    "/audit": "Audit log",
}


class Console:
    """The mesh with its console, the browser, and how to log in."""

    def __init__(self, mesh: LocalMesh, browser: Any, client: meshwarden.Client) -> None:
        self.mesh, self.browser, self.client = mesh, browser, client
        assert mesh.registry is not None
        self.url = f"http://{mesh.registry.addresses['console']}"

    def token(self, role: str) -> str:
        return (self.mesh.registry_data_dir / f"{role}.token").read_text().strip()

    async def log_in(self, role: str = "operator", user: str = "alice") -> tuple[Any, Any]:
        context = await self.browser.new_context(base_url=self.url)
        page = await context.new_page()
        await page.goto("/login")
        await page.fill("input[name=token]", self.token(role))
        await page.fill("input[name=user]", user)
        await page.click("form.login button")
        await page.wait_for_url("**/map")
        return context, page


async def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def not_run(page: Any) -> None:
    """Nothing hostile ran and no injected element exists."""
    assert await page.evaluate("window.__pwned === undefined")
    assert await page.locator("img").count() == 0
    assert await page.locator("main script").count() == 0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> AsyncIterator[Console]:
    chromium = require_program("chromium", "chromium")
    mesh = LocalMesh(tmp_path_factory.mktemp("console"))
    failed_before = request.session.testsfailed
    await mesh.start_registry(
        "127.0.0.1:0", "", "--console-listen", "127.0.0.1:0", "--console-session-idle-s", str(IDLE_S)
    )
    playwright = await playwright_api.async_playwright().start()
    try:
        await mesh.push_bundle(mesh.bundles.make(2, POLICIES))
        support, _, browser = await asyncio.gather(  # side by side: each mostly waits for its process
            mesh.sidecar("support"),
            billing_pair(mesh),
            playwright.chromium.launch(executable_path=chromium, args=list(CHROMIUM_FLAGS)),
        )
        async with meshwarden.Client(support.addresses["listen"]) as client:
            await routable(client, "billing.refund", payload={"customer_id": "C1", "amount_cents": 100})
            yield Console(mesh, browser, client)
        await browser.close()
    finally:
        await playwright.stop()
        await mesh.close()
        if request.session.testsfailed > failed_before:
            print(mesh.logs())


async def test_an_operator_logs_in_and_every_view_opens(console: Console) -> None:
    context, page = await console.log_in(user=HOSTILE)
    try:
        [cookie] = await context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # plain HTTP on loopback
        assert HOSTILE in await page.inner_text("#who")  # the name typed, as text
        for path, heading in VIEWS.items():
            await page.goto(path)
            assert await page.inner_text("h1") == heading
            await not_run(page)
            await shot(page, f"view{path.replace('/', '-')}")
        await page.goto("/map")
        agents = page.locator("#agents tr.agent")
        assert await agents.count() == 1  # billing; support is a pure caller with no instance
        assert "billing" in await agents.nth(0).inner_text()
        # who let billing's instances in, from their SVIDs: this loopback mesh enrols openly
        assert await agents.nth(0).locator("td.enrolled-by").inner_text() == "open_enrolment"
        await page.wait_for_selector("#edges tr.edge")  # support -> billing, from the warm-up call's receipts
        assert "support" in await page.inner_text("#edges")
        await page.goto("/bundles")
        assert "revision 2" in await page.inner_text("#latest")
    finally:
        await context.close()


async def test_a_call_held_for_approval_is_approved_in_the_page_and_completes(console: Console) -> None:
    context, page = await console.log_in()
    try:
        await page.goto("/approvals")
        assert await page.locator("#no-pending").count() == 1
        refund = {"customer_id": "C7", "amount_cents": 25000, "reason": HOSTILE}
        waiting = asyncio.create_task(
            console.client.invoke("billing.refund", refund, timeout=30, session_id="s-console")
        )
        held = await pending(console.mesh)
        card = page.locator(f"section.approval[data-approval='{held.id}']")
        await card.wait_for()  # arrived by a live update: no reload
        assert json.loads(await card.locator("pre.arguments").inner_text()) == refund  # shown as text, exactly
        await not_run(page)
        await shot(page, "approval-pending")
        assert not waiting.done()
        await card.locator("input[name=reason]").fill("customer verified by phone")
        await card.locator("button.approve").click()
        await page.wait_for_selector("p.notice")
        assert f"Approval {held.id} approved" in await page.inner_text("p.notice")
        result = await asyncio.wait_for(waiting, 30)
        assert result.value["status"] == "issued" and result.value["amount_cents"] == 25000
        assert "customer verified by phone" in await page.inner_text("#decided")

        await page.goto("/sessions/s-console")  # the timeline shows who decided, once the receipts arrive
        await page.wait_for_selector("#timeline .approval", timeout=20_000)  # a live update, if they were late
        assert await page.locator("#problem").count() == 0
        assert f"approval {held.id} approved by operator:sha256:" in await page.inner_text("#timeline")
        assert "refund-large" in await page.inner_text("#timeline")
        await shot(page, "session-timeline")
    finally:
        await context.close()


async def test_a_kill_switch_engaged_in_the_page_refuses_calls_until_lifted_there(console: Console) -> None:
    context, page = await console.log_in()
    small = {"customer_id": "C2", "amount_cents": 300}
    try:
        await page.goto("/kills")
        await page.select_option("#engage select[name=kind]", "agent")
        await page.fill("#engage input[name=value]", "billing")
        await page.fill("#engage input[name=reason]", f"refunds misbehaving {HOSTILE}")
        await page.click("#engage button.kill")
        notice = await page.inner_text("p.notice")
        assert re.search(r"engaged: in force at \d+ of \d+ live sidecar\(s\) after [\d.]+ s", notice), notice
        row = page.locator("#switches tr.switch")
        assert await row.count() == 1 and HOSTILE in await row.inner_text()
        assert "live sidecar(s) after" in await row.inner_text()  # its time to effect, in the table
        await not_run(page)
        await shot(page, "kill-engaged")
        with pytest.raises(errors.KillSwitchEngaged):
            await console.client.invoke("billing.refund", small, timeout=10)

        await row.locator("input[name=reason]").fill("fixed")
        await row.locator("button").click()
        assert "lifted: in force at" in await page.inner_text("p.notice")
        assert await page.locator("#no-switches").count() == 1
        result = await console.client.invoke("billing.refund", small, timeout=10)
        assert result.value["status"] == "issued"
    finally:
        await context.close()


async def test_the_viewer_token_looks_but_cannot_act(console: Console) -> None:
    context, page = await console.log_in("viewer", "vera")
    try:
        assert await page.inner_text("#who .role") == "viewer"
        await page.goto("/kills")
        assert await page.locator("#engage").count() == 0  # no form to act with
        csrf = await page.get_attribute("header input[name=csrf]", "value")
        forged = {"csrf": csrf, "kind": "all", "value": "", "reason": "viewer tries"}
        refused = await page.request.post("/kills", form=forged, max_redirects=0)
        assert refused.status == 403 and "read-only viewer token" in await refused.text()
        await page.reload()
        assert await page.locator("#no-switches").count() == 1  # nothing was engaged
    finally:
        await context.close()
    context, page = await console.log_in()  # an operator, but a form without the login's CSRF token
    try:
        stale = await page.request.post("/kills", form={"csrf": "x", "kind": "all", "reason": "r"}, max_redirects=0)
        assert stale.status == 403 and "CSRF" in await stale.text()
    finally:
        await context.close()


async def test_a_login_ends_after_its_idle_time(console: Console) -> None:
    context, page = await console.log_in()
    try:
        await page.goto("about:blank")  # nothing polls: the login sees no request from now on
        await asyncio.sleep(IDLE_S + 1)  # the idle time itself is what is tested
        await page.goto(f"{console.url}/sessions")
        assert page.url.endswith("/login?ended=1")
        assert "session ended" in await page.inner_text("#problem")
        await shot(page, "session-ended")
    finally:
        await context.close()


async def test_failed_logins_are_audited_then_refused_for_a_while(console: Console) -> None:
    """Last in the module: it leaves this address refused for a minute."""
    context = await console.browser.new_context(base_url=console.url)
    try:
        answers = []
        for attempt in range(6):
            reply = await context.request.post("/login", form={"token": f"mwo1.guess{attempt}", "user": "mallory"})
            answers.append(reply.status)
        assert answers == [401] * 5 + [429]
        assert int(reply.headers["retry-after"]) >= 1
        refused = await context.request.post("/login", form={"token": console.token("operator"), "user": "alice"})
        assert refused.status == 429  # the right token too, until the window moves on
        async with await console.mesh.operator_channel() as channel:
            audit = await controls_pb2_grpc.ControlsStub(channel).ListAudit(
                controls_pb2.ListAuditRequest(), metadata=console.mesh.operator_metadata(), timeout=5
            )
        failed = [e for e in audit.entries if e.action == "console.login.failed"]
        assert len(failed) == 5 and all(e.claimed_user == "mallory" for e in failed)
        assert "127.0.0.1" in failed[0].actor
    finally:
        await context.close()
