"""models.json: what build accepts, what it refuses (with the line and what to do), and the
cost arithmetic every gateway call settles with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshwarden.policy_bundle.build import build
from meshwarden.policy_bundle.errors import BundleInvalid
from meshwarden.policy_bundle.init import model_files, models_json
from meshwarden.policy_bundle.model_catalog import Prices, parse_catalog
from tests.policy_helpers import write_bundle


def test_the_starting_catalog_builds_and_chains_fallbacks(tmp_path: Path) -> None:
    built = build(write_bundle(tmp_path, model_files()))
    catalog = parse_catalog(built.contents.models_text)
    assert [m.name for m in catalog.chain("gpt-4o")] == ["gpt-4o", "gpt-4o-mini"]
    assert catalog.providers["openai"].credential.env == "OPENAI_API_KEY"
    assert catalog.models["gpt-4o-mini"].prices == Prices(input=150000, output=600000, cached_input=75000)
    assert catalog.chain("nope") == ()


def test_costs_are_exact_integers_rounded_up() -> None:
    prices = Prices(input=150_000, output=600_000, cached_input=75_000)
    assert prices.cost_micro_usd(1_000_000, 0) == 150_000
    assert prices.cost_micro_usd(10, 10) == 8  # 7.5 micro-dollars: a budget never under-reserves
    assert prices.cost_micro_usd(100, 0, cached_input_tokens=100) == 8  # 7.5 again, all cached
    assert prices.cost_micro_usd(0, 0) == 0


def catalog_with(**changes: object) -> str:
    data = json.loads(models_json())
    for path, value in changes.items():
        section, name, key = path.split("__")
        data[section][name][key] = value
    return json.dumps(data, indent=2)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"models__gpt-4o-mini__price_micro_usd_per_mtok": {"input": 0.15, "output": 1}}, "whole millionths"),
        ({"providers__openai__credential": {"value": "sk-live-123"}}, "never the key itself"),
        ({"models__gpt-4o__fallbacks": ["gpt-5"]}, "fallback 'gpt-5' must be another model declared here"),
        ({"models__gpt-4o__fallbacks": ["claude-haiku-4-5"]}, "a fallback must speak the same API"),
        ({"models__gpt-4o__provider": "azure"}, "provider 'azure' is not declared"),
        ({"providers__openai__api": "gemini"}, "api must be one of openai, anthropic"),
        ({"models__gpt-4o__default_max_tokens": 99999}, "is over max_output_tokens"),
        ({"models__gpt-4o__colour": "red"}, "unknown key colour"),
    ],
)
def test_a_wrong_catalog_is_refused_saying_what_to_do(changes: dict[str, object], expected: str) -> None:
    with pytest.raises(BundleInvalid) as refused:
        parse_catalog(catalog_with(**changes))
    assert expected in str(refused.value) and "models.json:" in str(refused.value)


def test_models_need_the_model_action_in_the_schema(tmp_path: Path) -> None:
    schema = (write_bundle(tmp_path / "a") / "schema.cedarschema").read_text()
    cut = schema[: schema.index("// Model::")]
    with pytest.raises(BundleInvalid) as refused:
        build(write_bundle(tmp_path / "b", {**model_files(), "policies/models.cedar": None, "schema.cedarschema": cut}))
    assert 'action "CallModel"' in str(refused.value)
