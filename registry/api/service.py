"""Serves one gRPC service from handlers that several domain servicers provide.

A proto service can span domains (meshwarden.v1.Registry holds the catalog, the watch,
bundles, routes and health reports); each domain's servicer (registry.api.*) offers the
handlers of its RPCs by name, and `add_service` builds the service from its descriptor,
refusing to start when an RPC has no handler or two: no RPC is left unanswered by mistake.

A handler may answer (or yield) bytes instead of a message: a response it already encoded in
a worker thread. gRPC would otherwise encode it on the event loop, which for a catalog of
thousands of instances (megabytes) holds the loop for tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc
from google.protobuf import descriptor, message, message_factory

Handler = Callable[..., Any]


class ServiceWiringError(Exception):
    """A service's RPCs and the handlers given do not match one to one (a bug; names both)."""


def handlers_of(*parts: Mapping[str, Handler]) -> dict[str, Handler]:
    """The handlers of several servicers, refusing an RPC that two of them claim."""
    merged: dict[str, Handler] = {}
    for part in parts:
        for name, handler in part.items():
            if name in merged:
                raise ServiceWiringError(f"RPC {name} has two handlers")
            merged[name] = handler
    return merged


def add_service(
    server: grpc.aio.Server, service: descriptor.ServiceDescriptor, handlers: Mapping[str, Handler]
) -> None:
    """Adds `service` to `server` with `handlers` (RPC name -> coroutine or async generator)."""
    names = {method.name for method in service.methods}
    missing, unknown = sorted(names - set(handlers)), sorted(set(handlers) - names)
    if missing or unknown:
        raise ServiceWiringError(f"{service.full_name}: no handler for {missing}, handlers for no RPC {unknown}")
    rpc_handlers = {method.name: _method_handler(method, handlers[method.name]) for method in service.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, rpc_handlers),))
    server.add_registered_method_handlers(service.full_name, rpc_handlers)


def _method_handler(method: descriptor.MethodDescriptor, handler: Handler) -> grpc.RpcMethodHandler[Any, Any]:
    request = message_factory.GetMessageClass(method.input_type)
    kind = (method.client_streaming, method.server_streaming)
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[kind]
    return make(handler, request_deserializer=request.FromString, response_serializer=_encoded)


def _encoded(response: message.Message | bytes) -> bytes:
    """The response's wire form; bytes are a response its handler encoded already."""
    return response if isinstance(response, bytes) else response.SerializeToString()
