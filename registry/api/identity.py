"""The embedded issuer's RPCs (meshwarden.v1.Identity): enrolment, SVID renewal, the trust
bundle, and join tokens for operators.

Enroll is the one call that needs no identity: a sidecar proves who it may become with a join
token made for that agent, or not at all when open enrolment is on (loopback only). The CSR
is checked before the token is consumed, so a bad CSR does not burn the token. Renew issues a
fresh SVID for exactly the SPIFFE ID in the certificate the caller presented over mTLS.

Who launched an agent is written into its SVID (registry.enrolment_extension): the operator
credential that made the join token, kept with the token, and the token's id; Renew carries it
into each new SVID, and Register stores it with the instance, so `meshwarden agents list`
shows it (ENROLLED-BY). The audit log keeps both halves too: `identity.join_token.create` names
the credential, `identity.enroll` the token (open enrolment, loopback only, is logged and not
audited).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import grpc

from meshwarden.clock import Clock, SystemClock, iso_utc
from meshwarden.identity.spiffe_ids import agent_id
from meshwarden.registry import wire
from meshwarden.registry.api.service import Handler
from meshwarden.registry.audit import Audit, actor_of
from meshwarden.registry.authz import current_caller
from meshwarden.registry.enrolment_extension import RECORDED
from meshwarden.registry.errors import PermissionDenied, Unauthenticated
from meshwarden.registry.issuer import Issued, Issuer
from meshwarden.registry.join_tokens import DEFAULT_TTL_S, JoinTokens
from meshwarden.registry.model import JOIN_TOKEN, OPEN_ENROLMENT, Enrolment
from meshwarden.registry.validation import validate_agent_name
from meshwarden.v1 import identity_pb2

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


class IdentityApi:
    def __init__(
        self,
        issuer: Issuer,
        tokens: JoinTokens,
        *,
        open_enrollment: bool,
        svid_ttl_s: float,
        mtls_address: str,
        audit: Audit | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._issuer, self._tokens, self._audit = issuer, tokens, audit
        self._clock = clock or SystemClock()
        self._open, self._ttl_s, self._mtls_address = open_enrollment, svid_ttl_s, mtls_address

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "Enroll": self.Enroll,
            "Renew": self.Renew,
            "GetTrustBundle": self.GetTrustBundle,
            "CreateJoinToken": self.CreateJoinToken,
        }

    async def Enroll(self, request: identity_pb2.EnrollRequest, _: Context) -> identity_pb2.SvidResponse:
        caller = current_caller()
        agent = request.agent
        validate_agent_name(agent, "agent")
        csr = request.csr_pem.encode()
        self._issuer.check_csr(csr)
        now = self._clock.wall()
        if request.join_token:
            token = await self._tokens.consume(request.join_token, agent)
            how = f"join token {token.token_id}"
            enrolment = Enrolment(
                how=JOIN_TOKEN,
                # a token made before tokens kept their maker: an operator credential made it, unnamed
                principal=token.created_by or "operator:unrecorded",
                token_id=token.token_id,
                claimed_user=token.created_by_claim,
                enrolled_at=now,
            )
        elif self._open:
            how = "open enrolment"
            enrolment = Enrolment(how=OPEN_ENROLMENT, principal=OPEN_ENROLMENT, enrolled_at=now)
        else:
            raise PermissionDenied(
                f"enrolling as agent {agent!r} needs a join token: this registry allows no open enrolment "
                f"(it listens beyond loopback, or open_enrollment is off); make one with: "
                f"meshwarden identity token create --agent {agent}"
            )
        issued = self._issuer.sign_csr(
            csr, agent_id(self._issuer.trust_domain, agent), self._ttl_s, enrolment=enrolment
        )
        if self._audit is not None and request.join_token:  # an operator's token let it in (open enrolment: logged)
            await self._audit.record_by(how, "identity.enroll", issued.spiffe_id, detail=f"from {caller.peer}")
        log.info(
            "enrolled %s (%s) from %s; SVID valid until %s",
            issued.spiffe_id,
            how,
            caller.peer,
            iso_utc(issued.not_after),
        )
        return self._svid_response(issued)

    async def Renew(self, request: identity_pb2.RenewSvidRequest, _: Context) -> identity_pb2.SvidResponse:
        caller = current_caller()
        if caller.identity is None:  # authz lets only agents' SVIDs through; this keeps the types honest
            raise Unauthenticated("renewing an SVID needs the SVID itself, presented over mTLS")
        kept = caller.enrolment if caller.enrolment is not None and caller.enrolment.how in RECORDED else None
        issued = self._issuer.sign_csr(
            request.csr_pem.encode(), caller.identity.spiffe_id, self._ttl_s, enrolment=kept
        )  # the enrolment the presented SVID records goes on into the new one
        log.info("renewed the SVID of %s; valid until %s", issued.spiffe_id, iso_utc(issued.not_after))
        return self._svid_response(issued)

    async def GetTrustBundle(
        self, _request: identity_pb2.GetTrustBundleRequest, _: Context
    ) -> identity_pb2.TrustBundle:
        return identity_pb2.TrustBundle(
            trust_domain=self._issuer.trust_domain,
            bundle_pem=self._issuer.bundle_pem.decode(),
            registry_mtls_address=self._mtls_address,
        )

    async def CreateJoinToken(self, request: identity_pb2.CreateJoinTokenRequest, _: Context) -> identity_pb2.JoinToken:
        caller = current_caller()
        created = await self._tokens.create(
            request.agent,
            request.ttl_s or DEFAULT_TTL_S,
            created_by=actor_of(caller),
            claimed_user=caller.claimed_user,
        )
        if self._audit is not None:
            await self._audit.record(
                caller,
                "identity.join_token.create",
                f"agent {created.agent}",
                detail=f"join token {created.token_id}",
            )
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
