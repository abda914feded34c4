"""A misspelled capability is unknown (with the nearest known names), not denied by policy."""

from __future__ import annotations

import pytest

from meshwarden import errors
from meshwarden.sidecar.catalog import Catalog
from meshwarden.sidecar.stages import known_capability
from meshwarden.v1 import registry_pb2
from tests.unit.sidecar.fakes import Recorder, call, catalog_of, instance


def stage(catalog: Catalog) -> tuple[known_capability.KnownCapability, Recorder]:
    rec = Recorder()
    return known_capability.KnownCapability(rec, catalog), rec


async def test_a_misspelled_capability_is_unknown_and_the_nearest_names_are_offered() -> None:
    check, rec = stage(catalog_of(instance("b1", "billing", "2.0.0"), instance("k1", "kb", "1.0.0", "kb.search")))
    with pytest.raises(errors.UnknownCapability) as info:
        await check(call("billing.refnd"))
    assert info.value.suggestions == ("billing.refund",)
    assert "did you mean 'billing.refund'?" in info.value.message
    assert rec.calls == []


async def test_a_name_like_nothing_known_gets_no_suggestion() -> None:
    check, _ = stage(catalog_of(instance("b1", "billing", "2.0.0")))
    with pytest.raises(errors.UnknownCapability) as info:
        await check(call("weather.forecast"))
    assert info.value.suggestions == () and "did you mean" not in info.value.message


async def test_known_capabilities_pass_even_when_their_last_instance_left() -> None:
    catalog = catalog_of(instance("b1", "billing", "2.0.0"))
    catalog.apply(registry_pb2.WatchEvent(revision=2, removed=registry_pb2.InstanceRemoved(instance_id="b1")))
    check, rec = stage(catalog)
    await check(call("billing.refund"))
    assert len(rec.calls) == 1  # routing then says the last instance left


async def test_before_the_first_catalog_nothing_is_called_unknown() -> None:
    check, rec = stage(Catalog())
    await check(call("billing.refnd"))
    assert len(rec.calls) == 1


def test_the_suggestions_cross_the_wire() -> None:
    sent = errors.UnknownCapability("billing.refnd", ("billing.refund", "billing.report"))
    back = errors.MeshError.from_wire(sent.kind, sent.status_code(), sent.message, sent.metadata())
    assert isinstance(back, errors.UnknownCapability)
    assert back.suggestions == ("billing.refund", "billing.report") and back.capability == "billing.refnd"
