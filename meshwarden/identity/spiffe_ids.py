"""SPIFFE IDs in the mesh, and the DNS names gRPC checks for them.

Agents are `spiffe://<trust-domain>/agent/<name>`; the registry is
`spiffe://<trust-domain>/meshwarden/registry`; operators are
`spiffe://<trust-domain>/operator/<name>`.

gRPC Python's client always checks the server's name, and a certificate whose only SAN is a
SPIFFE URI never passes (docs/DESIGN.md). So every SVID also carries a DNS SAN derived from its
SPIFFE ID (`dns_name`), and a client dialling a peer sets `grpc.ssl_target_name_override` to
the DNS name of the SPIFFE ID it means to reach: the TLS name check then proves the server
holds that identity. The derivation is the reversed path plus the trust domain:
`spiffe://meshwarden.local/agent/billing` -> `billing.agent.meshwarden.local`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from meshwarden.names import AGENT_NAME

DEFAULT_TRUST_DOMAIN: Final = "meshwarden.local"
TRUST_DOMAIN: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")
TRUST_DOMAIN_RULE: Final = "a lower-case DNS name such as meshwarden.local or prod.example.com"

Kind = Literal["agent", "registry", "operator"]


class IdentityError(ValueError):
    """A SPIFFE ID that is malformed, from another trust domain, or of the wrong kind."""


@dataclass(frozen=True, slots=True)
class Identity:
    spiffe_id: str
    trust_domain: str
    kind: Kind
    name: str  # the agent or operator name; "registry" for the registry


def check_trust_domain(text: str) -> str:
    if len(text) > 255 or not TRUST_DOMAIN.fullmatch(text):
        raise IdentityError(f"trust domain must be {TRUST_DOMAIN_RULE}, got {text!r}")
    return text


def agent_id(trust_domain: str, agent: str) -> str:
    return f"spiffe://{trust_domain}/agent/{agent}"


def registry_id(trust_domain: str) -> str:
    return f"spiffe://{trust_domain}/meshwarden/registry"


def operator_id(trust_domain: str, name: str) -> str:
    return f"spiffe://{trust_domain}/operator/{name}"


def dns_name(spiffe_id: str) -> str:
    """The DNS SAN an SVID for `spiffe_id` carries, and the name a client expects."""
    trust_domain, segments = _split(spiffe_id)
    return ".".join([*reversed(segments), trust_domain])


def parse(spiffe_id: str, trust_domain: str) -> Identity:
    """Parses a mesh SPIFFE ID of `trust_domain`; raises IdentityError saying what is wrong."""
    domain, segments = _split(spiffe_id)
    if domain != trust_domain:
        raise IdentityError(f"{spiffe_id} belongs to trust domain {domain!r}, not {trust_domain!r}")
    if segments == ["meshwarden", "registry"]:
        return Identity(spiffe_id, domain, "registry", "registry")
    if len(segments) == 2 and segments[0] in ("agent", "operator") and AGENT_NAME.fullmatch(segments[1]):
        kind: Kind = "agent" if segments[0] == "agent" else "operator"
        return Identity(spiffe_id, domain, kind, segments[1])
    raise IdentityError(
        f"{spiffe_id} is not a mesh identity; expected spiffe://{trust_domain}/agent/<name>, "
        f"/operator/<name> or /meshwarden/registry"
    )


def _split(spiffe_id: str) -> tuple[str, list[str]]:
    if not spiffe_id.startswith("spiffe://"):
        raise IdentityError(f"{spiffe_id!r} is not a SPIFFE ID (spiffe://<trust-domain>/<path>)")
    domain, _, path = spiffe_id[len("spiffe://") :].partition("/")
    check_trust_domain(domain)
    segments = path.split("/") if path else []
    if not segments or any(not AGENT_NAME.fullmatch(s) for s in segments):
        raise IdentityError(f"{spiffe_id!r} has a path that is empty or not made of DNS labels")
    return domain, segments
