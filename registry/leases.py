"""Leases: expire instances whose sidecar stopped renewing, and forgive downtime at start.

The reaper wakes at the earliest lease expiry, and at least every heartbeat_interval/2, and
removes every expired instance with reason "lease_expired". Waking at the earliest expiry
means a stopped sidecar leaves the catalog about lease_ttl after its last renewal (never later
than lease_ttl + heartbeat_interval/2, i.e. under 3 heartbeat intervals with the default TTL).

The reaper must outlive failures: a pass that fails (a locked or full database, any bug) is
logged with its traceback and retried after a backoff that starts short and doubles up to
heartbeat_interval/2, and resets after a pass that succeeds. Without it, one transient error
would stop lease expiry until the registry restarts.

On start, every persisted lease is first extended to now + lease_ttl + RECONNECT_GRACE_S. While
the registry was down, no sidecar could renew; expiring their leases at once would evict live
instances that never had a chance to. A sidecar that really is gone stops renewing and expires
that much later.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from meshwarden.connection_liveness import MAX_RECONNECT_BACKOFF_S, RECONNECT_JITTER
from meshwarden.registry.catalog import Catalog

log = logging.getLogger(__name__)

FIRST_RETRY_S: Final = 0.05


# How long after the registry is back a live sidecar may take to notice: its channel to the
# registry may have just begun its longest reconnect backoff when the registry came back.
RECONNECT_GRACE_S: Final = MAX_RECONNECT_BACKOFF_S * (1 + RECONNECT_JITTER)


async def forgive_downtime(catalog: Catalog) -> None:
    """Run once at registry start, before serving (or by the replica that takes the lead):
    every stored lease gets a full TTL plus the time a sidecar's channel may still be backing
    off. With a TTL alone, a sidecar whose reconnect backoff outlasted the TTL (5 s at most,
    against the default TTL of 5 s and 1.25 s in the tests) lost its lease after every long
    outage, and its instance left routing for a moment for nothing."""
    extended = await catalog.extend_all_leases(grace_s=RECONNECT_GRACE_S)
    if extended:
        log.info(
            "extended %d persisted lease(s) by %.3g s after start", extended, catalog.lease_ttl_s + RECONNECT_GRACE_S
        )


async def reap_expired_leases(catalog: Catalog, heartbeat_interval_s: float) -> None:
    """Runs until cancelled; a failing pass is logged and retried with backoff, never fatal."""
    max_wait_s = heartbeat_interval_s / 2
    retry_s = min(FIRST_RETRY_S, max_wait_s)
    while True:
        try:
            next_expiry_s = await catalog.seconds_until_next_expiry()
            await asyncio.sleep(max_wait_s if next_expiry_s is None else min(max_wait_s, next_expiry_s))
            await catalog.expire_leases()
        except Exception:  # the reaper's supervisor: log, back off, keep reaping
            log.exception("lease reaper pass failed; retrying in %.3g s", retry_s)
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 2, max_wait_s)
        else:
            retry_s = min(FIRST_RETRY_S, max_wait_s)
