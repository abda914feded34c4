"""The columns every store keeps beside a receipt's body, copied out of it for queries.

`body` is the Receipt as shipped (what its hash covers); the other columns repeat fields of
it, and `receipts verify` (registry.receipt_verification) checks that they still agree.
Shared by every implementation of the seam, so they store and check the same row.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import timestamp_pb2

from meshwarden.v1 import receipts_pb2

Row = tuple[Any, ...]

COLUMNS: Final = (
    "sidecar_instance_id",
    "seq",
    "prev_hash",
    "hash",
    "direction",
    "call_id",
    "session_id",
    "workflow_id",
    "caller_agent",
    "caller_team",
    "callee_agent",
    "callee_team",
    "capability",
    "status",
    "model",
    "cost_micro_usd",
    "started_at",
    "body",
)


def columns_of(receipt: receipts_pb2.Receipt, body: bytes) -> Row:
    """The row stored for `receipt` (its encoding `body`): what `receipts verify` expects."""
    return (
        receipt.sidecar_instance_id,
        receipt.seq,
        receipt.prev_hash,
        receipt.hash,
        receipt.direction,
        receipt.call_id,
        receipt.session_id,
        receipt.workflow_id,
        receipt.caller_agent,
        receipt.caller_team,
        receipt.callee_agent,
        receipt.callee_team,
        receipt.capability,
        receipt.status,
        receipt.usage.model,
        receipt.usage.cost_micro_usd,
        seconds(receipt.started_at),
        body,
    )


# Copied out at ingest for lookups alone (the task column: `tasks show` finds a task's calls
# through its index). Not in COLUMNS, so `receipts verify` does not compare it: receipts stored
# before the column existed keep "" there. Readers keep only receipts whose hashed body names
# the task, so an edited column can hide a call from `tasks show`, never add one to it.
LOOKUP_COLUMNS: Final = ("task_id",)


def stored_row(receipt: receipts_pb2.Receipt) -> Row:
    """What a store inserts for `receipt`: COLUMNS, then LOOKUP_COLUMNS."""
    return (*columns_of(receipt, receipt.SerializeToString(deterministic=True)), receipt.task_id)


def seconds(timestamp: timestamp_pb2.Timestamp) -> float:
    """A google.protobuf.Timestamp as Unix seconds (the registry's time unit on disk)."""
    return float(timestamp.seconds) + timestamp.nanos / 1e9
