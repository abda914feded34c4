"""Identity at the sidecars: who may call a peer port, how SVIDs arrive and rotate, and who
may use the local API. Registry-side identity is in test_identity.py."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import grpc
import pytest
import semantic_version

import meshwarden
from meshwarden import errors
from meshwarden.clock import SystemClock
from meshwarden.identity.credentials import channel_credentials, expect_peer
from meshwarden.identity.peer import CLAIMED_IDENTITY_HEADER
from meshwarden.identity.spiffe_ids import agent_id, registry_id
from meshwarden.identity.svid import Svid
from meshwarden.registry.issuer import Issuer
from meshwarden.sidecar.call import Call, Caller
from meshwarden.sidecar.catalog import CapabilitySpec, Endpoint
from meshwarden.sidecar.peer_channels import PeerChannels
from meshwarden.sidecar.stages import peer
from meshwarden.supervise import Child, StartError, meshwarden_argv, start
from meshwarden.v1 import peer_pb2, peer_pb2_grpc
from tests.integration.mesh import AGENTS, LocalMesh
from tests.integration.test_calls import routable
from tests.integration.test_receipts import stored_when

pytestmark = pytest.mark.integration

TD = "meshwarden.local"


def our_issuer(mesh: LocalMesh) -> Issuer:
    return Issuer.load(mesh.registry_data_dir / "ca", SystemClock())


def deliver_echo(callee: Child, claimed_agent: str = "frontdesk") -> peer_pb2.PeerCall:
    return peer_pb2.PeerCall(
        call_id="c-1",
        capability="echo",
        payload_json=b"{}",
        target_instance_id=callee.addresses["instance_id"],
        caller_agent=claimed_agent,
    )


async def deliver(callee: Child, svid: Svid | None, request: peer_pb2.PeerCall, **kw: object) -> peer_pb2.PeerReply:
    creds = channel_credentials(svid, our_bundle(callee, svid))
    async with grpc.aio.secure_channel(
        callee.addresses["peer"], creds, options=expect_peer(callee.addresses["spiffe_id"])
    ) as ch:
        reply: peer_pb2.PeerReply = await peer_pb2_grpc.PeerStub(ch).Deliver(request, timeout=5, **kw)  # type: ignore[arg-type]
        return reply


def our_bundle(callee: Child, svid: Svid | None) -> bytes:
    identity = Path(callee.addresses["workload_api"].removeprefix("unix://")).parent
    return (identity / "trust-bundle.pem").read_bytes()


async def test_a_peer_port_believes_certificates_only(mesh: LocalMesh) -> None:
    callee, _ = await mesh.pair("echoer")
    issuer = our_issuer(mesh)
    now = time.time()
    good = issuer.issue(agent_id(TD, "frontdesk"), 600)
    assert (await deliver(callee, good, deliver_echo(callee))).agent == "echoer"  # the control

    refusals: list[tuple[str, Svid | None, peer_pb2.PeerCall, tuple[tuple[str, str], ...], grpc.StatusCode, str]] = [
        ("no client certificate", None, deliver_echo(callee), (), grpc.StatusCode.UNAVAILABLE, ""),
        (
            "another CA",
            Issuer.ephemeral(TD, SystemClock()).issue(agent_id(TD, "frontdesk"), 600),
            deliver_echo(callee),
            (),
            grpc.StatusCode.UNAVAILABLE,
            "",
        ),
        (
            "expired",
            issuer.issue_between(agent_id(TD, "frontdesk"), now - 7200, now - 3600),
            deliver_echo(callee),
            (),
            grpc.StatusCode.UNAVAILABLE,
            "",
        ),
        (
            "another trust domain",
            issuer.issue_between(agent_id("elsewhere.test", "frontdesk"), now - 60, now + 600),
            deliver_echo(callee),
            (),
            grpc.StatusCode.UNAUTHENTICATED,
            "trust domain 'elsewhere.test'",
        ),
        (
            "malformed SPIFFE ID",
            issuer.issue_between(f"spiffe://{TD}/service/x", now - 60, now + 600),
            deliver_echo(callee),
            (),
            grpc.StatusCode.UNAUTHENTICATED,
            "not a mesh identity",
        ),
        (
            "the registry is no caller",
            issuer.issue_between(registry_id(TD), now - 60, now + 600),
            deliver_echo(callee, claimed_agent=""),
            (),
            grpc.StatusCode.UNAUTHENTICATED,
            "only sidecars deliver calls",
        ),
        (
            "a body that claims another agent",
            good,
            deliver_echo(callee, claimed_agent="billing"),
            (),
            grpc.StatusCode.UNAUTHENTICATED,
            "claims to come from agent 'billing'",
        ),
        (
            "metadata that claims another identity",
            good,
            deliver_echo(callee),
            ((CLAIMED_IDENTITY_HEADER, agent_id(TD, "billing")),),
            grpc.StatusCode.UNAUTHENTICATED,
            "in metadata",
        ),
    ]
    for label, svid, request, metadata, code, mention in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await deliver(callee, svid, request, metadata=metadata)
        assert info.value.code() is code, label
        assert mention in (info.value.details() or ""), (label, info.value.details())
    async with grpc.aio.insecure_channel(callee.addresses["peer"]) as plaintext:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await peer_pb2_grpc.PeerStub(plaintext).Deliver(deliver_echo(callee), timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    # Nothing crashed, and the refusals were logged with their reason.
    assert (await deliver(callee, good, deliver_echo(callee))).agent == "echoer"
    log = callee.stderr_text()
    assert "refused echo from" in log and "elsewhere.test" in log and "claims agent billing" in log
    # Every refusal past the TLS handshake went through the inbound pipeline: each left its
    # receipt (in the registry, with the reason) and its metric, like any other refused call.
    refused = [label for label, *_, code, _ in refusals if code is grpc.StatusCode.UNAUTHENTICATED]
    receipts = await stored_when(
        mesh,
        lambda rs: sum(r.direction == "inbound" and r.error_kind == "unidentified" for r in rs) >= len(refused),
        "the refusals' receipts",
    )
    unidentified = [r for r in receipts if r.direction == "inbound" and r.error_kind == "unidentified"]
    assert len(unidentified) == len(refused) == 5
    assert {r.status for r in unidentified} == {"UNAUTHENTICATED"}
    assert all(r.callee_instance_id == callee.addresses["instance_id"] for r in unidentified)
    reasons = " | ".join(r.error_message for r in unidentified)
    assert "elsewhere.test" in reasons and "claims to come from agent 'billing'" in reasons
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{callee.addresses['admin']}/metrics") as response:
            metrics = await response.text()
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith("meshwarden_sidecar_calls_total{")
        and 'direction="inbound"' in line
        and 'error="unidentified"' in line
    ]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) == 5, counted


async def test_a_caller_checks_the_callee_is_who_the_catalog_says(mesh: LocalMesh) -> None:
    callee, _ = await mesh.pair("billing")
    good = our_issuer(mesh).issue(agent_id(TD, "frontdesk"), 600)
    impostor_expected = agent_id(TD, "payments")  # the catalog said "payments" lives there
    creds = channel_credentials(good, good.trust_bundle_pem)
    async with grpc.aio.secure_channel(callee.addresses["peer"], creds, options=expect_peer(impostor_expected)) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await peer_pb2_grpc.PeerStub(ch).Deliver(deliver_echo(callee), timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert ch.get_state() is grpc.ChannelConnectivity.TRANSIENT_FAILURE  # no connection was ever made
    # The sidecar's own last hop says so: the instance is not who the catalog says (the call
    # was not sent, so it is retried elsewhere), naming both identities.
    spec = CapabilitySpec("echo", "", "", "")
    endpoint = Endpoint(
        "i-1", "payments", semantic_version.Version("1.0.0"), callee.addresses["peer"], impostor_expected, spec
    )
    channels = PeerChannels([], lambda: good)
    try:
        call = Call("c-2", "echo", b"{}", Caller("frontdesk", "f-1"), time.monotonic() + 5, target=endpoint)
        with pytest.raises(errors.PeerIdentityMismatch) as sent:
            await peer.Send(channels, SystemClock())(call)
    finally:
        await channels.close()
    assert impostor_expected in sent.value.message and callee.addresses["spiffe_id"] in sent.value.message
    assert sent.value.instance_id == "i-1"


async def test_embedded_svids_renew_without_dropping_calls(bare_mesh: LocalMesh, tmp_path: Path) -> None:
    mesh = bare_mesh
    await mesh.start_registry("127.0.0.1:0", "", "--svid-ttl-s", "10")
    caller = await mesh.sidecar("frontdesk")
    callee, _ = await mesh.pair("echoer")
    chain = next(tmp_path.glob("sidecars/echoer-*/identity")) / "svid.pem"
    first = chain.read_bytes()
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")
        deadline = time.monotonic() + 12  # the SVIDs (10 s) renew at half-life: twice here
        long_calls = [asyncio.create_task(client.invoke("probe.sleep", {"seconds": 3}, timeout=10)) for _ in range(3)]
        count = 0
        while time.monotonic() < deadline:
            await client.invoke("echo", {"n": count}, timeout=5)  # raises on any failure
            count += 1
            if count % 50 == 0:
                long_calls.append(asyncio.create_task(client.invoke("probe.sleep", {"seconds": 3}, timeout=10)))
            await asyncio.sleep(0.01)
        results = await asyncio.gather(*long_calls)
    assert all(r.value == {"slept": 3} for r in results)
    assert chain.read_bytes() != first, "the callee's SVID was never renewed"
    assert "SVID renewed" in callee.stderr_text()
    listed = {i.agent: i for i in await mesh.list_instances()}
    assert listed["echoer"].svid_expires_at.seconds > 0


async def test_workload_api_path_like_a_spire_agent(mesh: LocalMesh) -> None:
    """A sidecar given --spiffe-endpoint-socket takes its SVID from that Workload API, follows
    its rotations, and is known to the registry by that identity."""
    socket = mesh.workdir / "spire" / "agent.sock"
    spire = await start(
        "fake-spire-agent",
        [
            sys.executable,
            str(AGENTS / "fake_spire_agent.py"),
            "--ca-dir",
            str(mesh.registry_data_dir / "ca"),
            "--spiffe-id",
            agent_id(TD, "spire-echo"),
            "--socket",
            str(socket),
            "--ttl-s",
            "60",
            "--rotate-every-s",
            "2",
        ],
        log_dir=mesh.workdir / "logs",
        health_address_key=None,
    )
    try:
        side = await mesh.sidecar("spire-echo", "--spiffe-endpoint-socket", f"unix://{socket}")
        assert side.addresses["spiffe_id"] == agent_id(TD, "spire-echo")
        assert side.addresses["workload_api"] == f"unix://{socket}"  # no embedded enrolment happened
        assert list(mesh.workdir.glob("sidecars/spire-echo-*/identity/svid.key")) == []  # no embedded enrolment
        await mesh.agent(side, "1.0.0")
        caller = await mesh.sidecar("frontdesk")
        async with meshwarden.Client(caller.addresses["listen"]) as client:
            await routable(client, "echo")
            first = {i.agent: i for i in await mesh.list_instances()}["spire-echo"].svid_expires_at.seconds
            later = first
            until = time.monotonic() + 10
            while later == first and time.monotonic() < until:  # rotations every 2 s reach the registry
                assert (await client.invoke("echo", {}, timeout=5)).agent == "spire-echo"
                await asyncio.sleep(0.2)
                later = {i.agent: i for i in await mesh.list_instances()}["spire-echo"].svid_expires_at.seconds
        assert later > first, "the rotated SVID was never presented to the registry"
        assert "SVID rotated" in side.stderr_text()
    finally:
        await spire.stop()


async def test_a_sidecar_whose_workload_api_names_another_agent_refuses_to_start(mesh: LocalMesh) -> None:
    socket = mesh.workdir / "spire" / "agent.sock"
    spire = await start(
        "fake-spire-agent",
        [
            sys.executable,
            str(AGENTS / "fake_spire_agent.py"),
            "--ca-dir",
            str(mesh.registry_data_dir / "ca"),
            "--spiffe-id",
            agent_id(TD, "billing"),
            "--socket",
            str(socket),
        ],
        log_dir=mesh.workdir / "logs",
        health_address_key=None,
    )
    try:
        with pytest.raises(StartError, match="runs agent support"):
            await mesh.sidecar("support", "--spiffe-endpoint-socket", f"unix://{socket}")
    finally:
        await spire.stop()


async def test_join_tokens_beyond_open_enrolment(bare_mesh: LocalMesh, tmp_path: Path) -> None:
    mesh = bare_mesh
    registry = await mesh.start_registry("127.0.0.1:0", "", "--open-enrollment", "off")
    with pytest.raises(StartError, match="refused to enrol agent billing"):
        await mesh.sidecar("billing")
    ready = registry.addresses
    made = await asyncio.to_thread(
        subprocess.run,
        meshwarden_argv(
            "identity",
            "token",
            "create",
            "--agent",
            "billing",
            "--registry",
            ready["listen"],
            "--ca-pin",
            ready["ca_fingerprint"],
            "--operator-token-file",
            str(mesh.registry_data_dir / "operator.token"),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    data_dir = tmp_path / "billing-data"
    env_token = {"MESHWARDEN_SIDECAR_JOIN_TOKEN": token}
    os.environ.update(env_token)
    try:
        first = await mesh.sidecar("billing", data_dir=data_dir)
        with pytest.raises(StartError, match="refused to enrol"):  # single use
            await mesh.sidecar("billing", data_dir=tmp_path / "second-billing")
    finally:
        for key in env_token:
            os.environ.pop(key)
    assert first.addresses["spiffe_id"] == agent_id(TD, "billing")
    key_file = data_dir / "identity" / "svid.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert token not in first.stderr_text() and "PRIVATE KEY" not in first.stderr_text()
    # A restart renews with the persisted SVID: no new token needed.
    await first.stop()
    again = await mesh.sidecar("billing", data_dir=data_dir)
    assert again.addresses["spiffe_id"] == agent_id(TD, "billing")


async def test_local_api_on_a_unix_socket_with_a_token(mesh: LocalMesh) -> None:
    token_file = mesh.workdir / "api.token"
    token_file.write_text("t0ken-" + "x" * 30)
    token_file.chmod(0o600)
    socket = mesh.workdir / "run" / "frontdesk.sock"
    await mesh.pair("echoer")
    side = await mesh.sidecar("frontdesk", "--api-token-file", str(token_file))
    # --listen is given twice: the later one (a Unix socket) wins, as argparse does.
    side_uds = await mesh.sidecar("ops", "--listen", f"unix:{socket}", "--api-token-file", str(token_file))
    assert stat.S_IMODE(socket.stat().st_mode) == 0o600
    for address in (side.addresses["listen"], f"unix:{socket}"):
        async with meshwarden.Client(address, api_token=token_file.read_text()) as client:
            assert (await routable(client, "echo")).agent == "echoer"
        async with meshwarden.Client(address, api_token="wrong-" + "y" * 30) as client:
            with pytest.raises(errors.Unidentified, match="requires its API token"):
                await client.invoke("echo", {}, timeout=5)
    assert "refused /meshwarden.v1.Sidecar/Invoke on the local API: wrong API token" in side_uds.stderr_text()
