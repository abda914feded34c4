"""OTEL_* variables to tracing settings: off without an endpoint, the spec's endpoint rules,
bad values named."""

from __future__ import annotations

import pytest

from meshwarden.config_layers import ConfigError
from meshwarden.sidecar.tracing_settings import from_environ


def test_without_an_endpoint_tracing_is_off() -> None:
    assert not from_environ({}).enabled
    assert not from_environ({"OTEL_TRACES_SAMPLER": "always_on"}).enabled


def test_an_endpoint_turns_it_on_unless_the_sdk_or_the_exporter_is_disabled() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    on = from_environ(env)
    assert on.enabled and on.endpoint == "http://collector:4317" and on.protocol == "grpc"
    assert not from_environ({**env, "OTEL_SDK_DISABLED": "true"}).enabled
    assert not from_environ({**env, "OTEL_TRACES_EXPORTER": "none"}).enabled


def test_http_appends_the_traces_path_to_the_general_endpoint_only() -> None:
    http = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    assert from_environ({**http, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}).endpoint == "http://c:4318/v1/traces"
    own = {**http, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}
    assert from_environ(own).endpoint == "http://c:4318/custom"


def test_sampler_and_ratio() -> None:
    settings = from_environ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    assert (settings.sampler, settings.sampler_ratio) == ("parentbased_traceidratio", 0.25)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        from_environ(env)
