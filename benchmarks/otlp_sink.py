"""An OTLP/gRPC trace receiver that counts what it gets and keeps nothing: the collector the
`mesh-traced` path of latency.py exports to. A child process, so its work is not the load
generator's.

    python benchmarks/otlp_sink.py [--listen 127.0.0.1:0]

Prints a ready line ({"event":"ready","component":"otlp-sink","listen":...}) once serving,
and on SIGTERM a last line on stderr: "received N spans in M exports".
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from meshwarden.ready import announce_ready
from meshwarden.standard_services import add_standard_services, set_serving
from meshwarden.stop_signals import stop_on_signals

SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans = self.exports = 0

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.exports += 1
        self.spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        return trace_service_pb2.ExportTraceServiceResponse()


async def serve(listen: str) -> None:
    sink = Sink()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)  # type: ignore[no-untyped-call]
    health = add_standard_services(server, [SERVICE])
    port = server.add_insecure_port(listen)
    await server.start()
    await set_serving(health, [SERVICE], True)
    announce_ready("otlp-sink", listen=f"{listen.rpartition(':')[0]}:{port}")
    await stop_on_signals().wait()
    await server.stop(grace=1.0)
    print(f"received {sink.spans} spans in {sink.exports} exports", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    asyncio.run(serve(parser.parse_args().listen))


if __name__ == "__main__":
    main()
