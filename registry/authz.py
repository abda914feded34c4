"""Who may call what on the registry: each RPC's required identity, in one table.

The caller is what the TLS handshake proved (the SPIFFE ID in the certificate it presented on
the mTLS port, with that certificate's expiry) plus the operator token it may send as
`authorization: Bearer ...`. A SPIFFE ID claimed in metadata is never believed: one that
differs from the certificate, or comes without one, is refused (UNAUTHENTICATED).

Certificates from another CA, expired ones and plaintext never get this far: the TLS
handshake refuses them, and gRPC core logs why ("Handshake failed ... certificate has
expired"). What the handshake accepts but the mesh does not (another trust domain, a path
that is no mesh identity) is refused here.

Every call to a registry service passes this table by construction: the server's
interceptor (registry.api.authorization) looks the RPC up, refuses it when it is missing
(default deny), and hands the handler the proven `Caller` (`current_caller`).

Beyond the table, calls about one agent's instance also need that agent's own SVID:
`require_agent` (Register, Renew, Deregister), checked by the domain that knows whose
instance an id is (registry.catalog); bundle status and health reports only as an instance the
caller owns (registry.reporter_ownership).
"""

from __future__ import annotations

import contextvars
import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import grpc
from cryptography import x509

from meshwarden.identity.peer import CLAIMED_IDENTITY_HEADER, peer_identity
from meshwarden.identity.peer import Unauthenticated as PeerUnauthenticated
from meshwarden.identity.spiffe_ids import Identity
from meshwarden.registry.enrolment_extension import enrolment_of
from meshwarden.registry.errors import PermissionDenied, Unauthenticated
from meshwarden.registry.model import Enrolment
from meshwarden.registry.operators import OPERATOR_USER_HEADER, OperatorCredential, bearer_token
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

Context = grpc.aio.ServicerContext[Any, Any]

_REGISTRY: Final = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name
_CONTROLS: Final = controls_pb2.DESCRIPTOR.services_by_name["Controls"].full_name
_IDENTITY: Final = identity_pb2.DESCRIPTOR.services_by_name["Identity"].full_name
_RECEIPTS: Final = receipts_pb2.DESCRIPTOR.services_by_name["Receipts"].full_name
_TASKS: Final = tasks_pb2.DESCRIPTOR.services_by_name["Tasks"].full_name
_APPROVALS: Final = approvals_pb2.DESCRIPTOR.services_by_name["Approvals"].full_name
_TOOLS: Final = tools_pb2.DESCRIPTOR.services_by_name["Tools"].full_name
_BUDGETS: Final = budgets_pb2.DESCRIPTOR.services_by_name["Budgets"].full_name
_BUNDLE_HISTORY: Final = bundle_history_pb2.DESCRIPTOR.services_by_name["BundleHistory"].full_name
_INSIGHTS: Final = session_insights_pb2.DESCRIPTOR.services_by_name["SessionInsights"].full_name


class Need(enum.Enum):
    NOTHING = "nothing"  # anybody over TLS: enrolment brings its own proof (join token)
    AGENT = "an agent's SVID"
    AGENT_OR_OPERATOR = "an agent's SVID or the operator token"
    OPERATOR = "the operator token"


def method(service: str, name: str) -> str:
    return f"/{service}/{name}"


