"""What `meshwarden check` concludes from what it gathered (check_probes.py): one `Check` per
concern, each with a hint that says what to do when it is not OK. Pure functions over data,
so every verdict is testable without a mesh, and the command only gathers and prints.

Statuses: ok; warn (works, but look: a CA close to expiry, a kill switch in force); fail
(something is wrong: the command exits 1); skip (could not be judged, e.g. no registry).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from cryptography import x509

from meshwarden.control_scopes import describe
from meshwarden.policy_bundle.mesh_starter import MeshInventory
from meshwarden.v1 import catalog_pb2, controls_pb2, registry_pb2

Status = Literal["ok", "warn", "fail", "skip"]
CA_WARN_DAYS: Final = 30
# The embedded issuer starts every SVID 60 s in the past (registry/issuer.py): clocks further
# apart than that see a fresh SVID as not yet valid.
SVID_SKEW_TOLERANCE_S: Final = 60.0
CLOCK_WARN_S: Final = 5.0
DATE_RESOLUTION_S: Final = 1.0  # an HTTP Date header counts whole seconds


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "hint": self.hint}


def registry_reachable(address: str, trust_domain: str, view_instances: int, sidecars: int) -> Check:
    return Check(
        "registry reachable",
        "ok",
        f"{address}, trust domain {trust_domain}: {view_instances} instance(s) in the catalog, "
        f"{sidecars} live sidecar(s)",
    )


def registry_unreachable(address: str, why: str) -> Check:
    return Check(
        "registry reachable",
        "fail",
        f"{address}: {why}",
        "start it (meshwarden registry serve), or point to it with --registry or MESHWARDEN_REGISTRY; "
        "its TLS name is registry.meshwarden.<trust-domain>",
    )


def ca_validity(bundle_pem: bytes, now: datetime.datetime) -> Check:
    """The earliest expiry among the trust bundle's CA certificates."""
    cas = x509.load_pem_x509_certificates(bundle_pem)
    ends = min(ca.not_valid_after_utc for ca in cas)
    left = ends - now
    detail = f"valid until {ends:%Y-%m-%d %H:%M} UTC ({left.days} day(s) left)"
    if left.total_seconds() <= 0:
        return Check(
            "registry CA valid",
            "fail",
            f"expired {ends:%Y-%m-%d %H:%M} UTC",
            "no SVID can be issued or verified: create a new CA (a new registry data dir) and re-enrol every sidecar",
        )
    if left.days < CA_WARN_DAYS:
        return Check(
            "registry CA valid",
            "warn",
            detail,
            "rotating the CA is not supported yet: plan a new CA and re-enrolment before it expires",
        )
    return Check("registry CA valid", "ok", detail)


def bundle_pushed(listing: registry_pb2.ListBundleStatusResponse) -> Check:
    latest = listing.latest
    if not latest.revision:
        return Check(
            "policy bundle pushed",
            "fail",
            "no bundle was ever pushed: every sidecar denies every call",
            "meshwarden bundle init DIR --from-registry, then bundle build, sign and push (README: "
            "Running the pieces by hand)",
        )
    return Check("policy bundle pushed", "ok", f"{latest.name} revision {latest.revision} ({latest.digest[:19]}…)")


def sidecars_enforce_latest(listing: registry_pb2.ListBundleStatusResponse) -> Check:
    """Every live sidecar runs the latest revision (bundle keys present, nothing refused)."""
    name = "sidecars enforce the latest bundle"
    latest = listing.latest.revision
    live = [s for s in listing.sidecars if s.live]
    if not latest:
        return Check(name, "skip", "no bundle pushed")
    if not live:
        return Check(name, "warn", "no live sidecar reports to the registry", "start a sidecar beside each agent")
    behind = [s for s in live if s.active_revision != latest]
    if not behind:
        return Check(name, "ok", f"{len(live)}/{len(live)} live sidecar(s) on revision {latest}")
    lines = []
    for s in behind:
        refused = f", refused rev {s.refused_revision}: {s.refusal}" if s.refused_revision else ""
        lines.append(f"{s.instance_id} ({s.agent}) on rev {s.active_revision or 'none'}{refused}")
    return Check(
        name,
        "fail",
        f"{len(live) - len(behind)}/{len(live)} on revision {latest}; " + "; ".join(lines),
        "a sidecar needs the signing key's <key-id>.pub in its --bundle-keys DIR (restart it with the flag); "
        "a refused revision names why (meshwarden bundle status)",
    )


def entities_cover(entities_text: str, mesh: MeshInventory) -> Check:
    """Every agent and capability the registry knows has an entity in the latest bundle."""
    name = "bundle entities cover the mesh"
    listed: set[tuple[str, str]] = set()
    try:
        parsed = json.loads(entities_text or "[]")
    except ValueError as exc:
        return Check(name, "fail", f"entities.json of the latest bundle is not JSON: {exc}", "rebuild the bundle")
    for entity in parsed if isinstance(parsed, list) else []:
        uid = entity.get("uid") if isinstance(entity, dict) else None
        if isinstance(uid, dict):
            listed.add((str(uid.get("type")), str(uid.get("id"))))
    missing = [f'Agent::"{a}"' for a in sorted(mesh.agents) if ("Agent", a) not in listed]
    missing += [f'Capability::"{c}"' for c in sorted(mesh.capabilities()) if ("Capability", c) not in listed]
    if missing:
        return Check(
            name,
            "fail",
            "not in entities.json: " + ", ".join(missing),
            "policies that read their attributes cannot permit them: `meshwarden bundle init DIR --from-registry` "
            "on the bundle's directory adds them; then build, sign and push",
        )
    return Check(name, "ok", f"{len(mesh.agents)} agent(s), {len(mesh.capabilities())} capability(ies) listed")


