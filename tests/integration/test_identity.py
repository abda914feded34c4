"""Identity and mTLS at the registry, as a real process: enrolment with join tokens, what the
TLS handshake refuses, what each RPC demands of the caller's SVID, the operator token, and that
the registry keeps serving through every refusal."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshwarden.cli import exit_codes
from meshwarden.identity import join_token
from meshwarden.identity.csr import new_key_and_csr
from meshwarden.identity.peer import CLAIMED_IDENTITY_HEADER
from meshwarden.identity.spiffe_ids import agent_id
from meshwarden.identity.svid import Svid, svid_from_pem
from meshwarden.registry.issuer import Issuer
from meshwarden.registry.operators import OPERATOR_TOKEN_FILE, OperatorCredential
from meshwarden.registry_client import mtls_address, registry_stub
from meshwarden.schema_hash import schema_hash
from meshwarden.supervise import meshwarden_argv
from meshwarden.v1 import catalog_pb2, identity_pb2, identity_pb2_grpc, registry_pb2
from tests.identity_helpers import FakeClock, enrol
from tests.integration.registry_process import RegistryProcess, start_registry

pytestmark = pytest.mark.integration

HASH = schema_hash({}, {})
TD = "meshwarden.local"


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RegistryProcess]:
    """A registry on loopback that admits sidecars by join token only."""
    running = await start_registry(tmp_path, "--open-enrollment", "off")
    try:
        yield running
        # Whatever a test threw at it, it still serves, and its log shows no secret.
        await _assert_serving(running)
        log = running.child.stderr_text()
        assert "PRIVATE KEY" not in log
        assert (running.data_dir / OPERATOR_TOKEN_FILE).read_text().strip() not in log
    finally:
        await running.close_channels()
        await running.child.stop()
        print(running.child.stderr_text())  # shown only when the test failed


async def _assert_serving(registry: RegistryProcess) -> None:
    reply = await health_pb2_grpc.HealthStub(registry.channel(None, mtls=False)).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _instance(agent: str) -> catalog_pb2.Instance:
    return catalog_pb2.Instance(
        agent=agent,
        version="1.0.0",
        peer_address="127.0.0.1:7411",
        capabilities=[catalog_pb2.Capability(name=f"{agent}.run", schema_hash=HASH)],
    )


async def _cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *meshwarden_argv(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("MESHWARDEN_")},
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _token(registry: RegistryProcess, agent: str) -> str:
    """A join token made the way an operator makes one: with the CLI."""
    code, out, err = await _cli(
        "identity",
        "token",
        "create",
        "--agent",
        agent,
        "--ttl",
        "10m",
        "--output",
        "json",
        "--registry",
        registry.listen,
        "--ca-pin",
        registry.ca_fingerprint,
        "--operator-token-file",
        str(registry.data_dir / OPERATOR_TOKEN_FILE),
    )
    assert code == exit_codes.OK, err
    made = json.loads(out)
    assert made["agent"] == agent and made["spiffe_id"] == agent_id(TD, agent)
    assert made["token"].endswith(registry.ca_fingerprint.removeprefix("sha256:"))  # it carries the CA pin
    return str(made["token"])


async def _refused(call: object, code: grpc.StatusCode, *fragments: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() is code, info.value.details()
    for fragment in fragments:
        assert fragment in (info.value.details() or "")


async def test_a_join_token_makes_one_sidecar_that_agent_once(registry: RegistryProcess) -> None:
    token = await _token(registry, "billing")
    await _refused(
        enrol(registry.listen, registry.trust(), "search", token),
        grpc.StatusCode.PERMISSION_DENIED,
        "made for agent 'billing', not 'search'",
    )
    svid = await enrol(registry.listen, registry.trust(), "billing", token)
    assert svid.spiffe_id == agent_id(TD, "billing")
    assert svid.not_after == pytest.approx(time.time() + 3600, abs=30)
    await _refused(
        enrol(registry.listen, registry.trust(), "billing", token),
        grpc.StatusCode.PERMISSION_DENIED,
        "already used",
        "single-use",
    )
    await _refused(
        enrol(registry.listen, registry.trust(), "billing"),
        grpc.StatusCode.PERMISSION_DENIED,
        "needs a join token",
        "meshwarden identity token create",
    )
    # The SVID works for its own agent on the mTLS port.
    reply = await registry_stub(registry.channel(svid)).Register(
        registry_pb2.RegisterRequest(instance=_instance("billing")), timeout=5
    )
    assert reply.instance_id


async def test_renewal_over_mtls_keeps_the_spiffe_id_and_who_enrolled_it(registry: RegistryProcess) -> None:
    token = await _token(registry, "billing")
    svid = await enrol(registry.listen, registry.trust(), "billing", token)
    csr = new_key_and_csr()
    renewed = await identity_pb2_grpc.IdentityStub(registry.channel(svid)).Renew(
        identity_pb2.RenewSvidRequest(csr_pem=csr.csr_pem.decode()), timeout=5
    )
    assert renewed.spiffe_id == svid.spiffe_id and renewed.cert_chain_pem != svid.cert_chain_pem.decode()
    assert renewed.registry_mtls_address == registry.mtls
    # An instance registered with the renewed SVID still names the operator credential that made
    # the token it enrolled with: `agents list` reads it from the certificate, not the sidecar.
    renewed_svid = svid_from_pem(
        renewed.cert_chain_pem.encode(), csr.private_key_pem, renewed.trust_bundle_pem.encode()
    )
    stub = registry_stub(registry.channel(renewed_svid))
    registered = await stub.Register(registry_pb2.RegisterRequest(instance=_instance("billing")), timeout=5)
    operator = OperatorCredential.load_or_create(registry.data_dir).identity
    listing = ("agents", "list", "--registry", registry.listen, "--ca-pin", registry.ca_fingerprint)
    token_file = ("--operator-token-file", str(registry.data_dir / OPERATOR_TOKEN_FILE))

    async def renew_forever() -> None:  # as its sidecar would, while the CLI starts (slow under load)
        while True:
            await stub.Renew(registry_pb2.RenewRequest(instance_id=registered.instance_id), timeout=5)
            await asyncio.sleep(0.25)

    renewer = asyncio.create_task(renew_forever())
    try:
        (code, out, err), (table_code, table, table_err) = await asyncio.gather(
            _cli(*listing, *token_file, "--output", "json"), _cli(*listing, *token_file)
        )
    finally:
        renewer.cancel()
    assert code == exit_codes.OK, err
    (entry,) = json.loads(out)
    assert entry["instance_id"] == registered.instance_id
    enrolled = entry["enrolled_by"]
    assert enrolled["how"] == "join_token" and enrolled["principal"] == operator
    assert enrolled["token_id"] == join_token.parse(token).token_id
    assert enrolled["claimed_user"] == (getpass.getuser() or None)  # the CLI sends $USER, kept as a claim
    assert table_code == exit_codes.OK, table_err
    assert "ENROLLED-BY" in table.splitlines()[0] and operator in table.splitlines()[1]
    # Without an SVID there is nothing to renew.
    await _refused(
        identity_pb2_grpc.IdentityStub(registry.channel(None, mtls=False)).Renew(
            identity_pb2.RenewSvidRequest(csr_pem=csr.csr_pem.decode()), timeout=5
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "needs an agent's SVID",
        registry.mtls,
    )


async def test_the_trust_bundle_is_public_and_names_the_mtls_port(registry: RegistryProcess) -> None:
    bundle = await identity_pb2_grpc.IdentityStub(registry.channel(None, mtls=False)).GetTrustBundle(
        identity_pb2.GetTrustBundleRequest(), timeout=5
    )
    assert bundle.trust_domain == TD and bundle.bundle_pem.encode() == registry.bundle_pem
    assert bundle.registry_mtls_address == registry.mtls


async def test_making_join_tokens_needs_the_operator_token(registry: RegistryProcess) -> None:
    request = identity_pb2.CreateJoinTokenRequest(agent="billing")
    anonymous = identity_pb2_grpc.IdentityStub(registry.channel(None, mtls=False))
    await _refused(
        anonymous.CreateJoinToken(request, timeout=5),
        grpc.StatusCode.UNAUTHENTICATED,
        "needs the operator token",
        "operator.token",
    )
    await _refused(
        anonymous.CreateJoinToken(request, timeout=5, metadata=(("authorization", "Bearer mwo1.x"),)),
        grpc.StatusCode.UNAUTHENTICATED,
        "not this registry's",
    )
    agent = identity_pb2_grpc.IdentityStub(registry.channel(await _enrolled(registry, "billing")))
    await _refused(
        agent.CreateJoinToken(request, timeout=5), grpc.StatusCode.UNAUTHENTICATED, "needs the operator token"
    )
    made = await anonymous.CreateJoinToken(request, timeout=5, metadata=registry.operator_metadata())
    assert made.token.startswith("mwj1.") and made.agent == "billing"


async def _enrolled(registry: RegistryProcess, agent: str) -> Svid:
    return await enrol(registry.listen, registry.trust(), agent, await _token(registry, agent))


async def test_an_agent_acts_only_for_itself(registry: RegistryProcess) -> None:
    billing = registry_stub(registry.channel(await _enrolled(registry, "billing")))
    search = registry_stub(registry.channel(await _enrolled(registry, "search")))
    await _refused(
        billing.Register(registry_pb2.RegisterRequest(instance=_instance("search")), timeout=5),
        grpc.StatusCode.PERMISSION_DENIED,
        agent_id(TD, "billing"),
        "'search'",
    )
    mine = await search.Register(registry_pb2.RegisterRequest(instance=_instance("search")), timeout=5)
    hijack = _instance("billing")
    hijack.instance_id = mine.instance_id
    await _refused(
        billing.Register(registry_pb2.RegisterRequest(instance=hijack), timeout=5),
        grpc.StatusCode.PERMISSION_DENIED,
        f"replace instance {mine.instance_id}",
    )
    await _refused(
        billing.Renew(registry_pb2.RenewRequest(instance_id=mine.instance_id), timeout=5),
        grpc.StatusCode.PERMISSION_DENIED,
        "renew the lease",
    )
    await _refused(
        billing.Deregister(registry_pb2.DeregisterRequest(instance_id=mine.instance_id), timeout=5),
        grpc.StatusCode.PERMISSION_DENIED,
        "deregister",
    )
    await search.Renew(registry_pb2.RenewRequest(instance_id=mine.instance_id), timeout=5)
    listed = await billing.ListInstances(registry_pb2.ListInstancesRequest(), timeout=5)
    assert [(i.agent, i.spiffe_id) for i in listed.instances] == [("search", agent_id(TD, "search"))]


async def test_a_metadata_claim_that_differs_from_the_certificate_is_unauthenticated(
    registry: RegistryProcess,
) -> None:
    billing = registry_stub(registry.channel(await _enrolled(registry, "billing")))
    claim = ((CLAIMED_IDENTITY_HEADER, agent_id(TD, "search")),)
    await _refused(
        billing.Register(registry_pb2.RegisterRequest(instance=_instance("search")), timeout=5, metadata=claim),
        grpc.StatusCode.UNAUTHENTICATED,
        "claims spiffe://meshwarden.local/agent/search in metadata",
    )
    anonymous = registry_stub(registry.channel(None, mtls=False))
    await _refused(
        anonymous.ListInstances(registry_pb2.ListInstancesRequest(), timeout=5, metadata=claim),
        grpc.StatusCode.UNAUTHENTICATED,
        "presented no certificate",
    )


async def test_without_an_svid_the_catalog_is_closed(registry: RegistryProcess) -> None:
    anonymous = registry_stub(registry.channel(None, mtls=False))
    await _refused(
        anonymous.Register(registry_pb2.RegisterRequest(instance=_instance("billing")), timeout=5),
        grpc.StatusCode.UNAUTHENTICATED,
        "needs an agent's SVID",
        registry.mtls,
    )
    watch = anonymous.Watch(registry_pb2.WatchRequest())
    await _refused(watch.read(), grpc.StatusCode.UNAUTHENTICATED, "needs an agent's SVID")
    listed = await anonymous.ListInstances(
        registry_pb2.ListInstancesRequest(), timeout=5, metadata=registry.operator_metadata()
    )
    assert list(listed.instances) == []


async def test_the_handshake_refuses_plaintext_foreign_and_expired_certificates(registry: RegistryProcess) -> None:
    now = FakeClock(time.time())
    billing = agent_id(TD, "billing")
    foreign = Issuer.ephemeral(TD, now).issue(billing, 600)  # same trust domain, another CA
    expired = registry.issuer(now).issue_between(billing, now.now - 7200, now.now - 3600)  # the right CA
    for label, svid in (("foreign", foreign), ("expired", expired)):
        stub = registry_stub(registry.channel(svid))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListInstances(registry_pb2.ListInstancesRequest(), timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE, label
    for address in (registry.listen, registry.mtls):
        async with grpc.aio.insecure_channel(address) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await registry_stub(plaintext).ListInstances(registry_pb2.ListInstancesRequest(), timeout=5)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    # The mTLS port asks every client for a certificate.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await registry_stub(registry.channel(None)).ListInstances(
            registry_pb2.ListInstancesRequest(), timeout=5, metadata=registry.operator_metadata()
        )
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    log = registry.child.stderr_text()  # gRPC core says why it refused each handshake
    assert "certificate has expired" in log
    assert "unable to get local issuer certificate" in log


@pytest.mark.parametrize(
    ("spiffe_id", "reason"),
    [
        (agent_id("other.test", "billing"), "belongs to trust domain 'other.test'"),
        ("spiffe://meshwarden.local/service/billing", "is not a mesh identity"),
    ],
)
async def test_certificates_from_the_right_ca_with_the_wrong_identity_are_unauthenticated(
    registry: RegistryProcess, spiffe_id: str, reason: str
) -> None:
    now = time.time()
    odd = registry.issuer(FakeClock(now)).issue_between(spiffe_id, now - 60, now + 600)
    stub = registry_stub(registry.channel(odd))
    await _refused(
        stub.Register(registry_pb2.RegisterRequest(instance=_instance("billing")), timeout=5),
        grpc.StatusCode.UNAUTHENTICATED,
        reason,
    )
    assert "refused /meshwarden.v1.Registry/Register from ipv4:127.0.0.1" in registry.child.stderr_text()


async def test_open_enrolment_beyond_loopback_is_a_configuration_error(tmp_path: Path) -> None:
    code, _out, err = await _cli(
        "registry", "serve", "--listen", "0.0.0.0:0", "--open-enrollment", "on", "--data-dir", str(tmp_path / "r")
    )
    assert code == exit_codes.USAGE
    assert "open_enrollment=on needs the registry to listen on loopback only" in err


async def test_beyond_loopback_open_enrolment_is_off_by_default(tmp_path: Path) -> None:
    registry = await start_registry(tmp_path, listen="0.0.0.0:0")
    try:
        port = registry.listen.rsplit(":", 1)[1]
        await _refused(
            enrol(f"127.0.0.1:{port}", registry.trust(), "billing"),
            grpc.StatusCode.PERMISSION_DENIED,
            "needs a join token",
        )
        bundle = await identity_pb2_grpc.IdentityStub(registry.channel(None, mtls=False)).GetTrustBundle(
            identity_pb2.GetTrustBundleRequest(), timeout=5
        )
        # A wildcard listener does not know how it is reached: the client keeps the host it dialled.
        mtls_port = registry.mtls.rsplit(":", 1)[1]
        assert bundle.registry_mtls_address == ":" + mtls_port
        assert mtls_address(f"127.0.0.1:{port}", bundle.registry_mtls_address) == f"127.0.0.1:{mtls_port}"
        assert "open enrolment off" in registry.child.stderr_text()
    finally:
        await registry.close_channels()
        await registry.child.stop()
