"""Where this sidecar's SVIDs come from, decided once at start-up.

With a Workload API socket (a SPIRE agent): read it. Without: enrol with the registry's
embedded issuer, serve the result on this sidecar's own Workload API socket, and read that.
Either way the rest of the sidecar sees one `WorkloadSvids`, read through spiffe.X509Source.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc

from meshwarden.clock import Clock
from meshwarden.identity.spiffe_ids import agent_id
from meshwarden.identity.workload_source import WorkloadApiError, WorkloadSvids
from meshwarden.sidecar import registry_endpoint, workload_api_server
from meshwarden.sidecar.config import SidecarConfig
from meshwarden.sidecar.enrollment import Enrollment, EnrollmentError
from meshwarden.tasks import cancel_all, supervise

log = logging.getLogger(__name__)


class IdentityError(Exception):
    """The sidecar could not obtain the identity of its agent; the message says why."""


@dataclass
class SvidSupply:
    svids: WorkloadSvids
    workload_socket: str  # what the agent may use as SPIFFE_ENDPOINT_SOCKET
    server: grpc.aio.Server | None  # the embedded Workload API, when this sidecar serves one
    renewal: asyncio.Task[None] | None
    registry_mtls: str  # where SVID holders reach the registry

    async def close(self) -> None:
        if self.renewal is not None:
            await cancel_all([self.renewal])
        self.svids.close()
        if self.server is not None:
            await self.server.stop(grace=0.5)


async def obtain(config: SidecarConfig, clock: Clock) -> SvidSupply:
    expected = agent_id(config.trust_domain, config.agent)
    server: grpc.aio.Server | None = None
    renewal: asyncio.Task[None] | None = None
    if config.spiffe_endpoint_socket:
        socket = config.spiffe_endpoint_socket
        log.info("identity from the Workload API at %s", socket)
        registry_mtls = ""
    else:
        enrollment = Enrollment(config, clock)
        try:
            first = await enrollment.first_svid()
        except EnrollmentError as exc:
            raise IdentityError(str(exc)) from exc
        feed = workload_api_server.SvidFeed(first)
        path = (config.data_dir / "identity" / "workload.sock").resolve()
        try:
            server = await workload_api_server.serve(feed, path)
        except workload_api_server.SocketPathTooLong as exc:
            raise IdentityError(str(exc)) from exc
        socket = f"unix://{path}"
        renewal = supervise("svid-renewal", lambda: enrollment.keep_fresh(feed.svid, feed.publish))
        registry_mtls = enrollment.registry_mtls
    try:
        svids = await _read_svids(config, socket, expected)
        if not registry_mtls:
            try:
                registry_mtls = await registry_endpoint.discover(config, svids.current().trust_bundle_pem)
            except registry_endpoint.RegistryEndpointError as exc:
                svids.close()
                raise IdentityError(str(exc)) from exc
    except BaseException:  # nothing started here may outlive a failed start-up
        if renewal is not None:
            await cancel_all([renewal])
        if server is not None:
            await server.stop(None)
        raise
    return SvidSupply(svids, socket, server, renewal, registry_mtls)


async def _read_svids(config: SidecarConfig, socket: str, expected: str) -> WorkloadSvids:
    try:
        svids = await asyncio.to_thread(WorkloadSvids, socket, config.trust_domain)
    except WorkloadApiError as exc:
        raise IdentityError(str(exc)) from exc
    if svids.current().spiffe_id != expected:
        svids.close()
        raise IdentityError(
            f"the Workload API gave this sidecar {svids.current().spiffe_id}, but it runs agent {config.agent} "
            f"({expected}); fix the SPIRE registration entry or --agent"
        )
    return svids
