"""Health and reflection on a real gRPC server: reflection answers under grpc.reflection.v1
(what newer clients ask first) as under v1alpha, with the same services listed."""

from __future__ import annotations

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from meshwarden.standard_services import V1_SERVICE_NAME, add_standard_services


@pytest.mark.parametrize("service", [V1_SERVICE_NAME, "grpc.reflection.v1alpha.ServerReflection"])
async def test_reflection_lists_the_services_under_v1_and_v1alpha(service: str) -> None:
    server = grpc.aio.server()
    add_standard_services(server, ["meshwarden.v1.Sidecar"])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            info = channel.stream_stream(
                f"/{service}/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            requests = [
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.Health"),
            ]
            answers = [r async for r in info(iter(requests), timeout=5)]
    finally:
        await server.stop(None)
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"meshwarden.v1.Sidecar", "grpc.health.v1.Health"} <= names
    assert answers[1].file_descriptor_response.file_descriptor_proto, "the health proto is described"
