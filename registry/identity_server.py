"""The gRPC face of the embedded issuer (meshwarden.v1.Identity): enrolment, SVID renewal,
the trust bundle, and join tokens for operators.

Enroll is the one call that needs no identity: a sidecar proves who it may become with a join
token made for that agent, or not at all when open enrolment is on (loopback only). The CSR
is checked before the token is consumed, so a bad CSR does not burn the token. Renew issues a
fresh SVID for exactly the SPIFFE ID in the certificate the caller presented over mTLS.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import grpc

from meshwarden.clock import iso_utc
from meshwarden.identity.spiffe_ids import agent_id
from meshwarden.registry import wire
from meshwarden.registry.authz import Authorizer, Caller, method
from meshwarden.registry.errors import PermissionDenied, Unauthenticated
from meshwarden.registry.issuer import Issued, Issuer
from meshwarden.registry.join_tokens import DEFAULT_TTL_S, JoinTokens
from meshwarden.registry.rescue import serve_unary
from meshwarden.registry.validation import validate_agent_name
from meshwarden.v1 import identity_pb2, identity_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME: Final[str] = identity_pb2.DESCRIPTOR.services_by_name["Identity"].full_name
ENROLL: Final = method(SERVICE_NAME, "Enroll")
RENEW: Final = method(SERVICE_NAME, "Renew")
GET_TRUST_BUNDLE: Final = method(SERVICE_NAME, "GetTrustBundle")
CREATE_JOIN_TOKEN: Final = method(SERVICE_NAME, "CreateJoinToken")

Context = grpc.aio.ServicerContext[Any, Any]


class IdentityService(identity_pb2_grpc.IdentityServicer):
    def __init__(
        self,
        issuer: Issuer,
        tokens: JoinTokens,
        authorizer: Authorizer,
        *,
        open_enrollment: bool,
        svid_ttl_s: float,
        mtls_address: str,
    ) -> None:
        self._issuer, self._tokens, self._authorizer = issuer, tokens, authorizer
        self._open, self._ttl_s, self._mtls_address = open_enrollment, svid_ttl_s, mtls_address

    async def Enroll(self, request: identity_pb2.EnrollRequest, context: Context) -> identity_pb2.SvidResponse:
        return await serve_unary(ENROLL, self._enroll, request, context, self._authorizer)

    async def Renew(self, request: identity_pb2.RenewSvidRequest, context: Context) -> identity_pb2.SvidResponse:
        return await serve_unary(RENEW, self._renew, request, context, self._authorizer)

    async def GetTrustBundle(
        self, request: identity_pb2.GetTrustBundleRequest, context: Context
    ) -> identity_pb2.TrustBundle:
        return await serve_unary(GET_TRUST_BUNDLE, self._trust_bundle, request, context, self._authorizer)

    async def CreateJoinToken(
        self, request: identity_pb2.CreateJoinTokenRequest, context: Context
    ) -> identity_pb2.JoinToken:
        return await serve_unary(CREATE_JOIN_TOKEN, self._create_join_token, request, context, self._authorizer)

    def _enroll(self, request: identity_pb2.EnrollRequest, caller: Caller) -> identity_pb2.SvidResponse:
        agent = request.agent
        validate_agent_name(agent, "agent")
        csr = request.csr_pem.encode()
        self._issuer.check_csr(csr)
        if request.join_token:
            how = f"join token {self._tokens.consume(request.join_token, agent)}"
        elif self._open:
            how = "open enrolment"
        else:
            raise PermissionDenied(
                f"enrolling as agent {agent!r} needs a join token: this registry allows no open enrolment "
                f"(it listens beyond loopback, or open_enrollment is off); make one with: "
                f"meshwarden identity token create --agent {agent}"
            )
        issued = self._issuer.sign_csr(csr, agent_id(self._issuer.trust_domain, agent), self._ttl_s)
        log.info(
            "enrolled %s (%s) from %s; SVID valid until %s",
            issued.spiffe_id,
            how,
            caller.peer,
            iso_utc(issued.not_after),
        )
        return self._svid_response(issued)

    def _renew(self, request: identity_pb2.RenewSvidRequest, caller: Caller) -> identity_pb2.SvidResponse:
        if caller.identity is None:  # authz lets only agents' SVIDs through; this keeps the types honest
            raise Unauthenticated("renewing an SVID needs the SVID itself, presented over mTLS")
        issued = self._issuer.sign_csr(request.csr_pem.encode(), caller.identity.spiffe_id, self._ttl_s)
        log.info("renewed the SVID of %s; valid until %s", issued.spiffe_id, iso_utc(issued.not_after))
        return self._svid_response(issued)

    def _trust_bundle(self, request: identity_pb2.GetTrustBundleRequest, _caller: Caller) -> identity_pb2.TrustBundle:
        return identity_pb2.TrustBundle(
            trust_domain=self._issuer.trust_domain,
            bundle_pem=self._issuer.bundle_pem.decode(),
            registry_mtls_address=self._mtls_address,
        )

    def _create_join_token(
        self, request: identity_pb2.CreateJoinTokenRequest, _caller: Caller
    ) -> identity_pb2.JoinToken:
        created = self._tokens.create(request.agent, request.ttl_s or DEFAULT_TTL_S)
        return identity_pb2.JoinToken(
            token=created.text,
            agent=created.agent,
            spiffe_id=agent_id(self._issuer.trust_domain, created.agent),
            expires_at=wire.timestamp(created.expires_at),
        )

    def _svid_response(self, issued: Issued) -> identity_pb2.SvidResponse:
        return identity_pb2.SvidResponse(
            spiffe_id=issued.spiffe_id,
            cert_chain_pem=issued.chain_pem.decode(),
            trust_bundle_pem=self._issuer.bundle_pem.decode(),
            expires_at=wire.timestamp(issued.not_after),
            registry_mtls_address=self._mtls_address,
        )
