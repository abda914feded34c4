"""The calls made for a task: every receipt that names it (its signed token was on the call),
for `tasks show`, grouped there by fencing token so an operator sees what each holder did,
including a stale holder's refused calls.

Receipts carry the task (Receipt.task_id, fencing_token), copied at ingest into the receipts'
indexed task_id column, so this reads the task's receipts alone, however many others are
stored. Receipts stored before that column existed are not found (see
registry.store.receipt_columns.LOOKUP_COLUMNS).
"""

from __future__ import annotations

from typing import Final

from meshwarden.registry.receipts import Receipts
from meshwarden.registry.task_queue import StoredTask
from meshwarden.v1 import receipts_pb2

MAX_CALLS: Final = 1000


async def calls_for(receipts: Receipts, task: StoredTask) -> tuple[list[receipts_pb2.Receipt], bool]:
    """The task's calls by started_at (at most MAX_CALLS, the oldest), and whether more were found."""
    found = await receipts.for_task(task.id, MAX_CALLS + 1)
    return found[:MAX_CALLS], len(found) > MAX_CALLS
