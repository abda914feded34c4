"""Operator controls through real processes: kill switches at every scope on both sides of a
call, lift and ttl, in-flight cancellation seen by the agent, isolation, restart and
reconnect, the operator credential, and the audit log."""

from __future__ import annotations

import asyncio
import datetime
import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

import meshwarden
from meshwarden import errors
from meshwarden.registry_client import registry_stub
from meshwarden.supervise import Child, meshwarden_argv
from meshwarden.v1 import controls_pb2, controls_pb2_grpc, registry_pb2
from tests.integration.fault_proxy import FaultProxy
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable

pytestmark = pytest.mark.integration

K = controls_pb2


@asynccontextmanager
async def controls(mesh: LocalMesh) -> AsyncIterator[controls_pb2_grpc.ControlsStub]:
    async with await mesh.operator_channel() as channel:
        yield controls_pb2_grpc.ControlsStub(channel)


async def kill(mesh: LocalMesh, kind: int, value: str, reason: str, ttl_s: float = 0) -> controls_pb2.KillResponse:
    request = K.KillRequest(scope_kind=kind, scope_value=value, reason=reason)  # type: ignore[arg-type]
    if ttl_s:
        request.ttl.FromTimedelta(datetime.timedelta(seconds=ttl_s))
    async with controls(mesh) as stub:
        reply: controls_pb2.KillResponse = await stub.Kill(request, metadata=mesh.operator_metadata(), timeout=15)
    return reply


async def lift(mesh: LocalMesh, switch_id: str) -> controls_pb2.LiftKillResponse:
    async with controls(mesh) as stub:
        reply: controls_pb2.LiftKillResponse = await stub.LiftKill(
            K.LiftKillRequest(id=switch_id), metadata=mesh.operator_metadata(), timeout=15
        )
    return reply


