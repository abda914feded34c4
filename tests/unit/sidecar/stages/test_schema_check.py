from __future__ import annotations

import random

import pytest

from meshwarden.errors import BadPayload
from meshwarden.sidecar.schemas import SchemaCache
from meshwarden.sidecar.stages import routing, schema_check
from tests.unit.sidecar.fakes import Recorder, call, catalog_of, instance


def stage() -> tuple[routing.Routing, Recorder]:
    rec = Recorder()
    checked = schema_check.SchemaCheck(rec, SchemaCache())
    return routing.Routing(checked, catalog_of(instance("b1", "billing", "2.0.0")), random.Random(1)), rec


async def test_valid_arguments_pass_through_untouched() -> None:
    s, rec = stage()
    await s(call(payload=b'{"amount": 50}'))
    assert rec.calls[0].payload == b'{"amount": 50}'


async def test_wrong_type_names_the_field() -> None:
    s, rec = stage()
    with pytest.raises(BadPayload) as info:
        await s(call(payload=b'{"amount": "50"}'))
    assert "$.amount" in info.value.message and "integer" in info.value.message
    assert rec.calls == []


async def test_missing_field_names_it() -> None:
    s, _ = stage()
    with pytest.raises(BadPayload) as info:
        await s(call(payload=b"{}"))
    assert "'amount' is a required property" in info.value.message


async def test_float_is_not_an_integer() -> None:
    s, _ = stage()
    with pytest.raises(BadPayload):
        await s(call(payload=b'{"amount": 50.5}'))


async def test_not_json_is_refused() -> None:
    s, _ = stage()
    with pytest.raises(BadPayload) as info:
        await s(call(payload=b"{amount: 50"))
    assert "not valid UTF-8 JSON" in info.value.message
