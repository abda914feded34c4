"""The SDK's contexts put a task's signed token on the calls they make through the gateway:
a handler called for a task (CallContext) and a task handler (TaskContext), so the sidecar's
gateway can refuse them once the lease is lost."""

from __future__ import annotations

import base64

from meshwarden.agent import CallContext
from meshwarden.client import Client
from meshwarden.task_worker import TaskContext

CLAIM = b"\x0a\x10signed-claim-bytes\xff"


def _decoded(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def test_a_handler_called_for_a_task_sends_the_task_and_its_token_to_the_model_gateway() -> None:
    ctx = CallContext(
        "c1", "plan", "caller", "", "s1", "w1", 1, None, None, "",  # type: ignore[arg-type]
        task_id="task-1", fencing_token=3, _task_token=CLAIM,
    )  # fmt: skip
    headers = ctx.model_headers()
    assert headers["x-meshwarden-task-id"] == "task-1"
    assert _decoded(headers["x-meshwarden-task-token"]) == CLAIM
    assert "x-meshwarden-task-token" not in ctx.model_headers(task_id="task-other")  # no claim for that one


def test_a_handler_called_for_no_task_sends_no_token() -> None:
    ctx = CallContext("c1", "plan", "caller", "", "s1", "w1", 1, None, None, "")  # type: ignore[arg-type]
    assert "x-meshwarden-task-token" not in ctx.model_headers() and "x-meshwarden-task-id" not in ctx.model_headers()


async def test_a_task_handlers_gateway_headers_carry_the_local_token_the_task_and_its_claim() -> None:
    async with Client("127.0.0.1:1", api_token="local-secret") as client:
        ctx = TaskContext(
            task_id="task-2", kind="refund", workflow_id="wf-2", attempt=1, fencing_token=4,
            signed_token=CLAIM, _client=client,
        )  # fmt: skip
        headers = ctx.gateway_headers()
    assert headers["authorization"] == "Bearer local-secret"
    assert (headers["x-meshwarden-task-id"], headers["x-meshwarden-workflow-id"]) == ("task-2", "wf-2")
    assert _decoded(headers["x-meshwarden-task-token"]) == CLAIM
