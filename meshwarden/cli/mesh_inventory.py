"""What the registry knows about the mesh, read once by the operator commands that need all of
it (`bundle init --from-registry`, `sidecars list`, `check`): the catalog's instances and every
sidecar's bundle report, pure callers included (they never enter the catalog, but report)."""

from __future__ import annotations

from dataclasses import dataclass

from meshwarden.cli.registry_access import RegistryAccess
from meshwarden.policy_bundle.mesh_starter import MeshInventory
from meshwarden.registry_client import registry_channel, registry_stub
from meshwarden.v1 import registry_pb2

TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class MeshView:
    catalog: registry_pb2.ListInstancesResponse
    bundles: registry_pb2.ListBundleStatusResponse

    def inventory(self) -> MeshInventory:
        """Every agent with the capabilities it serves; live pure callers with none."""
        agents: dict[str, set[str]] = {}
        for instance in self.catalog.instances:
            agents.setdefault(instance.agent, set()).update(c.name for c in instance.capabilities)
        for sidecar in self.bundles.sidecars:
            if sidecar.live and sidecar.agent:
                agents.setdefault(sidecar.agent, set())
        return MeshInventory({agent: frozenset(caps) for agent, caps in agents.items()})


async def fetch(access: RegistryAccess, *, limit: int = 0, cursor: str = "", live_only: bool = False) -> MeshView:
    """Everything, or (`limit`) the first `limit` instances and reports after `cursor` by agent
    then instance id, for a caller that merges the two pages (`sidecars list`)."""
    async with registry_channel(access.address, access.trust) as channel:
        stub = registry_stub(channel)
        catalog: registry_pb2.ListInstancesResponse = await stub.ListInstances(
            registry_pb2.ListInstancesRequest(limit=limit, cursor=cursor), timeout=TIMEOUT_S, metadata=access.metadata()
        )
        bundles: registry_pb2.ListBundleStatusResponse = await stub.ListBundleStatus(
            registry_pb2.ListBundleStatusRequest(limit=limit, cursor=cursor, live_only=live_only),
            timeout=TIMEOUT_S,
            metadata=access.metadata(),
        )
        return MeshView(catalog, bundles)
