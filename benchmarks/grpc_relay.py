"""A bare grpc.aio relay of meshwarden.v1.Agent/Handle: the floor a Python sidecar starts from.

    python benchmarks/grpc_relay.py --listen 127.0.0.1:0 --upstream 127.0.0.1:7412

It parses each Delivery, forwards it upstream on one long-lived channel with the caller's
remaining deadline and returns the Outcome: what any Python hop costs before it decides
anything. benchmarks/latency.py runs two in series (its `pyrelay` path) so that the mesh's
own cost can be told apart from the cost of two grpc.aio hops. Prints the ready line
(meshwarden.ready) and serves grpc.health.v1, like every meshwarden server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import grpc

from meshwarden.ready import announce_ready
from meshwarden.standard_services import add_standard_services, set_serving
from meshwarden.v1 import agent_pb2, agent_pb2_grpc

AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


class Relay(agent_pb2_grpc.AgentServicer):
    def __init__(self, upstream: agent_pb2_grpc.AgentStub) -> None:
        self._upstream = upstream

    async def Handle(
        self, request: agent_pb2.Delivery, context: grpc.aio.ServicerContext[agent_pb2.Delivery, agent_pb2.Outcome]
    ) -> agent_pb2.Outcome:
        try:
            outcome: agent_pb2.Outcome = await self._upstream.Handle(request, timeout=context.time_remaining())
        except grpc.aio.AioRpcError as err:  # pass the upstream's status on as it is
            await context.abort(err.code(), err.details() or "")
        return outcome


async def serve(listen: str, upstream: str) -> None:
    channel = grpc.aio.insecure_channel(upstream, options=OPTIONS)
    server = grpc.aio.server(options=OPTIONS)
    agent_pb2_grpc.add_AgentServicer_to_server(Relay(agent_pb2_grpc.AgentStub(channel)), server)
    health = add_standard_services(server, [AGENT_SERVICE])
    port = server.add_insecure_port(listen)
    await server.start()
    await set_serving(health, [AGENT_SERVICE], True)
    announce_ready("relay", listen=f"{listen.rpartition(':')[0]}:{port}", upstream=upstream)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1.0)
    await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="address to serve on (port 0: any free port)")
    parser.add_argument("--upstream", required=True, help="where to forward: an agent or another relay")
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.upstream))


if __name__ == "__main__":
    main()
