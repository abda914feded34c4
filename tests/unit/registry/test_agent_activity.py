"""What each agent has in progress (`agents list`, question 1), on both stores: running sessions
from the aggregates kept as receipts are shipped, tasks from the leases the task queue grants."""

from __future__ import annotations

from meshwarden.registry.receipts import Receipts
from meshwarden.registry.store import Stores
from meshwarden.registry.store.records import StoredOutcome
from meshwarden.registry.task_queue import HELD, Holder, Submission, TaskQueue
from tests.unit.registry.test_receipts import BILLING, ISSUER, KB, chain
from tests.unit.registry.test_receipts import _ship as ship
from tests.unit.sidecar.fakes import FakeClock


async def test_running_sessions_count_for_every_agent_in_them_until_an_outcome_is_reported(stores: Stores) -> None:
    receipts = Receipts(stores.receipts, FakeClock(), trust_bundle_pem=ISSUER.bundle_pem)
    await ship(receipts, BILLING, chain(6, instance="billing-1", spiffe_id=BILLING))  # sessions s0, s1, s2
    await ship(receipts, KB, chain(2, instance="kb-1", spiffe_id=KB))  # kb in s1 and s2
    await stores.outcomes.add_first(
        StoredOutcome(session_id="s1", outcome="succeeded", detail="", reported_by="billing", reported_at=5000.0)
    )
    activity = await stores.agent_activity.in_progress(["kb", "billing", "frontdesk", "nobody"], HELD)
    assert [(a.agent, a.sessions_running, a.tasks_in_progress) for a in activity] == [
        ("kb", 1, 0),  # s2; s1 ended
        ("billing", 2, 0),  # s0 and s2
        ("frontdesk", 2, 0),  # served billing's calls: a member of s0 and s2 too
        ("nobody", 0, 0),
    ]


async def test_tasks_in_progress_are_those_an_agents_instances_hold(stores: Stores) -> None:
    queue = TaskQueue(stores.tasks, FakeClock())
    submission = Submission(
        kind="refund", workflow_id="wf", input_json="{}", idempotency_key="", max_attempts=2, lease_ttl_s=30.0
    )
    for _ in range(5):
        await queue.submit(submission, "operator")
    a, b = Holder(instance_id="worker-a", agent="worker"), Holder(instance_id="worker-b", agent="worker")
    first, second, third = [await queue.lease(h, ("refund",)) for h in (a, b, a)]
    assert first is not None and second is not None and third is not None
    await queue.start(second.id, b, second.fencing_token)  # RUNNING counts as much as LEASED
    await queue.start(third.id, a, third.fencing_token)
    await queue.complete(third.id, a, third.fencing_token, succeeded=True, result_json="{}", error="")
    await queue.lease(Holder(instance_id="other-1", agent="other"), ("refund",))
    activity = await stores.agent_activity.in_progress(["worker", "other", "queued"], HELD)
    assert [(a.agent, a.tasks_in_progress) for a in activity] == [("worker", 2), ("other", 1), ("queued", 0)]
