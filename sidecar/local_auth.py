"""The local API belongs to the agent alone: with an API token configured, every call to
meshwarden.v1.Sidecar must carry `authorization: Bearer <token>`.

On a shared host any local process can reach a loopback port; the token (or a 0600 Unix
socket, or both) is what stops it from speaking as the agent. Health and reflection stay
open so probes work without the secret.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeAlias, TypeVar, cast

import grpc

from meshwarden import error_status
from meshwarden.errors import Unidentified

log = logging.getLogger(__name__)

PROTECTED_PREFIX = "/meshwarden.v1.Sidecar/"
Handler: TypeAlias = "grpc.RpcMethodHandler[object, object]"  # quoted: not subscriptable at run time
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class TokenError(Exception):
    pass


def read_token(path: Path) -> bytes:
    try:
        token = path.read_bytes().strip()
    except OSError as exc:
        raise TokenError(f"cannot read the API token file {path}: {exc.strerror}") from exc
    if len(token) < 16:
        raise TokenError(f"the API token in {path} is shorter than 16 characters; use a long random one")
    if path.stat().st_mode & 0o077:
        log.warning("the API token file %s is readable by group or others; chmod 600 it", path)
    return token


class RequireToken(grpc.aio.ServerInterceptor):
    def __init__(self, token: bytes) -> None:
        self._expected = b"Bearer " + token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Req, Resp] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        if not details.method.startswith(PROTECTED_PREFIX):
            return await continuation(details)
        presented = next((v for k, v in details.invocation_metadata or () if k == "authorization"), "")
        presented_bytes = presented.encode() if isinstance(presented, str) else presented
        if hmac.compare_digest(presented_bytes, self._expected):
            return await continuation(details)
        log.warning("refused %s on the local API: %s API token", details.method, "wrong" if presented else "no")
        return cast("grpc.RpcMethodHandler[Req, Resp]", _refusal(details.method))


def _refusal(method: str) -> Handler:
    err = Unidentified(
        "this sidecar's local API requires its API token: send 'authorization: Bearer <token>' "
        "(the SDK reads MESHWARDEN_SIDECAR_TOKEN or MESHWARDEN_SIDECAR_TOKEN_FILE)"
    )

    async def refuse(request: object, context: grpc.aio.ServicerContext[object, object]) -> None:
        await error_status.abort(context, err)

    return grpc.unary_unary_rpc_method_handler(refuse)
