"""`meshwarden check`'s verdicts from gathered facts: the faults a live mesh cannot easily show
(a CA close to expiry or expired, clocks apart) and the shape of the output."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshwarden.cli import mesh_checks
from meshwarden.cli.mesh_checks import Check, ClockReading
from meshwarden.policy_bundle.mesh_starter import MeshInventory
from meshwarden.v1 import catalog_pb2, registry_pb2

NOW = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)


def ca_pem(days_left: float) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=300))
        .not_valid_after(NOW + datetime.timedelta(days=days_left))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_a_ca_with_a_year_left_passes_one_with_days_left_warns_an_expired_one_fails() -> None:
    assert mesh_checks.ca_validity(ca_pem(365), NOW).status == "ok"
    soon = mesh_checks.ca_validity(ca_pem(10), NOW)
    assert soon.status == "warn" and "10 day(s) left" in soon.detail and soon.hint
    gone = mesh_checks.ca_validity(ca_pem(-1), NOW)
    assert gone.status == "fail" and "expired" in gone.detail and gone.hint


def test_clocks_further_apart_than_the_svid_backdating_fail() -> None:
    near = mesh_checks.clocks([ClockReading("r:9900", 0.4), ClockReading("s:9901", -1.2)], explicit=True)
    assert near.status == "ok"
    drifting = mesh_checks.clocks([ClockReading("r:9900", 8.0)], explicit=True)
    assert drifting.status == "warn"
    apart = mesh_checks.clocks([ClockReading("r:9900", 40.0), ClockReading("s:9901", -35.0)], explicit=True)
    assert apart.status == "fail" and "spread 75s" in apart.detail and "NTP" in apart.hint


def test_unanswered_admin_ports_fail_only_when_asked_for() -> None:
    silent = [ClockReading("127.0.0.1:9901", None, "connection refused")]
    assert mesh_checks.clocks(silent, explicit=False).status == "skip"
    assert mesh_checks.clocks(silent, explicit=True).status == "fail"


def test_entities_must_name_every_agent_and_capability() -> None:
    mesh = MeshInventory({"billing": frozenset({"billing.refund"}), "ops": frozenset()})
    listed = '[{"uid": {"type": "Agent", "id": "billing"}, "attrs": {}, "parents": []}]'
    found = mesh_checks.entities_cover(listed, mesh)
    assert found.status == "fail" and found.detail == 'not in entities.json: Agent::"ops", Capability::"billing.refund"'


def test_routes_to_versions_nobody_runs_fail() -> None:
    instance = catalog_pb2.Instance(
        agent="billing", version="2.3.1", capabilities=[catalog_pb2.Capability(name="billing.refund")]
    )
    live = registry_pb2.Route(capability="billing.refund", weights={"2.3.1": 100, "2.4.0": 0})
    dead = registry_pb2.Route(capability="billing.refund", weights={"2.3.1": 90, "2.5.0": 10})
    assert mesh_checks.routes_name_live_versions([live], [instance]).status == "ok"  # weight 0 routes nothing
    failed = mesh_checks.routes_name_live_versions([dead], [instance])
    assert failed.status == "fail" and "billing.refund: 2.5.0 (live: 2.3.1)" in failed.detail


def test_a_sidecar_that_refused_the_latest_bundle_is_named_with_its_reason() -> None:
    listing = registry_pb2.ListBundleStatusResponse(
        latest=registry_pb2.PolicyBundle(name="mesh", revision=3),
        sidecars=[
            registry_pb2.BundleStatus(instance_id="a-1", agent="a", active_revision=3, live=True),
            registry_pb2.BundleStatus(
                instance_id="b-1", agent="b", refused_revision=3, refusal="no trusted bundle keys", live=True
            ),
            registry_pb2.BundleStatus(instance_id="c-1", agent="c", active_revision=1, live=False),
        ],
    )
    found = mesh_checks.sidecars_enforce_latest(listing)
    assert found.status == "fail"
    assert found.detail == "1/2 on revision 3; b-1 (b) on rev none, refused rev 3: no trusted bundle keys"


def test_one_line_per_check_and_a_hint_under_each_failure() -> None:
    checks = [Check("registry reachable", "ok", "fine"), Check("routes name live versions", "fail", "bad", "fix it")]
    lines = mesh_checks.render(checks).splitlines()
    assert lines[0].startswith("OK    registry reachable") and lines[1].startswith("FAIL  routes name live versions")
    assert lines[2].strip() == "hint: fix it" and len(lines) == 3
    assert mesh_checks.as_json(checks)["ok"] is False
