"""Mesh errors over a real gRPC connection: the google.rpc.Status with its ErrorInfo carries the
kind and the data, the message stays for people, and a kind the receiver does not know keeps
its kind when it is passed on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from meshwarden import error_status, errors
from meshwarden.client import to_error

METHOD = "/test.Errors/Fail"


class Server:
    """A loopback gRPC server whose one method fails with the error it is given."""

    def __init__(self) -> None:
        self.error: errors.MeshError = errors.BadPayload("unset")
        self.plain: tuple[grpc.StatusCode, str] | None = None

    async def fail(self, request: bytes, context: grpc.aio.ServicerContext[object, object]) -> bytes:
        if self.plain is not None:
            await context.abort(*self.plain)
        await error_status.abort(context, self.error)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, grpc.aio.Channel]]:
    state = Server()
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(state.fail)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Errors", {"Fail": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield state, channel
    await server.stop(None)


async def failed(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary(METHOD)(b"", timeout=5)
    return info.value


async def test_a_kill_switch_crosses_with_its_switch_and_the_message_for_people(
    served: tuple[Server, grpc.aio.Channel],
) -> None:
    state, channel = served
    state.error = errors.KillSwitchEngaged("ks-00ab", "agent billing", "incident 7", "billing.refund", in_flight=True)
    rpc = await failed(channel)
    status = rpc_status.from_call(rpc)  # what any gRPC library's status helpers read
    assert status is not None and rpc.details() == state.error.message
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("killed", "meshwarden.dev")
    assert dict(info.metadata) == {"switch_id": "ks-00ab", "scope": "agent billing", "in_flight": "true"}
    back = error_status.from_rpc_error(rpc)
    assert isinstance(back, errors.KillSwitchEngaged)
    assert (back.switch_id, back.scope, back.in_flight) == ("ks-00ab", "agent billing", True)
    assert back.message == state.error.message and back.status_code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_policy_ids_and_the_failed_instance_cross_as_data(served: tuple[Server, grpc.aio.Channel]) -> None:
    state, channel = served
    state.error = errors.PolicyDenied("support may not call billing.refund", policy_ids=("refunds", "a,b"))
    back = error_status.from_rpc_error(await failed(channel))
    assert isinstance(back, errors.PolicyDenied) and back.policy_ids == ("refunds", "a,b")
    state.error = errors.PeerUnavailable("gone", instance_id="billing-1")
    back = error_status.from_rpc_error(await failed(channel))
    assert isinstance(back, errors.PeerUnavailable) and back.instance_id == "billing-1"
    # The caller names the instance it sent the call to, whatever the error said.
    back = error_status.from_rpc_error(await failed(channel), instance_id="billing-2")
    assert back is not None and back.instance_id == "billing-2"


async def test_an_unknown_kind_keeps_its_kind_and_data_when_passed_on(served: tuple[Server, grpc.aio.Channel]) -> None:
    state, channel = served
    state.error = errors.Unclassified(grpc.StatusCode.OUT_OF_RANGE, "quota_spent", "spent", {"quota": "q-1"})
    sdk = to_error(await failed(channel), "127.0.0.1:1")  # what the SDK raises
    assert isinstance(sdk, errors.Unclassified) and sdk.kind == "quota_spent"
    assert sdk.status_code() is grpc.StatusCode.OUT_OF_RANGE and sdk.metadata() == {"quota": "q-1"}
    state.error = sdk  # a sidecar passing it on sends the same kind and data
    again = error_status.from_rpc_error(await failed(channel))
    assert again is not None and (again.kind, again.metadata(), again.message) == (
        "quota_spent",
        {"quota": "q-1"},
        "spent",
    )


async def test_a_status_without_our_details_is_not_a_mesh_error(served: tuple[Server, grpc.aio.Channel]) -> None:
    state, channel = served
    state.plain = (grpc.StatusCode.UNAVAILABLE, "connection reset")
    rpc = await failed(channel)
    assert error_status.from_rpc_error(rpc) is None
    assert isinstance(to_error(rpc, "127.0.0.1:1"), errors.PeerUnavailable)  # the SDK: the sidecar did not answer


def test_malformed_policy_ids_from_outside_are_no_ids() -> None:
    back = errors.MeshError.from_wire("policy_denied", grpc.StatusCode.PERMISSION_DENIED, "no", {"policy_ids": "[1,"})
    assert isinstance(back, errors.PolicyDenied) and back.policy_ids == ()


def test_a_kind_from_outside_that_is_no_kind_is_bounded() -> None:
    back = errors.MeshError.from_wire("X" * 5000, grpc.StatusCode.ABORTED, "no", {"big": "x" * 100_000})
    assert isinstance(back, errors.Unclassified) and back.kind == "mesh_error"
    assert len(back.metadata()["big"]) == errors.MAX_DATA_CHARS
    failed = errors.MeshError.from_wire("agent_failed", grpc.StatusCode.INTERNAL, "no", {"cause": "Not A Kind!"})
    assert isinstance(failed, errors.AgentFailed) and failed.cause == ""
