"""SVIDs from a SPIFFE Workload API, read with the `spiffe` package's X509Source.

One code path for both sources of identity: a SPIRE agent (SPIFFE_ENDPOINT_SOCKET or
--spiffe-endpoint-socket) and the Workload API the sidecar itself serves when the embedded
issuer is used (sidecar/workload_api_server.py). X509Source follows the stream in its own
thread; `current()` is a plain attribute read, cheap enough for every TLS handshake.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from spiffe import TrustDomain, X509Source
from spiffe.errors import ArgumentError
from spiffe.workloadapi.errors import X509SourceError

from meshwarden.clock import iso_utc
from meshwarden.identity.svid import Svid

log = logging.getLogger(__name__)


class WorkloadApiError(Exception):
    """The Workload API did not give this process an SVID."""


class WorkloadSvids:
    def __init__(self, socket_path: str, trust_domain: str, *, timeout_s: float = 30.0) -> None:
        self._trust_domain = trust_domain
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Svid], None]] = []
        try:
            self._source = X509Source(socket_path=_as_uri(socket_path), timeout_in_seconds=timeout_s)
        except (X509SourceError, ArgumentError) as exc:
            raise WorkloadApiError(f"no SVID from the Workload API at {socket_path}: {exc}") from exc
        self._svid = self._read()
        self._source.subscribe_for_updates(self._on_update)
        log.info("SVID %s from the Workload API at %s", self._svid.spiffe_id, socket_path)

    def current(self) -> Svid:
        return self._svid

    def subscribe(self, listener: Callable[[Svid], None]) -> None:
        """`listener` runs in the X509Source thread on every new SVID: keep it short and
        thread-safe (hand over to the event loop with call_soon_threadsafe)."""
        with self._lock:
            self._listeners.append(listener)

    def close(self) -> None:
        self._source.close()

    def _on_update(self) -> None:
        try:
            svid = self._read()
        except WorkloadApiError:
            log.exception("the Workload API sent an unusable update; keeping the current SVID")
            return
        self._svid = svid
        log.info("SVID rotated: %s, valid until %s", svid.spiffe_id, iso_utc(svid.not_after))
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(svid)

    def _read(self) -> Svid:
        context = self._source.get_x509_context()
        svid = context.default_svid
        bundle = context.x509_bundle_set.get_bundle_for_trust_domain(TrustDomain(self._trust_domain))
        if bundle is None:
            raise WorkloadApiError(f"the Workload API sent no trust bundle for {self._trust_domain}")
        if svid.spiffe_id.trust_domain.name != self._trust_domain:
            raise WorkloadApiError(
                f"the Workload API's SVID {svid.spiffe_id} is not in trust domain {self._trust_domain}"
            )
        pem = serialization.Encoding.PEM
        chain = b"".join(cert.public_bytes(pem) for cert in svid.cert_chain)
        key = svid.private_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        authorities = b"".join(cert.public_bytes(pem) for cert in bundle.x509_authorities)
        return Svid(
            spiffe_id=str(svid.spiffe_id),
            cert_chain_pem=chain,
            private_key_pem=key,
            trust_bundle_pem=authorities,
            not_before=svid.leaf.not_valid_before_utc.timestamp(),
            not_after=svid.leaf.not_valid_after_utc.timestamp(),
        )


def _as_uri(socket_path: str) -> str:
    return socket_path if socket_path.startswith("unix:") else f"unix://{socket_path}"
