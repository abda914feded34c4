"""Outbound, agent calls: is the capability one the mesh has ever served? A misspelled name is
refused as unknown (NOT_FOUND, with the nearest names the catalog knows), before policy could
deny it for a reason that sends the caller to the wrong place (no policy permits a name no
bundle describes)."""

from __future__ import annotations

import difflib

from meshwarden.errors import UnknownCapability
from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.sidecar.catalog import Catalog

MAX_SUGGESTIONS = 3
SIMILARITY_CUTOFF = 0.6  # difflib's default: "refnd" finds "refund", "kb" finds nothing long


class KnownCapability:
    def __init__(self, next: Handler, catalog: Catalog) -> None:
        self._next, self._catalog = next, catalog

    async def __call__(self, call: Call) -> Reply:
        # Before the first catalog arrives every name is unknown: routing says "not received yet".
        if self._catalog.synced and not self._catalog.has_seen(call.capability):
            raise UnknownCapability(call.capability, suggestions(call.capability, self._catalog.seen()))
        return await self._next(call)


def suggestions(name: str, known: frozenset[str]) -> tuple[str, ...]:
    """The known names nearest to `name`, best first."""
    return tuple(difflib.get_close_matches(name, sorted(known), n=MAX_SUGGESTIONS, cutoff=SIMILARITY_CUTOFF))


def layer(catalog: Catalog) -> Layer:
    return lambda next: KnownCapability(next, catalog)
