"""grpc.health.v1 and server reflection (v1 and v1alpha), served by every meshwarden gRPC server.

With them, Kubernetes gRPC probes, grpc_health_probe and grpcurl work without extra set-up.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

# grpcio-reflection serves only grpc.reflection.v1alpha. grpc.reflection.v1 is the same protocol
# under a new package name, message for message and field for field, so the same servicer
# answers it; newer clients (grpcurl, Postman) ask for v1 first.
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"


def add_standard_services(server: grpc.aio.Server, service_names: Iterable[str]) -> health.aio.HealthServicer:
    """Adds health and reflection for `service_names`; returns the health servicer.

    Every service starts NOT_SERVING: the caller flips it to SERVING once it can do its job.
    """
    names = list(service_names)
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflecting = reflection.aio.ReflectionServicer([*names, health.SERVICE_NAME, reflection.SERVICE_NAME])
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflecting, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        reflecting.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {"ServerReflectionInfo": v1}),)
    )
    return servicer


async def set_serving(servicer: health.aio.HealthServicer, service_names: Iterable[str], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *service_names]:
        await servicer.set(name, status)
