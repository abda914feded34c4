"""MeshError on the wire: a google.rpc.Status in the `grpc-status-details-bin` trailer.

The Status keeps the gRPC code and the message meant for people, and packs one
google.rpc.ErrorInfo: `reason` is the error's kind ("policy_denied", "killed", ...), `domain`
is DOMAIN, `metadata` is the error's data (meshwarden.errors). grpcio-status reads and writes
the trailer. Used by every side that sends or receives mesh errors: sidecars, the SDK's
client and the SDK's agent server.

An older sidecar sent only the kind, in the "meshwarden-error" trailer; it is still sent, and
still read when no Status comes, so that a mesh can be upgraded one sidecar at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NoReturn, cast

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from meshwarden.errors import MeshError
from meshwarden.status_message import fit

DOMAIN: Final = "meshwarden.dev"
LEGACY_TRAILER: Final = "meshwarden-error"  # the kind alone, for sidecars and SDKs before the Status


@dataclass(frozen=True, slots=True)
class WireStatus:
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def to_status(err: MeshError) -> WireStatus:
    """The status that carries `err`: code, message and trailers, ready for context.abort."""
    info = error_details_pb2.ErrorInfo(reason=err.kind, domain=DOMAIN, metadata=err.metadata())
    status = status_pb2.Status(code=err.status_code().value[0], message=fit(err.message))  # fits the trailers
    status.details.add().Pack(info)
    rich = rpc_status.to_status(status)
    return WireStatus(rich.code, rich.details, (*rich.trailing_metadata, (LEGACY_TRAILER, err.kind)))


async def abort(context: grpc.aio.ServicerContext[object, object], err: MeshError) -> NoReturn:
    """Ends the RPC being served with `err`."""
    status = to_status(err)
    await context.abort(status.code, status.details, trailing_metadata=status.trailing_metadata)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """Our ErrorInfo in the failed call's status, else None (the failure came from gRPC itself
    or from a server that is not ours)."""
    if not isinstance(err, (grpc.aio.AioRpcError, grpc.Call)):
        return None
    try:
        # An AioRpcError has the three methods from_call reads (code, details, trailing_metadata).
        status = rpc_status.from_call(cast(grpc.Call, err))
    except ValueError:  # a status that contradicts the call's own code or message: not ours
        return None
    if status is None:
        return None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info) and info.domain == DOMAIN:
            return info
    return None


def from_rpc_error(err: grpc.RpcError, *, instance_id: str = "") -> MeshError | None:
    """The MeshError another meshwarden process sent, with its data, else None.

    Works for both grpc.aio.AioRpcError and the sync stack's errors (which are grpc.Call).
    `instance_id`: the instance the caller sent the call to, when it knows (it overrides
    what the error said)."""
    if not isinstance(err, (grpc.aio.AioRpcError, grpc.Call)):
        return None
    info = error_info(err)
    if info is not None:
        return MeshError.from_wire(
            info.reason, err.code(), err.details() or "", dict(info.metadata), instance_id=instance_id
        )
    for key, value in err.trailing_metadata() or ():
        if key == LEGACY_TRAILER:
            kind = value.decode() if isinstance(value, bytes) else value
            return MeshError.from_wire(kind, err.code(), err.details() or "", instance_id=instance_id)
    return None