async def cli(mesh: LocalMesh, *args: str, expect: int = 0) -> str:
    assert mesh.registry is not None
    done = await asyncio.to_thread(
        subprocess.run,
        meshwarden_argv(
            *args,
            "--registry",
            mesh.registry_address,
            "--ca-pin",
            mesh.registry.addresses["ca_fingerprint"],
            "--operator-token-file",
            str(mesh.registry_data_dir / "operator.token"),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == expect, done.stdout + done.stderr
    return done.stdout + done.stderr


Attempt = tuple[meshwarden.Client, str, dict[str, Any]]  # client, capability, invoke options


async def refused_by(attempt: Attempt, reply: controls_pb2.KillResponse) -> None:
    client, capability, options = attempt
    with pytest.raises(errors.KillSwitchEngaged) as info:
        await client.invoke(capability, {}, timeout=5, **options)
    switch = reply.kill_switch
    assert info.value.status_code() is grpc.StatusCode.FAILED_PRECONDITION
    assert switch.id in info.value.message and switch.reason in info.value.message, info.value.message


async def answered(attempt: Attempt) -> meshwarden.Result:
    client, capability, options = attempt
    return await client.invoke(capability, {}, timeout=5, **options)


async def test_every_scope_stops_matching_calls_only_until_lifted_or_expired(mesh: LocalMesh) -> None:
    frontdesk = await mesh.sidecar("frontdesk")  # team support (the test bundle's entities)
    billing, _ = await mesh.pair("billing", "1.0.0")  # team finance
    kb, _ = await mesh.pair("kb", "2.0.0")  # team knowledge
    async with meshwarden.Client(frontdesk.addresses["listen"]) as fd, meshwarden.Client(kb.addresses["listen"]) as kbc:
        await routable(fd, "echo", version="^1")
        await routable(fd, "echo", version="^2")
        await routable(kbc, "echo", version="^1")
        to_billing: Attempt = (fd, "echo", {"version": "^1"})
        to_kb: Attempt = (fd, "echo", {"version": "^2"})
        kb_to_billing: Attempt = (kbc, "echo", {"version": "^1"})
        billing_id = billing.addresses["instance_id"]
        cases: list[tuple[int, str, list[Attempt], list[Attempt]]] = [
            (K.SCOPE_KIND_INSTANCE, billing_id, [to_billing, kb_to_billing], [to_kb]),
            (K.SCOPE_KIND_AGENT, "billing", [to_billing, kb_to_billing], [to_kb]),
            (K.SCOPE_KIND_VERSION, "billing@1.0.0", [to_billing], [to_kb]),
            (K.SCOPE_KIND_TEAM, "finance", [to_billing, kb_to_billing], [to_kb]),
            (K.SCOPE_KIND_CAPABILITY, "probe.deadline", [(fd, "probe.deadline", {})], [to_billing, to_kb]),
            (
                K.SCOPE_KIND_SESSION,
                "s-stop",
                [(fd, "echo", {"session_id": "s-stop"})],
                [(fd, "echo", {"session_id": "s-go"})],
            ),
            (
                K.SCOPE_KIND_WORKFLOW,
                "wf-stop",
                [(fd, "echo", {"workflow_id": "wf-stop"})],
                [(fd, "echo", {"workflow_id": "wf-go"})],
            ),
            (K.SCOPE_KIND_AGENT, "frontdesk", [to_billing, to_kb], [kb_to_billing]),  # the caller's side
            (K.SCOPE_KIND_TEAM, "support", [to_kb], [kb_to_billing]),
            (K.SCOPE_KIND_ALL, "", [to_billing, to_kb, kb_to_billing], []),
        ]
        for kind, value, refused, untouched in cases:
            reply = await kill(mesh, kind, value, f"test stop of {value or 'everything'}")
            assert (reply.enforcement.enforced, reply.enforcement.expected) == (3, 3), reply.enforcement
            for attempt in refused:
                await refused_by(attempt, reply)
            for attempt in untouched:
                await answered(attempt)
            if kind == K.SCOPE_KIND_AGENT and value == "billing":  # callers steer around a killed callee
                assert {(await fd.invoke("echo", {}, timeout=5)).agent for _ in range(8)} == {"kb"}
            lifted = await lift(mesh, reply.kill_switch.id)
            assert lifted.enforcement.enforced == 3
            for attempt in refused:
                await answered(attempt)

        reply = await kill(mesh, K.SCOPE_KIND_CAPABILITY, "probe.deadline", "cool down for a second", ttl_s=1)
        await refused_by((fd, "probe.deadline", {}), reply)
        for _ in range(100):  # the ttl ends by the sidecars' own clock and by the registry's
            try:
                await fd.invoke("probe.deadline", {}, timeout=5)
                break
            except errors.KillSwitchEngaged:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the switch with a 1 s ttl never ended")
    for _ in range(50):
        async with controls(mesh) as stub:
            left = await stub.ListKills(K.ListKillsRequest(), metadata=mesh.operator_metadata(), timeout=5)
        if not left.kill_switches:
            break
        await asyncio.sleep(0.1)
    assert not left.kill_switches
    audit = json.loads(await cli(mesh, "audit", "list", "--output", "json"))
    actions = [e["action"] for e in audit]
    assert actions.count("kill") == 11 and actions.count("kill.lift") == 10 and actions.count("kill.expire") == 1
    assert actions[0] == "bundle.push"  # the mesh's first bundle, pushed by the fixture as an operator
    assert all(e["actor"].startswith("operator:sha256:") for e in audit if e["action"] != "kill.expire")


async def test_cli_kill_cancels_in_flight_calls_isolate_and_audit(mesh: LocalMesh) -> None:
    frontdesk = await mesh.sidecar("frontdesk")
    await mesh.pair("billing", "1.0.0")
    await mesh.pair("kb", "2.0.0")
    async with meshwarden.Client(frontdesk.addresses["listen"]) as fd:
        await routable(fd, "echo", version="^1")
        await routable(fd, "echo", version="^2")
        pinned = await fd.invoke("echo", {}, timeout=5, version="^1", session_id="pinned-session")
        assert pinned.agent == "billing"
        doomed = asyncio.create_task(fd.invoke("probe.wait", {"seconds": 30, "tag": "t1"}, timeout=60, version="^1"))
        spared = asyncio.create_task(fd.invoke("probe.wait", {"seconds": 4, "tag": "k1"}, timeout=60, version="^2"))
        for _ in range(100):
            if "t1" in (await fd.invoke("probe.waits", {}, timeout=5, version="^1")).value["started"]:
                break
            await asyncio.sleep(0.05)

        out = await cli(mesh, "kill", "--agent", "billing", "--reason", "runaway refunds")
        assert "enforced by 3/3 sidecars in" in out and "runaway refunds" in out
        switch_id = out.split()[2]
        with pytest.raises(errors.KillSwitchEngaged, match=f"cancelled in flight by kill switch {switch_id}"):
            await doomed
        assert (await spared).value["tag"] == "k1"  # outside the scope: untouched, in flight too
        listed = await cli(mesh, "kill", "list")
        assert switch_id in listed and "agent billing" in listed and "runaway refunds" in listed
        assert "TIME-TO-EFFECT" in listed and " 3/3 in " in listed  # kept from the kill, shown while in force
        (as_json,) = json.loads(await cli(mesh, "kill", "list", "--output", "json"))
        assert as_json["id"] == switch_id and as_json["time_to_effect"]["enforced"] == 3
        paged = await cli(mesh, "kill", "list", "--limit", "1")  # the only switch: a page with no `more:`
        assert switch_id in paged and "more: --cursor" not in paged
        refused = await cli(mesh, "kill", "list", "--cursor", "nonsense", expect=2)
        assert "INVALID_ARGUMENT" in refused and "pass the page's next_cursor unchanged" in refused
        assert "lifted" in await cli(mesh, "kill", "lift", switch_id)
        waits = (await fd.invoke("probe.waits", {}, timeout=5, version="^1")).value
        assert waits["cancelled"] == ["t1"]  # the agent's handler saw asyncio.CancelledError

        out = await cli(mesh, "isolate", "billing@1.0.0", "--reason", "bad release")
        assert "billing@1.0.0 isolated" in out and "enforced by 3/3" in out
        with pytest.raises(errors.NoHealthyInstance, match="billing@1.0.0 isolated by an operator"):
            await fd.invoke("echo", {}, timeout=5, version="^1")
        moved = await fd.invoke("echo", {}, timeout=5, session_id="pinned-session")
        assert moved.agent == "kb"  # the session's version is isolated: it moves
        assert "back in routing" in await cli(mesh, "isolate", "lift", "billing@1.0.0")
        assert (await fd.invoke("echo", {}, timeout=5, version="^1")).agent == "billing"
    assert "session pinned-session moved echo from version 1.0.0" in frontdesk.stderr_text()

    async with await mesh.operator_channel() as channel:
        await registry_stub(channel).SetRoute(
            registry_pb2.SetRouteRequest(capability="echo", weights={"1.0.0": 100}),
            metadata=mesh.operator_metadata(),
            timeout=5,
        )
    audit = await cli(mesh, "audit", "list", "--since", "1h")
    lines = audit.splitlines()
    assert lines[0].split() == ["WHEN", "ACTOR", "ACTION", "TARGET", "REASON", "/", "DETAIL"]
    actions = [line.split()[2 if "(" not in line.split()[2] else 3] for line in lines[1:]]
    assert actions == ["bundle.push", "kill", "kill.lift", "isolate", "isolate.lift", "route.set"], audit
    assert "agent billing" in lines[2] and "runaway refunds" in lines[2] and "1.0.0=100" in lines[-1]


async def test_writes_need_the_operator_credential(mesh: LocalMesh) -> None:
    async with await mesh.operator_channel() as channel:
        stub = controls_pb2_grpc.ControlsStub(channel)
        for metadata in ((), (("authorization", "Bearer mwo1.not-the-token"),)):
            for call in (
                stub.Kill(K.KillRequest(scope_kind=K.SCOPE_KIND_ALL, reason="x"), metadata=metadata, timeout=5),
                stub.Isolate(K.IsolateRequest(target="billing@1.0.0", reason="x"), metadata=metadata, timeout=5),
                stub.LiftKill(K.LiftKillRequest(id="ks-1"), metadata=metadata, timeout=5),
                stub.ListAudit(K.ListAuditRequest(), metadata=metadata, timeout=5),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call
                assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
                assert "operator token" in (info.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.Kill(
                K.KillRequest(scope_kind=K.SCOPE_KIND_AGENT, scope_value="Billing!", reason="x"),
                metadata=mesh.operator_metadata(),
                timeout=5,
            )
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as no_reason:
            await stub.Kill(K.KillRequest(scope_kind=K.SCOPE_KIND_ALL), metadata=mesh.operator_metadata(), timeout=5)
        assert no_reason.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "--reason" in (
            no_reason.value.details() or ""
        )
        audit = await stub.ListAudit(K.ListAuditRequest(), metadata=mesh.operator_metadata(), timeout=5)
    assert [e.action for e in audit.entries] == ["bundle.push"]  # nothing refused was recorded


async def _restart(mesh: LocalMesh, child: Child, agent: str, *flags: str, data_dir: Any) -> Child:
    await child.stop()
    return await mesh.sidecar(agent, *flags, data_dir=data_dir)


async def test_killed_instance_stays_killed_and_a_reconnecting_sidecar_applies_switches_first(
    mesh: LocalMesh,
) -> None:
    assert mesh.registry is not None
    billing_dir = mesh.workdir / "billing-sidecar"
    billing = await mesh.sidecar("billing", data_dir=billing_dir)
    billing_agent = await mesh.agent(billing, "1.0.0")
    async with FaultProxy(mesh.registry.addresses["mtls"]) as proxy:
        support = await mesh.sidecar("support", "--registry-mtls", proxy.address)  # reaches the registry via the proxy
        await mesh.agent(support, "3.0.0")
        async with meshwarden.Client(support.addresses["listen"]) as sc:
            await routable(sc, "echo", version="^1")
            reply = await kill(mesh, K.SCOPE_KIND_INSTANCE, billing.addresses["instance_id"], "quarantined")
            await refused_by((sc, "echo", {"version": "^1"}), reply)

            await billing_agent.stop()
            again = await _restart(mesh, billing, "billing", data_dir=billing_dir)
            assert again.addresses["instance_id"] == billing.addresses["instance_id"]  # kept in the data dir
            assert (billing_dir / "controls" / "last.pb").exists()
            await mesh.agent(again, "1.0.0")
            await refused_by((sc, "echo", {"version": "^1"}), reply)
            await lift(mesh, reply.kill_switch.id)
            await routable(sc, "echo", version="^1")

            # A partition between the support sidecar and the registry: a switch only the caller's
            # side can see (its own version) is engaged meanwhile, and applied when it reconnects.
            proxy.reset_all()  # a partition the sidecar notices: its connections are reset, new ones refused
            cut_off = await kill(mesh, K.SCOPE_KIND_VERSION, "support@3.0.0", "support 3.0.0 misbehaves")
            assert cut_off.enforcement.enforced == 1  # the billing sidecar; support is cut off
            await answered((sc, "echo", {"version": "^1"}))  # it has not heard yet; billing cannot tell its version
            proxy.pass_through()
            for _ in range(200):
                try:
                    await sc.invoke("echo", {}, timeout=5, version="^1")
                except errors.KillSwitchEngaged:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the reconnected sidecar never applied the switch")
        # The switch is in force once a call is refused; the routes that follow it on the new
        # stream may be logged a moment later, so wait for their line rather than read at once.
        for _ in range(200):
            log = support.stderr_text()
            reconnected = log.index("catalog watch lost")
            if "weighted routes" in log[reconnected:]:
                break
            await asyncio.sleep(0.05)
        engaged = log.index(f"kill switch(es) engaged: {cut_off.kill_switch.id}", reconnected)
        assert engaged < log.index("weighted routes", reconnected)  # the switches came first on the new stream
