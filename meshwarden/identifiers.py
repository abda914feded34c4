"""Length and character limits for the identifiers a call carries, checked at every edge
where they enter (the local API, the peer API, the gateways' attribution headers).

An identifier is copied into receipts, spans, metrics, logs and registry queries; one of
megabytes made every receipt of its sidecar unshippable (issue 14), and one with a newline
wrote a forged line into text logs. So each has a limit well under any message size limit,
and none may hold control characters (line breaks, escapes): refused with INVALID_ARGUMENT
naming the field, its length and the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from meshwarden.outcomes import MAX_SESSION_ID_CHARS

MAX_PRINCIPAL_CHARS: Final = 128

LIMITS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "session_id": MAX_SESSION_ID_CHARS,  # outcomes are reported by session id: the same limit
        "workflow_id": 128,
        "parent_call_id": 128,
        "idempotency_key": 128,
        "call_id": 128,
        "schema_hash": 128,  # "sha256:" and 64 hex digits is 71
        "version_range": 128,
        "caller_instance_id": 128,
        "target_instance_id": 128,
        "caller_agent": 63,
        "on_behalf_of": MAX_PRINCIPAL_CHARS,  # "user:alice@example.com", "service:nightly-billing"
    }
)
_SHOWN_CHARS: Final = 40


def identifier_problem(field: str, value: str) -> str | None:
    """What is wrong with `value` as the identifier `field`, or None when it is fine."""
    limit = LIMITS[field]
    if len(value) > limit:
        return f"{field} is {len(value)} characters; at most {limit} are accepted"
    if not value.isprintable():
        return f"{field} {shown(value)} holds a control character (a line break, tab or escape); send printable text"
    return None


def first_problem(fields: Mapping[str, str]) -> str | None:
    """The first problem among `fields` (name -> value), or None."""
    for field, value in fields.items():
        found = identifier_problem(field, value)
        if found is not None:
            return found
    return None


def shown(value: str) -> str:
    """`value` fit for a message or a log line: quoted with escapes, cut to a few dozen characters."""
    cut = value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "..."
    return repr(cut)
