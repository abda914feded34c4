"""Free labels a session is started with (repository=acme/api, resource=db-prod): what a
session operates against, said once by the agent where it enters the mesh and carried by the
sidecars to every later call of it (sidecar.stages.session_principal), then onto its receipts
and the registry's session aggregate (`meshwarden sessions list --label key=value`).

One set of rules for every edge (the SDK, the sidecar's local API and peer API, the model and
MCP gateways' `x-meshwarden-session-labels` header), so a label accepted by one is accepted
by all: at most 8 labels, keys `[a-z][a-z0-9_.-]{0,31}`, values 1-128 printable characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

HEADER: Final = "x-meshwarden-session-labels"
MAX_LABELS: Final = 8
MAX_VALUE_CHARS: Final = 128
KEY: Final = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
MAX_HEADER_CHARS: Final = MAX_LABELS * (32 + 1 + MAX_VALUE_CHARS + 1)

Labels = tuple[tuple[str, str], ...]  # sorted by key: immutable, comparable, one order everywhere


class InvalidLabels(ValueError):
    """Session labels that break a rule; `label` names the offending key ("" for the whole set)."""

    def __init__(self, message: str, label: str = "") -> None:
        super().__init__(message)
        self.message, self.label = message, label


def problem(labels: Mapping[str, str]) -> InvalidLabels | None:
    """What is wrong with `labels`, or None when they are fine."""
    if len(labels) > MAX_LABELS:
        return InvalidLabels(f"session_labels has {len(labels)} labels; at most {MAX_LABELS} are accepted")
    for key, value in labels.items():
        if not KEY.fullmatch(key):
            return InvalidLabels(
                f"session label key {key[:40]!r} is not a label key (a-z first, then up to 31 of a-z, 0-9, "
                "'_', '.', '-')",
                key[:40],
            )
        if not value or len(value) > MAX_VALUE_CHARS:
            return InvalidLabels(
                f"session label {key!r} has a value of {len(value)} characters; send 1-{MAX_VALUE_CHARS}", key
            )
        if not value.isprintable():
            return InvalidLabels(
                f"session label {key!r} holds a control character (a line break, tab or escape); send printable text",
                key,
            )
    return None


def checked(labels: Mapping[str, str] | None) -> Labels:
    """`labels` in their one order; raises InvalidLabels naming what is wrong."""
    found = problem(labels or {})
    if found is not None:
        raise found
    return tuple(sorted((labels or {}).items()))


def from_header(text: str) -> Labels:
    """Labels from `key=value,key=value` (the gateways' header); raises InvalidLabels."""
    if len(text) > MAX_HEADER_CHARS:
        raise InvalidLabels(f"{HEADER} is {len(text)} characters; at most {MAX_HEADER_CHARS} are accepted")
    labels: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, equals, value = part.partition("=")
        key = key.strip()
        if not equals:
            raise InvalidLabels(f"{HEADER}: {part[:40]!r} is not key=value (e.g. repository=acme/api)", key[:40])
        if key in labels:
            raise InvalidLabels(f"{HEADER}: label {key[:40]!r} is given twice; give each key once", key[:40])
        labels[key] = value.strip()
    return checked(labels)


def to_header(labels: Mapping[str, str]) -> str:
    """The header value for `labels` (a value cannot hold ','; checked(labels) first)."""
    for key, value in labels.items():
        if "," in value:
            raise InvalidLabels(f"session label {key!r} holds ','; the gateway header cannot carry it", key)
    return ",".join(f"{key}={value}" for key, value in checked(labels))


def shown(labels: Labels | Mapping[str, str]) -> str:
    """`key=value,key=value` for a table cell, "-" for none."""
    pairs = sorted(labels.items()) if isinstance(labels, Mapping) else labels
    return ",".join(f"{key}={value}" for key, value in pairs) or "-"
