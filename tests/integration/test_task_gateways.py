"""Model calls made for a task carry its signed fencing token through the sidecar's model
gateway (the official `openai` client, header x-meshwarden-task-token): a current token passes
and the receipt names the task and token; once the lease lapsed the gateway refuses the call
with the lease-lost message (403), before anything reaches the provider."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from tests.integration.mesh import LocalMesh
from tests.integration.task_leases import holder
from tests.integration.test_model_gateway import AGENT_TOKEN, POLICIES, PROVIDER_KEY, SESSION, Gateway, catalog

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway(mesh: LocalMesh, tmp_path: Path) -> AsyncIterator[Gateway]:
    """test_model_gateway's gateway with only the one provider stand-in these calls use."""
    standin = [sys.executable, "-m", "meshwarden.demo.model_provider", "--key", PROVIDER_KEY]
    up = (await mesh.start_process("provider-up", standin, health_address_key=None)).addresses["listen"]
    key_file = tmp_path / "claude.key"
    key_file.write_text(PROVIDER_KEY + "\n")
    key_file.chmod(0o600)
    await mesh.push_bundle(mesh.bundles.make(2, POLICIES, models=catalog(up, up, up, key_file)))
    token_file = tmp_path / "agent.token"
    token_file.write_text(AGENT_TOKEN)
    token_file.chmod(0o600)
    sidecar = await mesh.sidecar(
        "support", "--api-token-file", str(token_file), "--receipt-ship-interval-s", "0.2",
        env={"STANDIN_KEY": PROVIDER_KEY},
    )  # fmt: skip
    opened = Gateway(mesh, sidecar, tmp_path / "unused.jsonl")
    yield opened
    for client in opened.clients:
        await client.close()


def _header(signed: bytes) -> str:
    return base64.urlsafe_b64encode(signed).rstrip(b"=").decode()


async def test_a_model_call_under_a_lapsed_task_token_is_refused_with_lease_lost(gateway: Gateway) -> None:
    async with holder(gateway.mesh, "planner", "plan.trip") as planner:
        leased = await planner.submit_and_lease(ttl_s=0.8)
    task = leased.task
    headers = {**SESSION, "x-meshwarden-task-id": task.id, "x-meshwarden-task-token": _header(leased.signed_token)}
    client = gateway.openai(**headers)
    answer = await client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "plan"}])
    assert answer.choices[0].message.content == "You said: plan"
    [receipt] = await gateway.receipts(1)
    assert (receipt.task_id, receipt.fencing_token, receipt.model_task_id) == (task.id, 1, task.id)

    # Nobody heartbeats: the lease lapses, and no sidecar needs to be told.
    await asyncio.sleep(max(task.lease_expires_at.ToMicroseconds() / 1e6 - time.time(), 0.0) + 0.2)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "again"}])
    assert f"lease lost: task {task.id} token 1" in refused.value.message and refused.value.code == "lease_lost"

    with pytest.raises(openai.BadRequestError) as mismatched:  # a token for another task than the id names
        await gateway.openai(**{**headers, "x-meshwarden-task-id": "task-other"}).chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "x"}]
        )
    assert "x-meshwarden-task-id" in mismatched.value.message
    assert len(await gateway.receipts(2)) >= 2  # the refusal has its receipt too
