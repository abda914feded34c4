"""Cedar policy bundles on a running mesh: enforced on both sides, refused when not trusted,
replaced live, kept across restarts. The bundle is the starting bundle (`bundle init`): agents
kb, billing, support, frontdesk; frontdesk is tier 1; billing.refund is risk tier 3."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import meshwarden
from meshwarden import errors
from meshwarden.local_mesh import sidecar_argv
from meshwarden.supervise import meshwarden_argv, start
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable

pytestmark = pytest.mark.integration

REFUND = "meshwarden.demo.billing_agent"


async def demo_policy(mesh: LocalMesh, revision: int = 2) -> None:
    reply = await mesh.push_bundle(mesh.bundles.make(revision))  # the starting bundle, as `bundle init` wrote it
    assert reply.revision == revision


async def wait_for_revision(mesh: LocalMesh, revision: int, sidecars: int, timeout_s: float = 10) -> float:
    """Seconds until `sidecars` live sidecars report `revision` active."""
    started = time.monotonic()
    while True:
        status = await mesh.bundle_status()
        if sum(1 for s in status.sidecars if s.live and s.active_revision == revision) >= sidecars:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout_s, status
        await asyncio.sleep(0.02)


async def billing_pair(mesh: LocalMesh) -> None:
    side = await mesh.sidecar("billing")
    agent = await start(
        "agent-billing",
        [*meshwarden_argv()[:1], "-m", REFUND, "--sidecar", side.addresses["listen"], "--version", "2.4.0"],
        log_dir=mesh.workdir / "logs",
    )
    mesh.children.append(agent)  # stopped with the mesh (it was left running after each test)


async def test_denied_calls_name_the_policy_and_the_reason(mesh: LocalMesh) -> None:
    await demo_policy(mesh)
    frontdesk = await mesh.sidecar("frontdesk")
    support = await mesh.sidecar("support")
    await mesh.agent(await mesh.sidecar("kb"))  # serves echo etc. under the name kb
    await billing_pair(mesh)
    await wait_for_revision(mesh, 2, 4)
    refund = {"customer_id": "C1", "amount_cents": 500}
    async with meshwarden.Client(frontdesk.addresses["listen"]) as as_frontdesk:
        with pytest.raises(errors.PolicyDenied) as info:  # tier 1 may not call risk tier 3
            await as_frontdesk.invoke("billing.refund", refund, timeout=5)
        assert info.value.status_code() is grpc.StatusCode.PERMISSION_DENIED
        assert "tier1-no-risk3" in info.value.message and "agents of tier 1 may not call" in info.value.message
        assert "spiffe://meshwarden.local/agent/frontdesk" in info.value.message
        with pytest.raises(errors.UnknownCapability) as unknown:  # no agent serves it: unknown, not denied
            await as_frontdesk.invoke("shipping.track", {}, timeout=5)
        assert "shipping.track" in unknown.value.message
        undescribed: errors.PolicyDenied | None = None  # kb serves echo; the bundle does not describe it
        for _ in range(100):  # until frontdesk's catalog has kb's echo
            try:
                await as_frontdesk.invoke("echo", {}, timeout=5)
            except errors.UnknownCapability:
                await asyncio.sleep(0.05)
            except errors.PolicyDenied as denied:
                undescribed = denied
                break
        assert undescribed is not None and "echo" in undescribed.message
    async with meshwarden.Client(support.addresses["listen"]) as as_support:
        ok = await routable(as_support, "billing.refund", refund)
        assert ok.value["amount_cents"] == 500
        with pytest.raises(errors.PolicyDenied) as big:  # 100 dollars or more needs team finance
            await as_support.invoke("billing.refund", {**refund, "amount_cents": 15000}, timeout=5)
        assert "refunds-under-100-dollars" in big.value.message and "team finance" in big.value.message
        with pytest.raises(errors.BadPayload) as floating:  # Cedar has no floats: refused, never guessed
            await as_support.invoke("billing.refund", {**refund, "amount_cents": 99.5}, timeout=5)
        assert "$.amount_cents" in floating.value.message


async def test_the_callee_decides_again_with_the_caller_from_mtls(mesh: LocalMesh) -> None:
    """A caller sidecar that lets everything out (development mode, trusting no bundle) still
    cannot pass a callee whose bundle denies."""
    await demo_policy(mesh)
    await billing_pair(mesh)
    permissive = await mesh.sidecar(
        "frontdesk", "--allow-without-policy", "true", "--bundle-keys", str(mesh.workdir / "no-keys")
    )
    async with meshwarden.Client(permissive.addresses["listen"]) as client:
        for _ in range(100):
            try:
                await client.invoke("billing.refund", {"customer_id": "C1", "amount_cents": 5}, timeout=5)
            except errors.PolicyDenied as err:
                denial = err
                break
            except (errors.UnknownCapability, errors.NoHealthyInstance):
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("billing.refund never became routable")
    assert "(inbound policy)" in denial.message and "tier1-no-risk3" in denial.message
    assert "DEVELOPMENT MODE" in permissive.stderr_text()


async def test_a_new_revision_is_enforced_on_a_running_mesh(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    await mesh.pair("kb")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")  # allowed by the fixture's allow-all revision 1
        forbid_echo = {
            "allow-all.cedar": '@id("allow-all")\npermit (principal, action, resource);\n',
            "no-echo.cedar": '@id("no-echo")\n@reason("echo is switched off")\n'
            'forbid (principal, action, resource == Capability::"echo");\n',
        }
        await mesh.push_bundle(mesh.bundles.make(2, forbid_echo))
        took = await wait_for_revision(mesh, 2, 2)
        with pytest.raises(errors.PolicyDenied, match="no-echo"):
            await client.invoke("echo", {}, timeout=5)
    assert took < 5  # measured in benchmarks/; here only "soon, not at the next restart"


async def test_untrusted_revisions_are_refused_and_the_last_good_one_stays(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    await mesh.pair("kb")
    good = mesh.bundles.make(2, {"a.cedar": '@id("allow-all-2")\npermit (principal, action, resource);\n'})
    await mesh.push_bundle(good)
    await wait_for_revision(mesh, 2, 2)
    # Tamper one byte of a signed revision 3: a registry with the bundle keys refuses it...
    signed = mesh.bundles.make(3, {"a.cedar": '@id("deny-nothing")\npermit (principal, action, resource);\n'})
    tampered = signed.replace(b"deny-nothing", b"deny-nothinG", 1)
    assert tampered != signed
    with pytest.raises(grpc.aio.AioRpcError) as untrusted:
        await mesh.push_bundle(tampered)
    assert untrusted.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "policies/a.cedar" in (untrusted.value.details() or "")
    # ...one without them stores it, every sidecar refuses it and reports why, and revision 2
    # goes on being enforced.
    mesh.registry_verifies_bundles = False
    await mesh.restart_registry()
    await wait_for_revision(mesh, 2, 2)  # both sidecars back with the registry
    await mesh.push_bundle(tampered)
    deadline = time.monotonic() + 10
    while True:
        status = await mesh.bundle_status()
        refusals = [s for s in status.sidecars if s.live and s.refused_revision == 3]
        if len(refusals) == 2:
            break
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.05)
    assert all(s.active_revision == 2 for s in refusals)
    assert all("policies/a.cedar" in s.refusal and "sha256:" in s.refusal for s in refusals), refusals
    async with meshwarden.Client(caller.addresses["listen"]) as client:  # kb re-registers after the restart
        assert (await routable(client, "echo")).agent == "kb"
    # An older revision, and an unsigned one, never get past the registry.
    with pytest.raises(grpc.aio.AioRpcError) as older:
        await mesh.push_bundle(mesh.bundles.make(1, {"a.cedar": '@id("x")\npermit (principal, action, resource);\n'}))
    assert older.value.code() is grpc.StatusCode.FAILED_PRECONDITION and "not newer" in (older.value.details() or "")
    unsigned = json.loads(good)
    unsigned["signatures"] = []
    with pytest.raises(grpc.aio.AioRpcError) as bare:
        await mesh.push_bundle(json.dumps(unsigned).encode())
    assert bare.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "not signed" in (bare.value.details() or "")
    # The operator's view says the same.
    shown = await asyncio.to_thread(
        subprocess.run,
        meshwarden_argv(
            "bundle",
            "status",
            "--registry",
            mesh.registry_address,
            "--ca-pin",
            mesh.registry.addresses["ca_fingerprint"] if mesh.registry else "",
            "--operator-token-file",
            str(mesh.registry_data_dir / "operator.token"),
            "--output",
            "json",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    listing = json.loads(shown.stdout)
    assert listing["latest"]["revision"] == 3
    assert {s["active_revision"] for s in listing["sidecars"] if s["live"]} == {2}


async def test_the_last_good_bundle_is_enforced_at_start_before_the_registry_answers(mesh: LocalMesh) -> None:
    forbid_echo = {
        "a.cedar": '@id("only-probe")\npermit (principal, action, resource) when { resource != Capability::"echo" };\n'
    }
    await mesh.push_bundle(mesh.bundles.make(2, forbid_echo))
    data_dir = mesh.workdir / "kept-caller"
    caller = await mesh.sidecar("frontdesk", data_dir=data_dir)
    await wait_for_revision(mesh, 2, 1)
    await caller.stop()
    assert mesh.registry is not None
    await mesh.registry.stop()
    # The registry is down: the sidecar starts on its persisted, re-verified revision 2.
    again = await start(
        "caller-again",
        sidecar_argv(
            "frontdesk",
            mesh.registry_address,
            data_dir,
            mesh.bundles.trusted_keys_dir,
            "--registry-mtls",
            mesh.registry.addresses["mtls"],
        ),
        log_dir=mesh.workdir / "logs",
    )
    try:
        assert "policy bundle demo rev 2 active" in again.stderr_text()
        async with meshwarden.Client(again.addresses["listen"]) as client:
            with pytest.raises(errors.PolicyDenied, match="only-probe|no policy permits"):
                await client.invoke("echo", {}, timeout=5)
    finally:
        await again.stop()


async def test_without_any_bundle_everything_is_denied_and_the_sidecar_is_not_ready(mesh: LocalMesh) -> None:
    await mesh.pair("echoer")  # echo is served (else the call would be refused as unknown first)
    lonely = await start(
        "sidecar-without-keys",
        sidecar_argv("frontdesk", mesh.registry_address, mesh.workdir / "lonely", None),
        log_dir=mesh.workdir / "logs",
        health_address_key=None,
    )
    try:
        async with grpc.aio.insecure_channel(lonely.addresses["listen"]) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
        async with meshwarden.Client(lonely.addresses["listen"]) as client:
            with pytest.raises(errors.PolicyDenied, match="no policy bundle is active"):
                await client.invoke("echo", {}, timeout=5)
        assert "every policy bundle will be refused" in lonely.stderr_text()
    finally:
        await lonely.stop()


async def test_policies_see_the_calls_context_cost_session_and_workflow(mesh: LocalMesh) -> None:
    context_rules = {
        "allow.cedar": '@id("allow-all")\npermit (principal, action, resource);\n',
        "budget.cedar": '@id("no-big-spend")\n@reason("calls estimated over 1 dollar need a budget owner")\n'
        "forbid (principal, action, resource) when "
        "{ context has cost_estimate_micro_usd && context.cost_estimate_micro_usd > 1000000 };\n",
        "flows.cedar": '@id("frozen-workflow")\n@reason("workflow wf-frozen is frozen")\n'
        'forbid (principal, action, resource) when { context.workflow_id == "wf-frozen" };\n',
    }
    await mesh.push_bundle(mesh.bundles.make(2, context_rules))
    caller = await mesh.sidecar("frontdesk")
    await mesh.pair("kb")
    await wait_for_revision(mesh, 2, 2)
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo", cost_estimate_micro_usd=500_000, workflow_id="wf-ok")
        with pytest.raises(errors.PolicyDenied, match="no-big-spend"):
            await client.invoke("echo", {}, cost_estimate_micro_usd=2_000_000, timeout=5)
        with pytest.raises(errors.PolicyDenied, match="frozen-workflow"):
            await client.invoke("echo", {}, workflow_id="wf-frozen", timeout=5)
        assert (await client.invoke("echo", {}, timeout=5)).agent == "kb"  # no estimate: the rule does not apply
