"""The task an HTTP call (model gateway, MCP gateway) works on: its signed fencing claim, read
from the request's headers, so the `task_fence` stage checks it like an agent call's.

The SDK's task context sets `x-meshwarden-task-token` (the registry's signed claim, base64url)
beside `x-meshwarden-task-id` on the clients it hands out. A token that is no base64url, too
long, or for another task than the id header names is bad input; whether it is current is the
stage's to decide (meshwarden.task_fence), not this edge's.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Final

from meshwarden import task_fence

TASK_ID_HEADER: Final = "x-meshwarden-task-id"
TASK_TOKEN_HEADER: Final = "x-meshwarden-task-token"
MAX_TOKEN_CHARS: Final = 1024  # a claim is about 200 bytes


class BadTaskToken(ValueError):
    """The token header cannot be a claim; the message names the header and what to send."""


def task_token(headers: Mapping[str, str]) -> bytes:
    """The signed claim the request carries (b"" when none)."""
    text = headers.get(TASK_TOKEN_HEADER, "").strip()
    if not text:
        return b""
    if len(text) > MAX_TOKEN_CHARS:
        raise BadTaskToken(f"header {TASK_TOKEN_HEADER} is over {MAX_TOKEN_CHARS} characters")
    try:
        token = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadTaskToken(
            f"header {TASK_TOKEN_HEADER} must be the task's signed token in base64url, as the SDK's task context sends it"
        ) from None
    named = headers.get(TASK_ID_HEADER, "").strip()
    claimed, _ = task_fence.claimed_task(token)
    if named and claimed and named != claimed:
        raise BadTaskToken(f"header {TASK_ID_HEADER} names task {named[:128]!r}, but the token is for task {claimed!r}")
    return token