REQUIRED: Final[Mapping[str, Need]] = MappingProxyType(
    {
        method(_REGISTRY, "Register"): Need.AGENT,  # plus: the instance's agent is the caller's
        method(_REGISTRY, "Renew"): Need.AGENT,  # plus: the stored instance's agent is the caller's
        method(_REGISTRY, "Deregister"): Need.AGENT,  # plus: as Renew
        method(_REGISTRY, "Watch"): Need.AGENT,
        method(_REGISTRY, "ListInstances"): Need.AGENT_OR_OPERATOR,
        method(_REGISTRY, "PushBundle"): Need.OPERATOR,
        method(_REGISTRY, "ReportBundleStatus"): Need.AGENT,  # plus: the instance's agent is the caller's
        method(_REGISTRY, "ListBundleStatus"): Need.AGENT_OR_OPERATOR,
        method(_REGISTRY, "SetRoute"): Need.OPERATOR,
        method(_REGISTRY, "ListRoutes"): Need.AGENT_OR_OPERATOR,
        method(_REGISTRY, "ReportHealth"): Need.AGENT,  # plus: a registered reporter is the caller's instance
        method(_CONTROLS, "Kill"): Need.OPERATOR,
        method(_CONTROLS, "ListKills"): Need.AGENT_OR_OPERATOR,
        method(_CONTROLS, "LiftKill"): Need.OPERATOR,
        method(_CONTROLS, "Isolate"): Need.OPERATOR,
        method(_CONTROLS, "LiftIsolation"): Need.OPERATOR,
        method(_CONTROLS, "ListIsolations"): Need.AGENT_OR_OPERATOR,
        method(_CONTROLS, "ListAudit"): Need.OPERATOR,
        method(_CONTROLS, "AcknowledgeControls"): Need.AGENT,  # plus: the watcher's SVID
        method(_IDENTITY, "Enroll"): Need.NOTHING,  # a join token, or open enrolment on loopback
        method(_IDENTITY, "Renew"): Need.AGENT,
        method(_IDENTITY, "GetTrustBundle"): Need.NOTHING,
        method(_IDENTITY, "CreateJoinToken"): Need.OPERATOR,
        method(_RECEIPTS, "ShipReceipts"): Need.AGENT,  # plus: every receipt names the caller's SPIFFE ID
        method(_RECEIPTS, "VerifyReceipts"): Need.OPERATOR,
        method(_RECEIPTS, "ReportOutcome"): Need.AGENT,  # plus: its sidecar shipped a receipt of the session
        method(_RECEIPTS, "ListSessions"): Need.AGENT_OR_OPERATOR,  # plus: an agent sees only its own sessions
        method(_RECEIPTS, "GetSession"): Need.AGENT_OR_OPERATOR,  # plus: as ListSessions
        method(_RECEIPTS, "Costs"): Need.OPERATOR,
        method(_TASKS, "SubmitTask"): Need.AGENT_OR_OPERATOR,  # an agent's is submitted as its SPIFFE ID
        method(_TASKS, "LeaseTask"): Need.AGENT,  # plus: the caller's instance, serving each kind
        method(_TASKS, "HeartbeatTask"): Need.AGENT,  # plus: the caller's instance holds the task
        method(_TASKS, "StartTask"): Need.AGENT,  # plus: as HeartbeatTask
        method(_TASKS, "CompleteTask"): Need.AGENT,  # plus: as HeartbeatTask
        method(_TASKS, "SubmitTasks"): Need.AGENT_OR_OPERATOR,  # as SubmitTask, each
        method(_TASKS, "CompleteTasks"): Need.AGENT,  # plus: as HeartbeatTask, each
        method(_TASKS, "CancelTask"): Need.OPERATOR,
        method(_TASKS, "RequeueTask"): Need.OPERATOR,
        method(_TASKS, "ListTasks"): Need.OPERATOR,
        method(_TASKS, "ShowTask"): Need.OPERATOR,
        method(_TASKS, "GetFencingKey"): Need.AGENT_OR_OPERATOR,
        method(_APPROVALS, "RequestApproval"): Need.AGENT,  # plus: for the caller's own agent
        method(_APPROVALS, "WaitApproval"): Need.AGENT,  # plus: the approval's agent is the caller's
        method(_APPROVALS, "ListApprovals"): Need.OPERATOR,
        method(_APPROVALS, "GetApproval"): Need.OPERATOR,
        method(_APPROVALS, "DecideApproval"): Need.OPERATOR,
        method(_TOOLS, "ListToolCalls"): Need.OPERATOR,  # receipts may hold a call's arguments
        method(_BUDGETS, "SetBudget"): Need.OPERATOR,
        method(_BUDGETS, "ListBudgets"): Need.AGENT_OR_OPERATOR,
        method(_BUDGETS, "LiftBudget"): Need.OPERATOR,
        method(_BUDGETS, "WatchBudgets"): Need.AGENT,
        method(_BUDGETS, "LeaseSlice"): Need.AGENT,  # the holder is the caller's SPIFFE ID
        method(_BUDGETS, "SyncSlices"): Need.AGENT,  # plus: only the holder reports its slices
        method(_BUNDLE_HISTORY, "ListBundles"): Need.OPERATOR,
        method(_BUNDLE_HISTORY, "GetBundle"): Need.OPERATOR,
        method(_INSIGHTS, "ListSuspectSessions"): Need.OPERATOR,  # spans every agent's sessions
        method(_INSIGHTS, "ListChanges"): Need.OPERATOR,
        method(_INSIGHTS, "ListAgentActivity"): Need.OPERATOR,  # every agent's sessions and tasks
    }
)


@dataclass(frozen=True)
class Caller:
    identity: Identity | None  # from the certificate presented in the handshake
    svid_expires_at: float  # that certificate's notAfter; 0 without one
    operator: bool  # sent this registry's operator token
    sent_bad_operator_token: bool
    peer: str  # transport address, for log lines
    # The operator credential's identity when it was accepted ("" otherwise), for the audit log.
    operator_id: str = ""
    # Who the client says runs it (metadata meshwarden-operator-user); a claim, never proof.
    claimed_user: str = ""
    # Who let the certificate's identity in, as the certificate says (None without one).
    enrolment: Enrolment | None = None

    def __str__(self) -> str:
        if self.identity is not None:
            return self.identity.spiffe_id
        return "an operator" if self.operator else f"a client without SVID at {self.peer}"


