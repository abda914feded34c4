"""registry.api: every RPC of every registry service passes the authorization interceptor,
by construction, with the role the table requires; over a real gRPC server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshwarden.registry import api
from meshwarden.registry.api.service import ServiceWiringError, add_service, handlers_of
from meshwarden.registry.authz import REQUIRED, Authorizer, Caller, Need, current_caller, method
from meshwarden.registry.errors import InvalidInput, PermissionDenied
from meshwarden.registry.operators import OperatorCredential
from meshwarden.v1 import registry_pb2, tasks_pb2

TASKS = tasks_pb2.DESCRIPTOR.services_by_name["Tasks"]

AGENT, EITHER, OPERATOR, NOBODY = Need.AGENT, Need.AGENT_OR_OPERATOR, Need.OPERATOR, Need.NOTHING

# Every RPC the registry serves, with the role it requires: a new RPC fails here until it is
# given one in registry.authz.REQUIRED (and until then the interceptor refuses it).
EXPECTED = {
    "meshwarden.v1.Registry": {
        "Register": AGENT,
        "Renew": AGENT,
        "Deregister": AGENT,
        "ListInstances": EITHER,
        "Watch": AGENT,
        "PushBundle": OPERATOR,
        "ReportBundleStatus": AGENT,
        "ListBundleStatus": EITHER,
        "SetRoute": OPERATOR,
        "ListRoutes": EITHER,
        "ReportHealth": AGENT,
    },
    "meshwarden.v1.Controls": {
        "Kill": OPERATOR,
        "ListKills": EITHER,
        "LiftKill": OPERATOR,
        "Isolate": OPERATOR,
        "LiftIsolation": OPERATOR,
        "ListIsolations": EITHER,
        "ListAudit": OPERATOR,
        "AcknowledgeControls": AGENT,
    },
    "meshwarden.v1.Identity": {"Enroll": NOBODY, "Renew": AGENT, "GetTrustBundle": NOBODY, "CreateJoinToken": OPERATOR},
    "meshwarden.v1.Tasks": {
        "SubmitTask": EITHER,
        "LeaseTask": AGENT,
        "HeartbeatTask": AGENT,
        "StartTask": AGENT,
        "CompleteTask": AGENT,
        "SubmitTasks": EITHER,
        "CompleteTasks": AGENT,
        "CancelTask": OPERATOR,
        "RequeueTask": OPERATOR,
        "ListTasks": OPERATOR,
        "ShowTask": OPERATOR,
        "GetFencingKey": EITHER,
    },
    "meshwarden.v1.Approvals": {
        "RequestApproval": AGENT,
        "WaitApproval": AGENT,
        "ListApprovals": OPERATOR,
        "GetApproval": OPERATOR,
        "DecideApproval": OPERATOR,
    },
    "meshwarden.v1.Budgets": {
        "SetBudget": OPERATOR,
        "ListBudgets": EITHER,
        "LiftBudget": OPERATOR,
        "WatchBudgets": AGENT,
        "LeaseSlice": AGENT,
        "SyncSlices": AGENT,
    },
    "meshwarden.v1.Receipts": {
        "ShipReceipts": AGENT,
        "VerifyReceipts": OPERATOR,
        "ReportOutcome": AGENT,
        "ListSessions": EITHER,
        "GetSession": EITHER,
        "Costs": OPERATOR,  # costs span every agent (issue 14, defect 5)
    },
    "meshwarden.v1.Tools": {"ListToolCalls": OPERATOR},
    api.BUNDLE_HISTORY.full_name: {"ListBundles": OPERATOR, "GetBundle": OPERATOR},  # whole bundles: operators
    api.SESSION_INSIGHTS.full_name: {
        "ListSuspectSessions": OPERATOR,
        "ListChanges": OPERATOR,
        "ListAgentActivity": OPERATOR,
    },  # every agent's
}


def test_every_rpc_of_every_registry_service_has_its_required_role() -> None:
    from_descriptors = {
        method(service.full_name, rpc.name): REQUIRED.get(method(service.full_name, rpc.name))
        for service in (*api.SERVICES, TASKS)  # Tasks keeps its generated servicer for now
        for rpc in service.methods
    }
    expected = {method(service, rpc): need for service, rpcs in EXPECTED.items() for rpc, need in rpcs.items()}
    assert from_descriptors == expected
    assert set(REQUIRED) == set(expected)  # nothing in the table that is not served


Seen = list[Caller]


def _handler(seen: Seen, fail: Exception | None = None) -> Callable[..., Any]:
    async def handle(request: registry_pb2.ListRoutesRequest, context: object) -> registry_pb2.ListRoutesResponse:
        seen.append(current_caller())
        if fail is not None:
            raise fail
        return registry_pb2.ListRoutesResponse()

    return handle


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[grpc.aio.Channel, Seen, str]]:
    """A server with the interceptor, a served RPC in the table (ListRoutes, agent or operator),
    one that is not (/meshwarden.v1.Registry/Bogus), and one that fails."""
    operators = OperatorCredential.load_or_create(tmp_path)
    server = grpc.aio.server(
        interceptors=[api.Authorization(Authorizer("mesh.test", operators, mtls_address="x", ca_key_id=b""))]
    )
    seen: Seen = []
    unary = grpc.unary_unary_rpc_method_handler
    options = {
        "request_deserializer": registry_pb2.ListRoutesRequest.FromString,
        "response_serializer": registry_pb2.ListRoutesResponse.SerializeToString,
    }
    handlers = {
        "ListRoutes": unary(_handler(seen), **options),
        "Bogus": unary(_handler(seen), **options),
        "SetRoute": unary(_handler(seen, InvalidInput("capability", "is required")), **options),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("meshwarden.v1.Registry", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    token = operators.path.read_text().strip()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, seen, token
    finally:
        await server.stop(None)


async def _call(channel: grpc.aio.Channel, name: str, token: str = "") -> registry_pb2.ListRoutesResponse:
    call = channel.unary_unary(
        f"/meshwarden.v1.Registry/{name}",
        request_serializer=registry_pb2.ListRoutesRequest.SerializeToString,
        response_deserializer=registry_pb2.ListRoutesResponse.FromString,
    )
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    response: registry_pb2.ListRoutesResponse = await call(registry_pb2.ListRoutesRequest(), metadata=metadata)
    return response


async def test_a_served_rpc_missing_from_the_table_is_refused_before_its_handler(
    served: tuple[grpc.aio.Channel, Seen, str],
) -> None:
    channel, seen, token = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(channel, "Bogus", token)
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "not in the registry's authorization table" in (info.value.details() or "")
    assert seen == []


async def test_the_handler_gets_the_proven_caller_and_only_with_the_required_role(
    served: tuple[grpc.aio.Channel, Seen, str],
) -> None:
    channel, seen, token = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(channel, "ListRoutes")  # no SVID, no token
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED and seen == []
    await _call(channel, "ListRoutes", token)
    assert len(seen) == 1 and seen[0].operator and seen[0].identity is None


async def test_errors_of_handlers_become_their_status(served: tuple[grpc.aio.Channel, Seen, str]) -> None:
    channel, _, token = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(channel, "SetRoute", token)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "capability is required"


def test_outside_an_authorized_call_there_is_no_caller() -> None:
    with pytest.raises(PermissionDenied, match="did not pass the registry's authorization"):
        current_caller()


async def test_a_service_is_served_only_with_exactly_one_handler_per_rpc() -> None:
    server = grpc.aio.server()

    async def handler(request: object, context: object) -> None:
        return None

    all_but_one = {rpc.name: handler for rpc in api.REGISTRY.methods if rpc.name != "Watch"}
    with pytest.raises(ServiceWiringError, match=r"no handler for \['Watch'\]"):
        add_service(server, api.REGISTRY, all_but_one)
    with pytest.raises(ServiceWiringError, match="handlers for no RPC \\['Nope'\\]"):
        add_service(server, api.REGISTRY, {**all_but_one, "Watch": handler, "Nope": handler})
    with pytest.raises(ServiceWiringError, match="Watch has two handlers"):
        handlers_of({"Watch": handler}, {"Watch": handler})
