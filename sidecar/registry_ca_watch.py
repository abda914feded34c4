"""A running sidecar notices that its registry now presents another CA, instead of retrying a
handshake that can never succeed.

A registry whose data directory was replaced (or a --registry name that now leads to another
registry) presents a CA the sidecar's trust bundle does not hold: every mTLS handshake fails,
forever. While the registry link is not connected, every `every_s` this asks the registry's
TLS port which CA it presents (sidecar.registry_change.other_ca; one handshake, nothing
trusted from it). Seen twice in a row (a registry restarting on the same CA is no change), it
says so and sets `moved`: sidecar.app then restarts the sidecar in place, and start-up forgets
what it learned from the old CA and learns and enrols under the first-start rules (a pin from
--ca-pin or the join token, or trust on first use on loopback only).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from meshwarden.addresses import HostPort
from meshwarden.sidecar.registry_change import OtherCa, other_ca

log = logging.getLogger(__name__)

CHECK_EVERY_S = 5.0
_SIGHTINGS = 2


class RegistryCaWatch:
    def __init__(
        self, registry: HostPort, identity_dir: Path, connected: Callable[[], bool], every_s: float = CHECK_EVERY_S
    ) -> None:
        self._registry, self._identity_dir, self._connected, self._every_s = registry, identity_dir, connected, every_s
        self.moved = asyncio.Event()

    async def run(self) -> None:
        sightings = 0
        while True:
            await asyncio.sleep(self._every_s)
            if self.moved.is_set() or self._connected():  # said once; the restart cancels this loop
                sightings = 0
                continue
            seen: OtherCa | None = await asyncio.to_thread(other_ca, self._identity_dir, self._registry)
            sightings = sightings + 1 if seen is not None else 0
            if seen is not None and sightings >= _SIGHTINGS:
                log.warning(
                    "the registry at %s now presents CA %s, not the CA this sidecar trusts (%s): its CA changed "
                    "while this sidecar ran; restarting in place to learn the new CA and enrol again",
                    self._registry,
                    seen.presented,
                    ", ".join(sorted(seen.held)),
                )
                self.moved.set()
