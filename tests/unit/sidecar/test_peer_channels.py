"""Peer channels follow the catalog: a channel to an instance that left it is retired, the
others stay and are reused."""

from __future__ import annotations

import time

from meshwarden.registry.issuer import Issuer
from meshwarden.sidecar.peer_channels import PeerChannels
from meshwarden.v1 import catalog_pb2, registry_pb2
from tests.identity_helpers import FakeClock
from tests.unit.sidecar.fakes import catalog_of, instance

BILLING = "spiffe://meshwarden.local/agent/billing"


def _with_spiffe_id(instance_id: str, port: int) -> catalog_pb2.Instance:
    found = instance(instance_id, "billing", "1.0.0")
    found.peer_address, found.spiffe_id = f"127.0.0.1:{port}", BILLING
    return found


async def test_a_channel_to_an_instance_that_left_the_catalog_is_retired() -> None:
    svid = Issuer.ephemeral("meshwarden.local", FakeClock(time.time())).issue(
        "spiffe://meshwarden.local/agent/caller", 600
    )
    channels = PeerChannels([], lambda: svid)
    one, two = _with_spiffe_id("b-1", 9001), _with_spiffe_id("b-2", 9002)
    catalog = catalog_of(one, two)
    catalog.on_change(lambda: channels.keep_only(catalog.peer_endpoints()))
    first = channels.stub("127.0.0.1:9001", BILLING)
    channels.stub("127.0.0.1:9002", BILLING)
    assert channels.open == {("127.0.0.1:9001", BILLING), ("127.0.0.1:9002", BILLING)}

    catalog.apply(registry_pb2.WatchEvent(revision=2, removed=registry_pb2.InstanceRemoved(instance_id="b-2")))
    assert channels.open == {("127.0.0.1:9001", BILLING)}
    assert channels.stub("127.0.0.1:9001", BILLING) is first  # the one still listed is reused
    catalog.apply(registry_pb2.WatchEvent(revision=3, snapshot=registry_pb2.CatalogSnapshot()))
    assert channels.open == frozenset()
    await channels.close()
