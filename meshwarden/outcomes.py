"""What a session's outcome may be, checked alike by the SDK (before it sends), the sidecar
(before it forwards) and the registry (before it stores): one rule, three places that refuse."""

from __future__ import annotations

from typing import Final, Literal

OutcomeName = Literal["succeeded", "failed", "abandoned"]
OUTCOMES: Final[tuple[OutcomeName, ...]] = ("succeeded", "failed", "abandoned")
MAX_SESSION_ID_CHARS: Final = 128
MAX_DETAIL_CHARS: Final = 2000


def problem(session_id: str, outcome: str, detail: str) -> tuple[str, str] | None:
    """(field, what is wrong) for the first problem of an outcome report, or None when it is fine."""
    if not session_id:
        return "session_id", "is empty; report the outcome of the session the calls carried (session_id=...)"
    if len(session_id) > MAX_SESSION_ID_CHARS:
        return "session_id", f"is {len(session_id)} characters; session ids have at most {MAX_SESSION_ID_CHARS}"
    if not session_id.isprintable():
        return "session_id", "holds a control character (a line break, tab or escape); session ids are printable text"
    if not detail.isprintable() and any(c not in "\n\t" and not c.isprintable() for c in detail):
        return "detail", "holds control characters other than line breaks and tabs"
    if outcome not in OUTCOMES:
        return "outcome", f"is {outcome!r}; it must be one of {', '.join(OUTCOMES)}"
    if len(detail) > MAX_DETAIL_CHARS:
        return "detail", f"is {len(detail)} characters; keep it under {MAX_DETAIL_CHARS}"
    return None
