"""grpc.health.v1 and server reflection, served by every meshwarden gRPC server.

With them, Kubernetes gRPC probes, grpc_health_probe and grpcurl work without extra set-up.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection


def add_standard_services(server: grpc.aio.Server, service_names: Iterable[str]) -> health.aio.HealthServicer:
    """Adds health and reflection for `service_names`; returns the health servicer.

    Every service starts NOT_SERVING: the caller flips it to SERVING once it can do its job.
    """
    names = list(service_names)
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return servicer


async def set_serving(servicer: health.aio.HealthServicer, service_names: Iterable[str], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *service_names]:
        await servicer.set(name, status)