class Authorizer:
    def __init__(
        self, trust_domain: str, operators: OperatorCredential, *, mtls_address: str, ca_key_id: bytes
    ) -> None:
        self._trust_domain, self._operators, self._mtls_address = trust_domain, operators, mtls_address
        self._ca_key_id = ca_key_id  # the embedded CA's: tells its certificates from another CA's

    def caller(self, context: Context) -> Caller:
        """Who is calling, as the handshake and the operator token prove it; raises
        Unauthenticated for a certificate the mesh does not accept or a false metadata claim."""
        auth = context.auth_context()
        identity, expires_at, enrolment = None, 0.0, None
        certificates = list(auth.get("x509_pem_cert", []))
        if certificates:
            try:
                identity = peer_identity(context, self._trust_domain)
            except PeerUnauthenticated as exc:
                raise Unauthenticated(str(exc)) from None
            expires_at, enrolment = _facts(certificates[0], self._ca_key_id)
        else:
            claimed = _metadata(context, CLAIMED_IDENTITY_HEADER)
            if claimed:
                raise Unauthenticated(
                    f"the caller claims {claimed} in metadata but presented no certificate; identity comes from the "
                    f"SVID presented over mTLS only (the registry's mTLS port is {self._mtls_address})"
                )
        token = bearer_token(context.invocation_metadata())
        accepted = bool(token) and self._operators.accepts(token)
        return Caller(
            identity,
            expires_at,
            accepted,
            bool(token) and not accepted,
            context.peer(),
            operator_id=self._operators.identity if accepted else "",
            claimed_user=_metadata(context, OPERATOR_USER_HEADER)[:64],
            enrolment=enrolment,
        )

    def check(self, rpc: str, caller: Caller) -> None:
        """Raises Unauthenticated or PermissionDenied unless `caller` has what `rpc` needs."""
        need = REQUIRED.get(rpc)
        if need is None:
            raise PermissionDenied(f"{rpc} is not in the registry's authorization table")  # a bug: fail closed
        if need is Need.NOTHING:
            return
        if need in (Need.OPERATOR, Need.AGENT_OR_OPERATOR) and caller.operator:
            return
        if need in (Need.AGENT, Need.AGENT_OR_OPERATOR) and caller.identity is not None:
            if caller.identity.kind == "agent":
                return
            raise PermissionDenied(f"{rpc} is for agents, and {caller.identity.spiffe_id} is no agent's SPIFFE ID")
        raise Unauthenticated(self._how_to_authenticate(rpc, need, caller))

    def _how_to_authenticate(self, rpc: str, need: Need, caller: Caller) -> str:
        steps = []
        if need in (Need.AGENT, Need.AGENT_OR_OPERATOR):
            steps.append(
                f"present an agent's SVID on the registry's mTLS port {self._mtls_address} (sidecars get one "
                "with Identity.Enroll)"
            )
        if need in (Need.OPERATOR, Need.AGENT_OR_OPERATOR):
            bad = "the operator token sent is not this registry's; " if caller.sent_bad_operator_token else ""
            steps.append(
                f"{bad}send the operator token as 'authorization: Bearer <token>' (the CLI reads it with "
                "--operator-token-file <registry data dir>/operator.token or MESHWARDEN_OPERATOR_TOKEN)"
            )
        return f"{rpc} needs {need.value}, and {caller} has none: " + ", or ".join(steps)


_CURRENT: Final = contextvars.ContextVar[Caller]("meshwarden_registry_caller")


def set_current_caller(caller: Caller) -> contextvars.Token[Caller]:
    """For the authorization interceptor only: the caller it proved, for the call's handler."""
    return _CURRENT.set(caller)


def reset_current_caller(token: contextvars.Token[Caller]) -> None:
    _CURRENT.reset(token)


def current_caller() -> Caller:
    """The caller of the RPC being served, as the interceptor proved and authorized it.
    Outside an authorized call (a handler served without the interceptor) this refuses."""
    try:
        return _CURRENT.get()
    except LookupError:
        raise PermissionDenied("this call did not pass the registry's authorization (a bug: fail closed)") from None


def require_agent(caller: Caller, agent: str, action: str) -> Identity:
    """The caller's identity when it is agent `agent`'s SVID; PermissionDenied naming both otherwise."""
    identity = caller.identity
    if identity is None or identity.kind != "agent":
        raise Unauthenticated(f"{action} needs agent {agent!r}'s SVID, and {caller} presented none")
    if identity.name != agent:
        raise PermissionDenied(
            f"{identity.spiffe_id} may not {action} of agent {agent!r}: a sidecar acts only for the agent "
            f"its SVID names ({identity.name!r})"
        )
    return identity


@functools.lru_cache(maxsize=1024)  # a sidecar presents the same certificate on every call until it rotates
def _facts(pem: bytes, ca_key_id: bytes) -> tuple[float, Enrolment]:
    """The certificate's notAfter and who let its identity in."""
    certificate = x509.load_pem_x509_certificate(pem)
    return certificate.not_valid_after_utc.timestamp(), enrolment_of(certificate, ca_key_id)


def _metadata(context: Context, key: str) -> str:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value.decode() if isinstance(value, bytes) else value
    return ""
