"""The registry's own SVID (`spiffe://<trust-domain>/meshwarden/registry`) from the embedded
issuer: issued at start, replaced at half its lifetime.

`current()` is the seam the servers use (meshwarden.identity.credentials calls it at every
TLS handshake, so a new SVID is served from the next connection on). When the registry gets
its SVID from a SPIRE agent instead, the Workload API source provides `current()` and this
module is not used.

The chain served is the SVID followed by the CA certificate: a client with no trust bundle
yet reads the CA at the end of that chain and checks it against a pin (identity.bootstrap).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

from meshwarden.clock import Clock, iso_utc
from meshwarden.identity.spiffe_ids import registry_id
from meshwarden.identity.svid import Svid
from meshwarden.registry.issuer import Issuer

log = logging.getLogger(__name__)

CurrentSvid = Callable[[], Svid]


class EmbeddedRegistrySvid:
    def __init__(self, issuer: Issuer, ttl_s: float, clock: Clock) -> None:
        self._issuer, self._ttl_s, self._clock = issuer, ttl_s, clock
        self._svid = self._issue()

    def current(self) -> Svid:
        return self._svid

    def seconds_until_rotation(self) -> float:
        """Until half the current SVID's lifetime has passed (0 when it already has)."""
        halfway = self._svid.not_before + (self._svid.not_after - self._svid.not_before) / 2
        return max(0.0, halfway - self._clock.wall())

    def rotate(self) -> Svid:
        self._svid = self._issue()
        return self._svid

    async def rotate_forever(self) -> None:
        """Runs until cancelled; run it under meshwarden.tasks.supervise."""
        while True:
            await asyncio.sleep(self.seconds_until_rotation())
            self.rotate()

    def _issue(self) -> Svid:
        svid = self._issuer.issue(registry_id(self._issuer.trust_domain), self._ttl_s)
        svid = dataclasses.replace(svid, cert_chain_pem=svid.cert_chain_pem + self._issuer.bundle_pem)
        log.info("issued the registry's SVID %s, valid until %s", svid.spiffe_id, iso_utc(svid.not_after))
        return svid
