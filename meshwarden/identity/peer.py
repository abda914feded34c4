"""Who is on the other end of a gRPC call: the SPIFFE ID in the certificate the peer
presented in the mTLS handshake, never anything it wrote in metadata."""

from __future__ import annotations

import grpc

from meshwarden.identity.spiffe_ids import Identity, IdentityError, parse

CLAIMED_IDENTITY_HEADER = "meshwarden-caller"


class Unauthenticated(Exception):
    """The peer presented no usable mesh identity; the message says why."""


def peer_identity(context: grpc.aio.ServicerContext[object, object], trust_domain: str) -> Identity:
    auth = context.auth_context()
    uris = [value.decode() for value in auth.get("x509_subject_alternative_name", []) if value.startswith(b"spiffe://")]
    if not uris:
        raise Unauthenticated("the peer presented no certificate with a SPIFFE ID; mTLS with an SVID is required")
    if len(uris) > 1:
        raise Unauthenticated(f"the peer's certificate carries {len(uris)} SPIFFE IDs; an SVID carries exactly one")
    try:
        identity = parse(uris[0], trust_domain)
    except IdentityError as exc:
        raise Unauthenticated(str(exc)) from exc
    claimed = _claimed(context)
    if claimed and claimed != identity.spiffe_id:
        raise Unauthenticated(
            f"the peer claims {claimed} in metadata but its certificate says {identity.spiffe_id}; "
            "identity comes from the certificate only"
        )
    return identity


def _claimed(context: grpc.aio.ServicerContext[object, object]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == CLAIMED_IDENTITY_HEADER:
            return value.decode() if isinstance(value, bytes) else value
    return ""
