"""registry.authz: the table covers every RPC, and each kind of caller gets what it may."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from meshwarden.identity.csr import new_key_and_csr
from meshwarden.identity.peer import CLAIMED_IDENTITY_HEADER
from meshwarden.identity.spiffe_ids import agent_id, operator_id, registry_id
from meshwarden.identity.svid import Svid, leaf_of, svid_from_pem
from meshwarden.registry.authz import REQUIRED, Authorizer, Caller, method, require_agent
from meshwarden.registry.errors import PermissionDenied, Unauthenticated
from meshwarden.registry.issuer import Issuer
from meshwarden.registry.model import CA_KEY, JOIN_TOKEN, Enrolment
from meshwarden.registry.operators import OPERATOR_TOKEN_FILE, OperatorCredential
from meshwarden.v1 import (
    approvals_pb2,
    budgets_pb2,
    bundle_history_pb2,
    controls_pb2,
    identity_pb2,
    receipts_pb2,
    registry_pb2,
    session_insights_pb2,
    tasks_pb2,
    tools_pb2,
)
from tests.identity_helpers import FakeClock

TD = "mesh.test"
REGISTER = "/meshwarden.v1.Registry/Register"
LIST = "/meshwarden.v1.Registry/ListInstances"
CREATE_TOKEN = "/meshwarden.v1.Identity/CreateJoinToken"
ENROLL = "/meshwarden.v1.Identity/Enroll"


class FakeContext:
    """What gRPC's ServicerContext tells about the peer, as authz reads it."""

    def __init__(self, svid: Svid | None = None, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self._auth: dict[str, list[bytes]] = {"transport_security_type": [b"ssl"]}
        if svid is not None:
            leaf = leaf_of(svid.cert_chain_pem)
            self._auth["x509_pem_cert"] = [svid.cert_chain_pem]
            self._auth["x509_subject_alternative_name"] = [svid.spiffe_id.encode(), b"some.dns.name"]
            self.not_after = leaf.not_valid_after_utc.timestamp()
        self._metadata = tuple(metadata)

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5555"


@pytest.fixture
def issuer() -> Issuer:
    return Issuer.ephemeral(TD, FakeClock())


@pytest.fixture
def authorizer(tmp_path: Path, issuer: Issuer) -> Authorizer:
    return Authorizer(
        TD, OperatorCredential.load_or_create(tmp_path), mtls_address="127.0.0.1:7401", ca_key_id=issuer.key_id
    )


@pytest.fixture
def operator_token(tmp_path: Path, authorizer: Authorizer) -> str:
    return (tmp_path / OPERATOR_TOKEN_FILE).read_text().strip()


def _caller(authorizer: Authorizer, context: FakeContext) -> Caller:
    return authorizer.caller(context)  # type: ignore[arg-type]  # the parts of a context authz reads


def test_the_table_covers_every_rpc_of_every_service() -> None:
    expected = {
        method(service.full_name, rpc.name)
        for file in (
            registry_pb2.DESCRIPTOR,
            identity_pb2.DESCRIPTOR,
            receipts_pb2.DESCRIPTOR,
            controls_pb2.DESCRIPTOR,
            tasks_pb2.DESCRIPTOR,
            approvals_pb2.DESCRIPTOR,
            tools_pb2.DESCRIPTOR,
            budgets_pb2.DESCRIPTOR,
            bundle_history_pb2.DESCRIPTOR,
            session_insights_pb2.DESCRIPTOR,
        )
        for service in file.services_by_name.values()
        for rpc in service.methods
    }
    assert set(REQUIRED) == expected


def test_an_agent_svid_is_who_the_caller_is(authorizer: Authorizer, issuer: Issuer) -> None:
    svid = issuer.issue(agent_id(TD, "billing"), 600)
    context = FakeContext(svid)
    caller = _caller(authorizer, context)
    assert caller.identity is not None and caller.identity.name == "billing"
    assert caller.svid_expires_at == pytest.approx(context.not_after)
    authorizer.check(REGISTER, caller)
    authorizer.check(LIST, caller)
    with pytest.raises(Unauthenticated, match="needs the operator token"):
        authorizer.check(CREATE_TOKEN, caller)
    assert require_agent(caller, "billing", "register instances").spiffe_id == svid.spiffe_id
    with pytest.raises(PermissionDenied, match=r"spiffe://mesh.test/agent/billing may not .* of agent 'search'"):
        require_agent(caller, "search", "register instances")


def test_who_enrolled_the_caller_comes_from_its_certificate(authorizer: Authorizer, issuer: Issuer) -> None:
    by_token = Enrolment(how=JOIN_TOKEN, principal="operator:sha256:0123456789abcdef", token_id="jt-1")
    key = new_key_and_csr()
    issued = issuer.sign_csr(key.csr_pem, agent_id(TD, "billing"), 600, enrolment=by_token)
    enrolled = svid_from_pem(issued.chain_pem, key.private_key_pem, issuer.bundle_pem)
    assert _caller(authorizer, FakeContext(enrolled)).enrolment == by_token
    made_with_the_ca_key = _caller(authorizer, FakeContext(issuer.issue(agent_id(TD, "billing"), 600)))
    assert made_with_the_ca_key.enrolment == Enrolment(how=CA_KEY, principal=CA_KEY)
    # Without a certificate there is nothing to read it from.
    assert _caller(authorizer, FakeContext()).enrolment is None


def test_without_a_certificate_only_enrolment_and_the_operator_token_work(
    authorizer: Authorizer, operator_token: str
) -> None:
    anonymous = _caller(authorizer, FakeContext())
    authorizer.check(ENROLL, anonymous)
    with pytest.raises(Unauthenticated, match=r"needs an agent's SVID.*mTLS port 127.0.0.1:7401"):
        authorizer.check(REGISTER, anonymous)
    operator = _caller(authorizer, FakeContext(metadata=[("authorization", f"Bearer {operator_token}")]))
    authorizer.check(LIST, operator)
    authorizer.check(CREATE_TOKEN, operator)
    with pytest.raises(Unauthenticated):
        authorizer.check(REGISTER, operator)


def test_a_wrong_operator_token_is_named_as_such(authorizer: Authorizer) -> None:
    caller = _caller(authorizer, FakeContext(metadata=[("authorization", "Bearer mwo1.guess")]))
    assert not caller.operator
    with pytest.raises(Unauthenticated, match="the operator token sent is not this registry's"):
        authorizer.check(CREATE_TOKEN, caller)


@pytest.mark.parametrize(
    ("spiffe_id", "message"),
    [
        (agent_id("other.test", "billing"), "belongs to trust domain 'other.test'"),
        ("spiffe://mesh.test/service/billing", "is not a mesh identity"),
    ],
)
def test_certificates_the_mesh_does_not_accept_are_unauthenticated(
    authorizer: Authorizer, issuer: Issuer, spiffe_id: str, message: str
) -> None:
    svid = issuer.issue_between(spiffe_id, 0, 2e9)
    with pytest.raises(Unauthenticated, match=message):
        _caller(authorizer, FakeContext(svid))


def test_a_metadata_claim_is_never_believed(authorizer: Authorizer, issuer: Issuer) -> None:
    svid = issuer.issue(agent_id(TD, "billing"), 600)
    claim = [(CLAIMED_IDENTITY_HEADER, agent_id(TD, "admin"))]
    with pytest.raises(Unauthenticated, match="claims spiffe://mesh.test/agent/admin in metadata but its certificate"):
        _caller(authorizer, FakeContext(svid, claim))
    with pytest.raises(Unauthenticated, match="in metadata but presented no certificate"):
        _caller(authorizer, FakeContext(metadata=claim))
    same = [(CLAIMED_IDENTITY_HEADER, svid.spiffe_id)]
    assert _caller(authorizer, FakeContext(svid, same)).identity is not None


@pytest.mark.parametrize("spiffe_id", [registry_id(TD), operator_id(TD, "alice")])
def test_svids_that_are_not_agents_may_not_act_as_agents(
    authorizer: Authorizer, issuer: Issuer, spiffe_id: str
) -> None:
    caller = _caller(authorizer, FakeContext(issuer.issue(spiffe_id, 600)))
    with pytest.raises(PermissionDenied, match="is no agent's SPIFFE ID"):
        authorizer.check(REGISTER, caller)
    with pytest.raises(Unauthenticated):
        require_agent(caller, "billing", "register instances")


def test_an_rpc_missing_from_the_table_is_refused(authorizer: Authorizer) -> None:
    with pytest.raises(PermissionDenied, match="not in the registry's authorization table"):
        authorizer.check("/meshwarden.v1.Registry/Unknown", _caller(authorizer, FakeContext()))
