"""Calls through real sidecars to real agents: results, errors and their statuses."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import grpc
import pytest

import meshwarden
from meshwarden import errors
from meshwarden.supervise import meshwarden_argv
from tests.integration.mesh import ECHO_EXAMPLE, LocalMesh

pytestmark = pytest.mark.integration


async def routable(
    client: meshwarden.Client, capability: str, payload: object = None, **kw: object
) -> meshwarden.Result:
    """Calls until the caller's sidecar has learned of the capability (catalog watch lag)."""
    for _ in range(100):
        try:
            return await client.invoke(capability, {} if payload is None else payload, timeout=5, **kw)  # type: ignore[arg-type]
        except (errors.UnknownCapability, errors.NoHealthyInstance):
            await asyncio.sleep(0.05)
    raise AssertionError(f"{capability} never became routable")


async def test_async_call_reaches_the_agent_through_two_sidecars(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    callee, _ = await mesh.pair("echoer", "1.4.0")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        result = await routable(client, "echo", {"n": 12345678901234, "text": "hi"}, session_id="s-1")
    body = result.value
    assert body["echo"] == {"n": 12345678901234, "text": "hi"}  # integers stay integers
    assert isinstance(body["echo"]["n"], int)
    assert (result.agent, result.version, result.instance_id) == ("echoer", "1.4.0", callee.addresses["instance_id"])
    assert body["caller"] == "frontdesk" and body["session_id"] == "s-1"


async def test_example_echo_agent_and_sync_client_and_cli(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    side = await mesh.sidecar("echo")
    await mesh.agent(side, "2.0.1", "--announce", script=ECHO_EXAMPLE)
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo", {"a": 1})

    def blocking() -> meshwarden.Result:
        with meshwarden.SyncClient(caller.addresses["listen"]) as sync:
            return sync.invoke("echo", {"b": 2}, timeout=5)

    result = await asyncio.to_thread(blocking)
    assert result.value["echo"] == {"b": 2} and result.value["version"] == "2.0.1"
    assert result.value["instance_id"] == side.addresses["instance_id"]

    cli = await asyncio.to_thread(
        subprocess.run,
        meshwarden_argv("call", "--sidecar", caller.addresses["listen"], "echo", '{"c": 3}', "--timeout", "5"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["echo"] == {"c": 3}


async def test_cli_error_goes_to_stderr_with_status_and_nonzero_exit(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    cli = await asyncio.to_thread(
        subprocess.run,
        meshwarden_argv("call", "--sidecar", caller.addresses["listen"], "no.such.capability", "{}"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 1 and cli.stdout == ""
    assert "NOT_FOUND" in cli.stderr and "no.such.capability" in cli.stderr


async def test_sync_handler_calls_on_through_the_mesh(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    await mesh.pair("relay")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        result = await routable(client, "probe.sync_relay")
    assert result.value["relayed"]["echo"] == {"text": "via sync"} and result.value["by"] == "relay"


async def test_errors_have_the_right_status_and_name_the_problem(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk", "--max-payload-bytes", "2048")
    await mesh.pair("probe")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")
        cases: list[tuple[str, object, dict[str, object], grpc.StatusCode, str]] = [
            ("nobody.serves.this", {}, {}, grpc.StatusCode.NOT_FOUND, "nobody.serves.this"),
            ("echo", {"n": "seven"}, {}, grpc.StatusCode.INVALID_ARGUMENT, "$.n"),
            ("echo", b"{not json", {}, grpc.StatusCode.INVALID_ARGUMENT, "not valid UTF-8 JSON"),
            ("echo", {"text": "x" * 5000}, {}, grpc.StatusCode.RESOURCE_EXHAUSTED, "2048"),
            ("echo", {}, {"version": "^9"}, grpc.StatusCode.UNAVAILABLE, "live versions are 1.0.0"),
            ("echo", {}, {"schema_hash": "sha256:" + "ab" * 32}, grpc.StatusCode.FAILED_PRECONDITION, "schema drift"),
            ("probe.fail", {"how": "refuse"}, {}, grpc.StatusCode.INVALID_ARGUMENT, "amount too high"),
            ("probe.fail", {"how": "crash"}, {}, grpc.StatusCode.INTERNAL, "RuntimeError"),
            ("probe.bad_result", {}, {}, grpc.StatusCode.INTERNAL, "broke its contract"),
            ("probe.sleep", {"seconds": 5}, {"timeout": 0.3}, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline"),
        ]
        for capability, payload, options, code, mention in cases:
            with pytest.raises(errors.MeshError) as info:
                await client.invoke(capability, payload, **options)  # type: ignore[arg-type]
            assert info.value.status_code() == code, (capability, info.value.message)
            assert mention in info.value.message, (capability, info.value.message)
        # the crash's own message stays in the agent's log, never reaches the caller
        with pytest.raises(errors.AgentFailed) as crash:
            await client.invoke("probe.fail", {"how": "crash"}, timeout=5)
        assert "secret internal detail" not in crash.value.message
        # and after all that, the mesh still answers
        assert (await client.invoke("echo", {"n": 1}, timeout=5)).value["echo"] == {"n": 1}


async def test_caller_deadline_reaches_the_callee_agent(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    await mesh.pair("probe")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")
        result = await client.invoke("probe.deadline", {}, timeout=7.0)
    remaining = result.value["time_remaining"]
    # The agent sees the caller's 7 s, less the time spent on the way (not the sidecar's 30 s
    # default, not "no deadline"); gRPC's grpc-timeout header rounds, hence the small slack.
    assert remaining is not None and 5.0 < remaining < 7.1


async def test_version_range_and_schema_pin_route_to_the_right_instance(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    await mesh.pair("svc", "1.9.0")
    await mesh.pair("svc", "2.4.0", "--schema-variant", "b")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo", {"text": "t"}, version="^1")
        await routable(client, "echo", {"text": "t"}, version="^2")
        v2 = {(await client.invoke("echo", {"text": "t"}, version="^2", timeout=5)).version for _ in range(10)}
        assert v2 == {"2.4.0"}
        # Without a range, calls reach both versions: P2C takes the less loaded, and when one
        # looks over twice as slow (a loaded machine's jitter is enough), the other, until the
        # slower one's peak latency decays (tau 10 s) and it is probed again.
        everyone: set[str] = set()
        deadline = time.monotonic() + 30
        while everyone != {"1.9.0", "2.4.0"} and time.monotonic() < deadline:
            everyone.add((await client.invoke("echo", {"text": "t"}, timeout=5)).version)
            await asyncio.sleep(0.02)
        assert everyone == {"1.9.0", "2.4.0"}
        hash_v1 = await client.invoke("echo", {"text": "t"}, version="^1", timeout=5)
        listing = await _catalog(caller.addresses["listen"])
        v1_hash = next(
            c.schema_hash for i in listing if i.version == "1.9.0" for c in i.capabilities if c.name == "echo"
        )
        pinned = {
            (await client.invoke("echo", {"text": "t"}, schema_hash=v1_hash, timeout=5)).version for _ in range(10)
        }
        assert pinned == {"1.9.0"} and hash_v1.version == "1.9.0"


async def _catalog(sidecar: str) -> list[meshwarden.v1.catalog_pb2.Instance]:  # type: ignore[name-defined]
    from meshwarden.v1 import sidecar_pb2, sidecar_pb2_grpc

    async with grpc.aio.insecure_channel(sidecar) as channel:
        reply = await sidecar_pb2_grpc.SidecarStub(channel).ListCapabilities(sidecar_pb2.ListCapabilitiesRequest())
    return list(reply.instances)


async def test_invalid_registration_is_refused_with_the_reason(mesh: LocalMesh) -> None:
    from meshwarden.v1 import catalog_pb2, sidecar_pb2, sidecar_pb2_grpc

    side = await mesh.sidecar("broken")
    TOKEN = "t" * 32  # noqa: N806 - a callback token as the SDK sends one
    async with grpc.aio.insecure_channel(side.addresses["listen"]) as channel:
        stub = sidecar_pb2_grpc.SidecarStub(channel)
        for request, mention in [
            (sidecar_pb2.RegisterAgentRequest(version="1.0.0"), "callback_token is required"),
            (sidecar_pb2.RegisterAgentRequest(version="one", callback_token=TOKEN), "semantic version"),
            (
                sidecar_pb2.RegisterAgentRequest(
                    version="1.0.0",
                    capabilities=[catalog_pb2.Capability(name="x", input_schema_json='{"type": 12}')],
                    callback_token=TOKEN,
                ),
                "not a valid JSON Schema",
            ),
            (
                sidecar_pb2.RegisterAgentRequest(
                    version="1.0.0", capabilities=[catalog_pb2.Capability(name="Bad Name")], callback_token=TOKEN
                ),
                "Bad Name",
            ),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.RegisterAgent(request, timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and mention in (info.value.details() or "")


if sys.platform == "win32":  # pragma: no cover
    pytest.skip("process signals differ on Windows", allow_module_level=True)


async def test_payload_at_the_limit_reaches_the_agent_and_one_byte_more_is_refused(mesh: LocalMesh) -> None:
    limit = 4 * 1024 * 1024
    caller = await mesh.sidecar("frontdesk")
    await mesh.pair("bulk")
    text_at_limit = "x" * (limit - len('{"text":""}'))
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")
        result = await client.invoke("echo", {"text": text_at_limit}, timeout=20)
        assert len(result.value["echo"]["text"]) == len(text_at_limit)
        with pytest.raises(errors.PayloadTooLarge):
            await client.invoke("echo", {"text": text_at_limit + "x"}, timeout=20)
