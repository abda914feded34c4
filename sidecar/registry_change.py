"""A sidecar that was moved to another registry, or whose registry got a new CA, notices at
start and learns the new one instead of retrying the old one forever.

What a sidecar learned from a registry (its CA as the trust bundle, an SVID that CA signed,
the registry's mTLS address) is kept in `<data-dir>/identity/` with the `--registry` address
it came from. At start, before any of it is used: a `--registry` with no address in common with
the recorded one (adding or dropping a replica is no move), or a
registry at the recorded address that now presents another CA (its data directory was
replaced, say), makes the sidecar forget all three, say so, and learn and enrol as on its
first start: the same rules apply (a pin from --ca-pin or the join token, or trust on first
use on loopback only), so a registry it must not trust is still refused. It also starts as a
new instance: the new registry holds no receipt chain of the old one, and would refuse its
continuation as a gap. An unreachable registry changes nothing: the sidecar may simply have
started first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509

from meshwarden.addresses import HostPort, join_host_ports
from meshwarden.identity.bootstrap import fingerprint, presented_ca_fingerprint

log = logging.getLogger(__name__)

RECORD_NAME: Final = "registry-address"
LEARNED: Final = ("trust-bundle.pem", "svid.pem", "svid.key", "registry-mtls-address")


def forget_if_changed(identity_dir: Path, replicas: tuple[HostPort, ...], registry: HostPort) -> bool:
    """Removes what was learned from another registry (or an earlier CA) in `identity_dir`;
    True when it did (the caller starts a new instance, so a new receipt chain, too).
    `replicas` is --registry, `registry` the replica of them in use."""
    bundle = identity_dir / "trust-bundle.pem"
    if not bundle.exists():
        return False
    record = identity_dir / RECORD_NAME
    recorded = record.read_text().strip() if record.exists() else join_host_ports(replicas)
    if not set(recorded.split(",")) & {str(r) for r in replicas}:
        log.warning(
            "--registry changed from %s to %s: forgetting the CA, SVID and mTLS address learned from %s, "
            "and enrolling with %s",
            recorded,
            join_host_ports(replicas),
            recorded,
            registry,
        )
        _forget(identity_dir)
        return True
    moved = other_ca(identity_dir, registry)
    if moved is not None:
        log.warning(
            "the registry at %s now presents CA %s, not the CA this sidecar trusts (%s): its CA changed; "
            "forgetting the old CA, SVID and mTLS address and enrolling again",
            registry,
            moved.presented,
            ", ".join(sorted(moved.held)),
        )
        _forget(identity_dir)
        return True
    return False


@dataclass(frozen=True, slots=True)
class OtherCa:
    presented: str
    held: frozenset[str]


def other_ca(identity_dir: Path, registry: HostPort) -> OtherCa | None:
    """What the registry at `registry` presents when it is not a CA in the trust bundle held in
    `identity_dir`; None when it is, or when the registry cannot be reached or nothing is held.
    Blocking (a TLS handshake): call it in a worker thread from async code."""
    bundle = identity_dir / "trust-bundle.pem"
    if not bundle.exists():
        return None
    held = _fingerprints(bundle.read_bytes())
    presented = presented_ca_fingerprint(registry)
    if presented is None or not held or presented in held:
        return None
    return OtherCa(presented, frozenset(held))


def record(identity_dir: Path, replicas: tuple[HostPort, ...]) -> None:
    """Notes which --registry (its replicas) the identity in `identity_dir` was learned from."""
    (identity_dir / RECORD_NAME).write_text(f"{join_host_ports(replicas)}\n")


def _forget(identity_dir: Path) -> None:
    for name in LEARNED:
        (identity_dir / name).unlink(missing_ok=True)


def _fingerprints(bundle_pem: bytes) -> set[str]:
    try:
        return {fingerprint(cert) for cert in x509.load_pem_x509_certificates(bundle_pem)}
    except ValueError:
        return set()
