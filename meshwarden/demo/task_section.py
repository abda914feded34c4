"""The demo's task step: a refund task whose first holder freezes (SIGSTOP) past its lease,
is taken over by another worker, and whose stale refund, when it wakes (SIGCONT), is refused
with "lease lost" by its own sidecar: the refund happens once, under the newer token."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from meshwarden.supervise import Child

if TYPE_CHECKING:
    from meshwarden.demo.scenario import Narrator

Operator = Callable[..., Awaitable[str]]
StartWorker = Callable[[int, float], Awaitable[Child]]


async def frozen_holder_loses_its_refund(start_worker: StartWorker, operator: Operator, n: Narrator) -> None:
    n.section("A task whose holder freezes: the lease moves on, and the stale refund is refused")
    first = await start_worker(6, 3.0)  # works 3 s before refunding: it is frozen in that time
    submitted = json.loads(
        await operator(
            "tasks",
            "submit",
            "--kind",
            "refund",
            "--workflow",
            "refunds",
            "--lease-ttl",
            "1s",
            "--input",
            json.dumps({"ticket_id": "T-1700", "customer_id": "C42", "amount_cents": 1999}),
            "--output",
            "json",
        )  # fmt: skip
    )
    task_id = str(submitted["task"]["id"])
    running = await _until(operator, task_id, lambda t: t["state"] == "running")
    if running is None:
        n.fail(f"task {task_id} was never taken by the first worker")
        return
    n.say(f"task {task_id} is running on {running['holder_instance_id']} under token {running['fencing_token']}")
    os.kill(first.process.pid, signal.SIGSTOP)
    n.say(f"the first worker (pid {first.process.pid}) freezes mid-task (SIGSTOP), past its 1 s lease")
    try:
        await start_worker(7, 0.0)
        done = await _until(operator, task_id, lambda t: t["state"] == "succeeded")
    finally:
        os.kill(first.process.pid, signal.SIGCONT)
    if done is None:
        n.fail(f"task {task_id} was not taken over and completed by the second worker")
        return
    n.ok(f"the second worker took the task under token {done['fencing_token']} and completed it")
    n.say("the first worker wakes (SIGCONT) and, its work done, asks for the refund under token 1")
    refused = await _stale_call(operator, task_id)
    if refused is None:
        n.fail("no refused call under token 1 reached the registry's receipts")
    else:
        n.ok(f"its own sidecar refused the stale {refused['capability']}: {refused['error'][:110]}")
    await operator("tasks", "show", task_id)


async def _stale_call(operator: Operator, task_id: str) -> dict[str, Any] | None:
    """The refused outbound call made under token 1, once its receipt has been shipped."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        shown = json.loads(await operator("tasks", "show", task_id, "--output", "json", quiet=True) or "{}")
        for call in shown.get("calls", []):
            if str(call["fencing_token"]) == "1" and call["direction"] == "outbound" and call["status"] != "OK":
                return dict(call)
        await asyncio.sleep(0.5)
    return None


async def _until(operator: Operator, task_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        shown = json.loads(await operator("tasks", "show", task_id, "--output", "json", quiet=True) or "{}")
        task = shown.get("task", shown)
        if done(task):
            return dict(task)
        await asyncio.sleep(0.2)
    return None
