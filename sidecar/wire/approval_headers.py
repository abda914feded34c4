"""The agent's say about approvals, as request metadata (gRPC) or headers (the HTTP gateway):
`x-meshwarden-approval-wait: none` answers a call that needs a pending approval at once with
its id (ApprovalPending) instead of waiting within the deadline, and
`x-meshwarden-approval-id: ap-...` retries a call with the approval it was given. Checked here,
at the edge: anything else is a BadPayload that says what to send."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from meshwarden.errors import BadPayload

WAIT_HEADER: Final = "x-meshwarden-approval-wait"
ID_HEADER: Final = "x-meshwarden-approval-id"
_WAITS: Final = {"": True, "deadline": True, "none": False}
_APPROVAL_ID: Final = re.compile(r"ap-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class ApprovalOptions:
    approval_id: str = ""
    wait: bool = True


WAIT_WITHOUT_ID: Final = ApprovalOptions()  # what a call that says nothing gets


def from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> ApprovalOptions:
    found = {key: value for key, value in metadata or () if key in (WAIT_HEADER, ID_HEADER)}
    wait_text = _text(found.get(WAIT_HEADER, "")).strip().lower()
    if wait_text not in _WAITS:
        raise BadPayload(
            f"{WAIT_HEADER} must be 'none' (answer at once) or 'deadline' (the default), got {wait_text[:40]!r}"
        )
    approval_id = _text(found.get(ID_HEADER, "")).strip()
    if approval_id and not _APPROVAL_ID.fullmatch(approval_id):
        raise BadPayload(f"{ID_HEADER} {approval_id[:40]!r} is no approval id: send the ap-... id ApprovalPending gave")
    return ApprovalOptions(approval_id=approval_id, wait=_WAITS[wait_text])


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
