"""Budgets on model calls through the gateway, with the official openai client and the provider
stand-in: the worst case is reserved, the measured usage settled; a budget that runs out answers
429 in OpenAI's shape naming the budget; where the catalog declares a cheaper fallback and
policy allows it, the call runs on that model instead and its receipt says so."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import openai
import pytest

from meshwarden.budget_scopes import DAY, MODEL, TOTAL, WORKFLOW
from meshwarden.supervise import meshwarden_argv
from meshwarden.v1 import receipts_pb2
from tests.integration.test_budgets import set_budget, states
from tests.integration.test_model_gateway import POLICIES, SESSION, Gateway, _prices, catalog
from tests.integration.test_model_gateway import gateway as gateway  # the fixture
from tests.integration.test_usage import until

pytestmark = pytest.mark.integration

ASK = [{"role": "user", "content": "hello"}]


async def test_a_model_budget_reserves_settles_and_refuses_with_a_429(gateway: Gateway) -> None:
    mesh = gateway.mesh
    client = gateway.openai(**SESSION)
    first = await client.chat.completions.create(model="gpt-test", messages=ASK)  # known to the sidecar
    assert first.usage is not None
    budget = await set_budget(mesh, MODEL, "gpt-test", DAY, 400)  # a worst case is ~190, a call measures ~20
    answered, refused = 0, None
    for _ in range(60):
        try:
            await client.chat.completions.create(model="gpt-test", messages=ASK)
            answered += 1
        except openai.RateLimitError as err:
            refused = err
            break
    assert refused is not None and answered >= 1, (answered, await states(mesh))
    message = refused.message
    assert budget.id in message and "model gpt-test" in message and "per day" in message, message

    async def reported() -> bool:
        return (await states(mesh))[(budget.id, "")].spent_micro_usd > 0

    await until(reported, "the measured spend reaching the registry")
    state = (await states(mesh))[(budget.id, "")]
    assert state.spent_micro_usd + state.reserved_micro_usd <= 400  # never beyond the cap


async def test_a_cheaper_declared_fallback_runs_when_the_budget_is_short(gateway: Gateway, tmp_path: Path) -> None:
    mesh = gateway.mesh
    # "big-test" costs 100 times what "gpt-test" does and declares it as its fallback.
    pricey = _prices("big-test", "up", fallbacks=["gpt-test"])
    pricey["price_micro_usd_per_mtok"] = {"input": 100_000_000, "output": 200_000_000, "cached_input": 50_000_000}
    up = next(c for c in mesh.children if c.name.endswith("provider-up")).addresses["listen"]
    down = next(c for c in mesh.children if c.name.endswith("provider-down")).addresses["listen"]
    cut = next(c for c in mesh.children if c.name.endswith("provider-cut")).addresses["listen"]
    declared = json.loads(catalog(up, down, cut, tmp_path / "claude.key"))
    declared["models"]["big-test"] = pricey
    budget = await set_budget(mesh, WORKFLOW, "wf-model", TOTAL, 3_000)  # big-test's worst case is far above
    client = gateway.openai(**SESSION)

    async def budget_known() -> bool:  # budgets and bundles reach the sidecar on separate streams
        await client.chat.completions.create(model="gpt-test", messages=ASK)
        state = (await states(mesh))[(budget.id, "")]
        return state.spent_micro_usd + state.reserved_micro_usd > 0  # a slice leased, or a call charged

    await until(budget_known, "the sidecar charging the workflow's budget")
    await mesh.push_bundle(mesh.bundles.make(3, POLICIES, models=json.dumps(declared)))

    async def big_known() -> bool:
        try:
            answer = await client.chat.completions.create(model="big-test", messages=ASK)
        except openai.NotFoundError:
            return False
        assert answer.model.startswith("gpt-test"), answer.model  # downgraded: gpt-test answered
        return True

    await until(big_known, "the bundle with big-test active on the sidecar")
    downgraded: list[receipts_pb2.Receipt] = []

    async def downgrade_shipped() -> bool:  # behind the receipts of the calls that waited for the budget
        downgraded[:] = [r for r in await gateway.receipts(1) if r.budget_downgraded_to == "gpt-test"]
        return bool(downgraded)

    await until(downgrade_shipped, "the downgraded call's receipt reaching the registry")
    assert downgraded[0].capability == "big-test"  # what was asked
    assert list(downgraded[0].budget_ids) == [budget.id]
    assert 0 < downgraded[0].budget_settled_micro_usd <= downgraded[0].budget_reserved_micro_usd
    assert downgraded[0].budget_short == budget.id  # the budget that had no room for big-test
    # Question 12: the decision that changed the call, by the budget that made it, beside the refusals.
    flags = ["--registry", mesh.registry_address, "--ca-pin", mesh.registry.addresses["ca_fingerprint"]]  # type: ignore[union-attr]
    costs = await asyncio.to_thread(
        subprocess.run,
        meshwarden_argv("costs", "--by", "refusal", "--output", "json", *flags),
        capture_output=True,
        text=True,
        env={**os.environ, "MESHWARDEN_OPERATOR_TOKEN": mesh.operator_token()},
        timeout=60,
    )
    assert costs.returncode == 0, costs.stderr
    causes = {row["key"]: row["calls"] for row in json.loads(costs.stdout)}
    assert causes[f"downgrade by budget {budget.id}"] >= 1, causes
