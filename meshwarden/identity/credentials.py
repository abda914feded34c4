"""gRPC TLS credentials built from SVIDs.

Servers use `grpc.dynamic_ssl_server_credentials`: gRPC asks for the certificate at each new
handshake, so a rotated SVID is served from the next connection on without a restart, and
connections already open (calls in flight) are not touched. Clients build a channel per
SVID generation (see sidecar/peer_channels.py) and check the server's identity through
`grpc.ssl_target_name_override` (spiffe_ids.dns_name).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from meshwarden.identity.spiffe_ids import dns_name
from meshwarden.identity.svid import Svid


def server_credentials(current: Callable[[], Svid], *, require_client_auth: bool) -> grpc.ServerCredentials:
    """TLS for a server whose certificate is always `current()`'s.

    With `require_client_auth`, a client must present a certificate that chains to the trust
    bundle (peers); without it, a client may connect without one and each RPC decides
    (the registry: enrolment needs no SVID, everything else does).
    """
    served: list[Svid] = [current()]

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC core on every handshake: cheap, and None means "unchanged".
        latest = current()
        if latest is served[0]:
            return None
        served[0] = latest
        return _configuration(latest)

    return grpc.dynamic_ssl_server_credentials(
        _configuration(served[0]),
        fetch,  # type: ignore[arg-type]  # returning None (no change) is documented; the stub omits it
        require_client_authentication=require_client_auth,
    )


def channel_credentials(svid: Svid | None, trust_bundle_pem: bytes) -> grpc.ChannelCredentials:
    """Client TLS: trust the bundle, and present `svid` when there is one (mTLS)."""
    if svid is None:
        return grpc.ssl_channel_credentials(root_certificates=trust_bundle_pem)
    return grpc.ssl_channel_credentials(
        root_certificates=trust_bundle_pem,
        private_key=svid.private_key_pem,
        certificate_chain=svid.cert_chain_pem,
    )


def expect_peer(spiffe_id: str) -> list[tuple[str, Any]]:
    """Channel options that make the TLS name check prove the server is `spiffe_id`."""
    return [("grpc.ssl_target_name_override", dns_name(spiffe_id)), ("grpc.default_authority", dns_name(spiffe_id))]


def _configuration(svid: Svid) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(svid.private_key_pem, svid.cert_chain_pem)], root_certificates=svid.trust_bundle_pem
    )
