"""sidecar.catalog: the capability default timeout callers without a deadline get."""

from __future__ import annotations

from tests.unit.sidecar.fakes import catalog_of, instance


def test_the_longest_declared_default_timeout_of_the_live_instances_applies() -> None:
    old, new, silent = (
        instance("a", "billing", "1.0.0"),
        instance("b", "billing", "2.0.0"),
        instance("c", "kb", "1.0.0"),
    )
    old.capabilities[0].default_timeout_ms = 1500
    new.capabilities[0].default_timeout_ms = 4000
    silent.capabilities[0].name = "kb.search"
    catalog = catalog_of(old, new, silent)
    assert catalog.default_timeout_s("billing.refund") == 4.0
    assert catalog.default_timeout_s("kb.search") == 0.0  # none declared: the sidecar's default
    assert catalog.default_timeout_s("unknown") == 0.0
