"""Build a sidecar from its configuration and run it until SIGTERM or SIGINT.

Two gRPC servers: the local API for the agent (meshwarden.v1.Sidecar) and the peer endpoint
for other sidecars (meshwarden.v1.Peer); both also serve health and reflection. Two
background loops: the lease and the catalog watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal

import grpc

from meshwarden.clock import SystemClock
from meshwarden.ready import announce_ready
from meshwarden.registry_client import registry_channel
from meshwarden.standard_services import add_standard_services, set_serving
from meshwarden.tasks import cancel_all, supervise
from meshwarden.v1 import peer_pb2, peer_pb2_grpc, registry_pb2_grpc, sidecar_pb2, sidecar_pb2_grpc
from sidecar import catalog_watch, pipeline
from sidecar.agent_app import AgentApp
from sidecar.catalog import Catalog
from sidecar.config import SidecarConfig
from sidecar.lease import Lease
from sidecar.local_agent import LocalAgent
from sidecar.local_api import LocalApi
from sidecar.peer_api import PeerApi
from sidecar.peer_channels import PeerChannels
from sidecar.runtime import Runtime
from sidecar.schemas import SchemaCache

log = logging.getLogger(__name__)

LOCAL_SERVICE = sidecar_pb2.DESCRIPTOR.services_by_name["Sidecar"].full_name
PEER_SERVICE = peer_pb2.DESCRIPTOR.services_by_name["Peer"].full_name


class ListenError(RuntimeError):
    pass


def _bind(server: grpc.aio.Server, address: str, what: str) -> int:
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ListenError(f"cannot listen on {address} for the {what}: {exc}; is the port in use?") from exc
    return int(port)


async def serve(config: SidecarConfig) -> None:
    clock = SystemClock()
    options = [
        ("grpc.max_receive_message_length", config.grpc_message_limit_bytes),
        ("grpc.max_send_message_length", config.grpc_message_limit_bytes),
    ]
    # so_reuseport=0: a second sidecar on the same port must fail to bind, not share it.
    server_options = [*options, ("grpc.so_reuseport", 0)]
    local_server = grpc.aio.server(options=server_options)
    peer_server = grpc.aio.server(options=server_options)
    local_port = _bind(local_server, str(config.listen), "local API")
    peer_port = _bind(peer_server, str(config.peer_listen), "peer endpoint")
    listen = f"{config.listen.host}:{local_port}"
    peer_address = config.peer_advertise or f"{config.peer_listen.host}:{peer_port}"

    local = LocalAgent(config.agent, config.instance_id, peer_address, spiffe_id="")
    agent_app = AgentApp(str(config.app), options)
    registry = registry_channel(str(config.registry))
    registry_stub = registry_pb2_grpc.RegistryStub(registry)
    rt = Runtime(
        config=config,
        clock=clock,
        rng=random.Random(),
        catalog=Catalog(),
        schemas=SchemaCache(),
        local=local,
        peer_channels=PeerChannels(options),
        agent_app=agent_app,
    )
    lease = Lease(registry_stub, local)

    sidecar_pb2_grpc.add_SidecarServicer_to_server(LocalApi(config, pipeline.outbound(rt), rt, lease), local_server)
    peer_pb2_grpc.add_PeerServicer_to_server(PeerApi(config, pipeline.inbound(rt), clock), peer_server)
    local_health = add_standard_services(local_server, [LOCAL_SERVICE])
    peer_health = add_standard_services(peer_server, [PEER_SERVICE])

    await local_server.start()
    await peer_server.start()
    tasks = [
        supervise("lease", lease.run),
        supervise("catalog-watch", lambda: catalog_watch.run(registry_stub, rt.catalog, rt.rng)),
    ]
    await set_serving(local_health, [LOCAL_SERVICE], True)
    await set_serving(peer_health, [PEER_SERVICE], True)
    if config.listen.is_loopback:
        log.warning("local API on %s is plaintext loopback TCP without a token: fine for development only", listen)
    else:
        log.warning(
            "local API on %s is reachable beyond loopback: any host that reaches it speaks as %s", listen, config.agent
        )
    log.info(
        "sidecar for agent %s (instance %s): local API %s, peer %s, agent app %s, registry %s",
        config.agent,
        config.instance_id,
        listen,
        peer_address,
        config.app,
        config.registry,
    )
    announce_ready("sidecar", listen=listen, peer=peer_address, instance_id=config.instance_id, agent=config.agent)

    await _wait_for_stop_signal()
    log.info("stopping: deregistering and draining calls")
    await set_serving(local_health, [LOCAL_SERVICE], False)
    await set_serving(peer_health, [PEER_SERVICE], False)
    await lease.deregister()
    await asyncio.gather(local_server.stop(grace=2.0), peer_server.stop(grace=2.0))
    await cancel_all(tasks)
    await rt.peer_channels.close()
    await agent_app.close()
    await registry.close()
    log.info("stopped")


async def _wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
