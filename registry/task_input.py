"""What a task request may hold: the limits on every field from outside, checked before the
queue touches the database, each refusal naming the field (InvalidInput)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final

from meshwarden.registry.errors import InvalidInput

if TYPE_CHECKING:
    from meshwarden.registry.task_queue import Submission

MAX_ID_CHARS: Final = 128
MAX_INPUT_BYTES: Final = 64 * 1024
MAX_RESULT_BYTES: Final = 64 * 1024
MAX_TEXT_CHARS: Final = 1000
MAX_ATTEMPTS: Final = 100
MAX_LIST: Final = 10_000
DEFAULT_MAX_ATTEMPTS: Final = 3
DEFAULT_LEASE_TTL_S: Final = 10.0
MIN_LEASE_TTL_S: Final = 0.5
MAX_LEASE_TTL_S: Final = 3600.0


def check_submission(submission: Submission) -> None:
    check_id("kind", submission.kind)
    if len(submission.workflow_id) > MAX_ID_CHARS:
        raise InvalidInput("workflow_id", f"is over {MAX_ID_CHARS} characters")
    if len(submission.idempotency_key) > MAX_ID_CHARS:
        raise InvalidInput("idempotency_key", f"is over {MAX_ID_CHARS} characters")
    _check_json("input_json", submission.input_json, MAX_INPUT_BYTES, required=True)
    if not 0 <= submission.max_attempts <= MAX_ATTEMPTS:
        raise InvalidInput("max_attempts", f"must be between 1 and {MAX_ATTEMPTS} (0 for {DEFAULT_MAX_ATTEMPTS})")
    ttl = submission.lease_ttl_s
    if ttl != 0.0 and not MIN_LEASE_TTL_S <= ttl <= MAX_LEASE_TTL_S:
        raise InvalidInput("lease_ttl", f"must be between {MIN_LEASE_TTL_S} s and {MAX_LEASE_TTL_S:.0f} s")


def check_outcome(result_json: str, error: str) -> None:
    _check_json("result_json", result_json, MAX_RESULT_BYTES, required=False)
    check_text("error", error)


def check_id(field: str, value: str) -> None:
    if not value:
        raise InvalidInput(field, "is required")
    if len(value) > MAX_ID_CHARS:
        raise InvalidInput(field, f"is over {MAX_ID_CHARS} characters")


def check_text(field: str, value: str) -> None:
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidInput(field, f"is over {MAX_TEXT_CHARS} characters")


def _check_json(field: str, text: str, limit: int, *, required: bool) -> None:
    if not text:
        if required:
            raise InvalidInput(field, 'is required: a JSON value such as {"ticket": 42}')
        return
    if len(text.encode()) > limit:
        raise InvalidInput(field, f"is over {limit} bytes")
    try:
        json.loads(text)
    except ValueError as exc:
        raise InvalidInput(field, f"is not JSON: {exc}") from None
