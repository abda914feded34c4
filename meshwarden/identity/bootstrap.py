"""First contact with the registry: learn which CA to trust before trusting anything.

A sidecar (or the CLI) that has no trust bundle yet reads the certificate chain the registry
presents in its TLS handshake (pyOpenSSL: the standard library cannot show an unverified
chain before Python 3.13), takes the CA at its end, and accepts it only if
- its SHA-256 fingerprint equals the pin carried by a join token or given with --ca-pin, or
- there is no pin and the registry is on loopback (zero-configuration development: trust on
  first use, logged with the fingerprint so it can be pinned later).
Anything else is refused. Everything afterwards is verified against the bundle so learned.
"""

from __future__ import annotations

import hashlib
import logging
import select
import socket
import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from meshwarden.addresses import HostPort

log = logging.getLogger(__name__)


class BootstrapError(Exception):
    """The registry's CA could not be learned or did not match the pin."""


@dataclass(frozen=True)
class LearnedBundle:
    bundle_pem: bytes
    fingerprint: str  # "sha256:<hex>" of the CA certificate (DER)


def fingerprint(cert: x509.Certificate) -> str:
    return "sha256:" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def learn_registry_ca(registry: HostPort, *, pin: str = "", timeout_s: float = 5.0) -> LearnedBundle:
    chain = _presented_chain(registry, timeout_s)
    cas = [c for c in chain if _is_self_signed_ca(c)]
    if not cas:
        raise BootstrapError(
            f"the registry at {registry} presented no CA certificate in its TLS chain; "
            "give the trust bundle explicitly with --trust-bundle"
        )
    ca = cas[-1]
    found = fingerprint(ca)
    if pin:
        if found != pin:
            raise BootstrapError(
                f"the registry at {registry} presented CA {found}, but the pin says {pin}: "
                "this may not be your registry; refusing to trust it"
            )
    elif not registry.is_loopback:
        raise BootstrapError(
            f"the registry at {registry} is not on loopback and no CA pin was given; "
            "use a join token (it carries the pin), --ca-pin, or --trust-bundle"
        )
    else:
        log.warning("trusting the registry CA %s on first use (loopback, no pin given)", found)
    return LearnedBundle(ca.public_bytes(serialization.Encoding.PEM), found)


def presented_ca_fingerprint(registry: HostPort, *, timeout_s: float = 5.0) -> str | None:
    """The fingerprint of the CA the registry presents now, None when it cannot be reached or
    presents none (nothing is trusted here: a sidecar compares it with the CA it holds)."""
    try:
        cas = [c for c in _presented_chain(registry, timeout_s) if _is_self_signed_ca(c)]
    except BootstrapError:
        return None
    return fingerprint(cas[-1]) if cas else None


def _is_self_signed_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca and cert.issuer == cert.subject


def _presented_chain(registry: HostPort, timeout_s: float) -> list[x509.Certificate]:
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_verify(SSL.VERIFY_NONE, lambda *_: True)  # inspected and pinned below, never trusted as is
    context.set_alpn_protos([b"h2"])
    try:
        raw = socket.create_connection((registry.host, registry.port), timeout=timeout_s)
    except OSError as exc:
        raise BootstrapError(f"cannot reach the registry at {registry}: {exc}") from exc
    connection = SSL.Connection(context, raw)
    try:
        connection.set_connect_state()
        _handshake(connection, raw, timeout_s)
        chain = connection.get_peer_cert_chain(as_cryptography=True) or []
    except (SSL.Error, OSError) as exc:
        raise BootstrapError(f"TLS handshake with the registry at {registry} failed: {exc!r}") from exc
    finally:
        connection.close()
        raw.close()
    return list(chain)


def _handshake(connection: SSL.Connection, raw: socket.socket, timeout_s: float) -> None:
    """do_handshake on a socket with a timeout: such a socket is non-blocking underneath, so
    pyOpenSSL asks to be called again when the socket is ready (WantRead/WantWrite)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            connection.do_handshake()
            return
        except (SSL.WantReadError, SSL.WantWriteError) as want:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OSError(f"no TLS handshake within {timeout_s} s") from None
            writing = isinstance(want, SSL.WantWriteError)
            select.select([] if writing else [raw], [raw] if writing else [], [], remaining)