def routes_name_live_versions(routes: Sequence[registry_pb2.Route], instances: Iterable[catalog_pb2.Instance]) -> Check:
    name = "routes name live versions"
    served: dict[str, set[str]] = {}
    for instance in instances:
        for cap in instance.capabilities:
            served.setdefault(cap.name, set()).add(instance.version)
    if not routes:
        return Check(name, "ok", "no weighted routes")
    problems = []
    for route in routes:
        dead = sorted(v for v, w in route.weights.items() if w > 0 and v not in served.get(route.capability, set()))
        if dead:
            problems.append(
                f"{route.capability}: {', '.join(dead)} (live: {', '.join(sorted(served.get(route.capability, set()))) or 'none'})"
            )
    if problems:
        return Check(
            name,
            "fail",
            "weighted versions with no live instance: " + "; ".join(problems),
            "calls fall back to every version in range while they are gone: meshwarden route set CAPABILITY "
            "--weights ... with live versions, or meshwarden route clear CAPABILITY",
        )
    return Check(name, "ok", f"{len(routes)} route(s), every weighted version live")


def controls_in_force(kills: Sequence[controls_pb2.KillSwitch], isolations: Sequence[controls_pb2.Isolation]) -> Check:
    name = "kill switches and isolations"
    if not kills and not isolations:
        return Check(name, "ok", "none in force")
    parts = [f"{k.id} ({describe(k.scope_kind, k.scope_value)}): {k.reason}" for k in kills]
    parts += [f"{i.agent}@{i.version} isolated: {i.reason}" for i in isolations]
    return Check(
        name,
        "warn",
        f"{len(kills)} kill switch(es), {len(isolations)} isolation(s) in force: " + "; ".join(parts),
        "intended? lift with meshwarden kill lift ID, meshwarden isolate lift NAME@VERSION",
    )


@dataclass(frozen=True, slots=True)
class ClockReading:
    """What an admin port's HTTP Date header said, against this machine's clock."""

    endpoint: str
    skew_s: float | None  # their clock minus ours; None when it did not answer
    error: str = ""


def clocks(readings: Sequence[ClockReading], explicit: bool) -> Check:
    """Registry and sidecars (and this machine, which checks the registry's certificate) within
    the SVIDs' 60 s tolerance of each other."""
    name = "clocks within SVID tolerance"
    answered = [r for r in readings if r.skew_s is not None]
    silent = [r for r in readings if r.skew_s is None]
    if not answered:
        tried = "; ".join(f"{r.endpoint}: {r.error}" for r in silent)
        detail = f"no admin port answered ({tried})" if tried else "no admin port given"
        hint = "give the registry's and sidecars' admin ports with --admin HOST:PORT"
        return Check(name, "fail" if explicit else "skip", detail, hint)
    skews = [0.0] + [r.skew_s for r in answered if r.skew_s is not None]  # this machine included
    spread = max(skews) - min(skews)
    detail = (
        ", ".join(f"{r.endpoint} {r.skew_s:+.0f}s" for r in answered) + f" against this machine; spread {spread:.0f}s"
    )
    if silent and explicit:
        return Check(
            name,
            "fail",
            detail + "; no answer from " + ", ".join(f"{r.endpoint} ({r.error})" for r in silent),
            "is the admin port on (--admin-listen)?",
        )
    if spread > SVID_SKEW_TOLERANCE_S - DATE_RESOLUTION_S:
        return Check(
            name,
            "fail",
            detail,
            f"SVIDs start {SVID_SKEW_TOLERANCE_S:.0f} s in the past: clocks further apart refuse fresh SVIDs; run NTP "
            "(chrony, systemd-timesyncd) on every host",
        )
    if spread > CLOCK_WARN_S:
        return Check(name, "warn", detail, "clocks drift apart: check NTP on these hosts")
    return Check(name, "ok", detail)


@dataclass(frozen=True, slots=True)
class ExposedPath:
    path: str
    mode: int


def data_dirs_private(checked: Sequence[str], exposed: Sequence[ExposedPath], explicit: bool) -> Check:
    name = "data directories private"
    if not checked:
        return Check(
            name,
            "fail" if explicit else "skip",
            "no data directory found here",
            "give them with --data-dir DIR (the registry's and each sidecar's)",
        )
    if exposed:
        return Check(
            name,
            "fail",
            "readable or writable by others: " + ", ".join(f"{e.path} ({e.mode:o})" for e in exposed),
            "they hold private keys, tokens and receipts: chmod 700 the directories and 600 the files (chmod -R go-rwx DIR)",
        )
    return Check(name, "ok", f"{len(checked)} director(ies): {', '.join(checked)}")


def overall(checks: Sequence[Check]) -> bool:
    return not any(c.status == "fail" for c in checks)


def render(checks: Sequence[Check]) -> str:
    """One line per check; a hint line under each that is not OK."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status.upper():<4}  {c.name.ljust(width)}  {c.detail}")
        if c.hint and c.status in ("fail", "warn"):
            lines.append(f"{'':<4}  {'':<{width}}  hint: {c.hint}")
    return "\n".join(lines)


def as_json(checks: Sequence[Check]) -> dict[str, object]:
    return {"ok": overall(checks), "checks": [c.to_json() for c in checks]}


def counts(checks: Sequence[Check]) -> Mapping[str, int]:
    found: dict[str, int] = {}
    for c in checks:
        found[c.status] = found.get(c.status, 0) + 1
    return found
