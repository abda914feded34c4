"""The calls made for a task: every receipt that names it (its signed token was on the call),
for `tasks show`, grouped there by fencing token so an operator sees what each holder did,
including a stale holder's refused calls.

Receipts carry the task (Receipt.task_id, fencing_token) but the store has no index on it, so
this reads the receipts from the task's submission on (at most `WINDOW_S` of them) and keeps
those of the task: cheap for a registry's usual load, a scan of that window on a busy one.
"""

from __future__ import annotations

from typing import Final

from meshwarden.registry.receipts import Receipts
from meshwarden.registry.task_queue import StoredTask
from meshwarden.v1 import receipts_pb2

WINDOW_S: Final = 24 * 3600.0  # calls made more than a day after submission are not looked for
MAX_CALLS: Final = 1000


async def calls_for(receipts: Receipts, task: StoredTask, now: float) -> tuple[list[receipts_pb2.Receipt], bool]:
    """The task's calls by started_at (at most MAX_CALLS, the oldest), and whether more were found."""
    until = min(now, task.created_at + WINDOW_S) + 1.0
    found = [r for r in await receipts.between(task.created_at, until) if r.task_id == task.id]
    return found[:MAX_CALLS], len(found) > MAX_CALLS
