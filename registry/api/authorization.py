"""Every call to a registry service is authorized here, by construction, before its handler.

One gRPC server interceptor looks each meshwarden RPC up in registry.authz's table: the
caller is proven from the handshake and the operator token, checked against the RPC's
required role, and handed to the handler (`authz.current_caller()`); an RPC missing from the
table is refused (PERMISSION_DENIED), so a new RPC cannot forget its authorization. It is
also the one rescue of every handler: an error a handler raises becomes its status in
registry.rescue. Standard services (health, reflection) are not meshwarden's and pass as is.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import grpc

from meshwarden.registry.authz import Authorizer, reset_current_caller, set_current_caller
from meshwarden.registry.errors import Unauthenticated
from meshwarden.registry.rescue import abort

GUARDED_PREFIX: Final = "/meshwarden."  # every service of ours; others (grpc.health.v1, reflection) pass

Context = grpc.aio.ServicerContext[Any, Any]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]]


class Authorization(grpc.aio.ServerInterceptor):
    """Made with the server, given its Authorizer once the ports are bound (`use`): the
    authorizer names the mTLS port actually bound in its messages. Until then it refuses."""

    def __init__(self, authorizer: Authorizer | None = None) -> None:
        self._authorizer = authorizer
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}  # one wrapper per method, made on first call

    def use(self, authorizer: Authorizer) -> None:
        self._authorizer = authorizer

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        rpc = method.decode() if isinstance(method, bytes) else str(method)
        if handler is None or not rpc.startswith(GUARDED_PREFIX):
            return handler
        wrapped = self._wrapped.get(rpc)
        if wrapped is None:
            wrapped = self._wrapped[rpc] = self._wrap(rpc, handler)
        return wrapped

    def _wrap(self, rpc: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        options = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }

        async def enter(context: Context) -> Any:
            try:
                if self._authorizer is None:
                    raise Unauthenticated(f"{rpc}: the registry is starting; retry shortly")
                caller = self._authorizer.caller(context)
                self._authorizer.check(rpc, caller)
            except Exception as exc:  # noqa: BLE001 -- the rescue: a refusal becomes its status
                await abort(context, exc, rpc)
            return set_current_caller(caller)

        if handler.unary_unary is not None:
            unary: Any = handler.unary_unary  # a coroutine function (grpc.aio)

            async def unary_unary(request: Any, context: Context) -> Any:
                token = await enter(context)
                try:
                    return await unary(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:  # noqa: BLE001 -- the rescue: every error becomes a status
                    await abort(context, exc, rpc)
                finally:
                    reset_current_caller(token)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **options)
        if handler.unary_stream is not None:
            stream: Any = handler.unary_stream  # an async generator function (grpc.aio)

            async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
                token = await enter(context)
                try:
                    async with contextlib.aclosing(stream(request, context)) as responses:
                        async for response in responses:
                            yield response
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:  # noqa: BLE001 -- the stream's rescue
                    await abort(context, exc, rpc)
                finally:
                    with contextlib.suppress(ValueError):  # closed from another context: nothing to undo
                        reset_current_caller(token)

            return grpc.unary_stream_rpc_method_handler(unary_stream, **options)
        if handler.stream_unary is not None:
            collect: Any = handler.stream_unary

            async def stream_unary(requests: AsyncIterator[Any], context: Context) -> Any:
                token = await enter(context)
                try:
                    return await collect(requests, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:  # noqa: BLE001 -- the stream's rescue
                    await abort(context, exc, rpc)
                finally:
                    reset_current_caller(token)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **options)
        raise TypeError(f"{rpc}: bidirectional streams are not served by the registry")
