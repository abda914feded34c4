"""Where spans go and which are kept, from the standard OTEL_* variables.

The sidecar follows the OpenTelemetry SDK environment specification rather than inventing
flags: an operator points OTEL_EXPORTER_OTLP_ENDPOINT at a collector as for any other
service. Without an endpoint (or with OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none)
tracing is off: no provider, no exporter, and the tracing stage passes the trace context on
untouched.

Read here: the endpoint, the protocol, the sampler and its argument, the service name. The
exporter reads the rest of its standard variables itself (OTEL_EXPORTER_OTLP_HEADERS,
_CERTIFICATE, _TIMEOUT, _COMPRESSION, _INSECURE), the SDK reads OTEL_RESOURCE_ATTRIBUTES and
the batch processor's OTEL_BSP_* tuning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshwarden.config_layers import ConfigError

PROTOCOLS = ("grpc", "http/protobuf")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


@dataclass(frozen=True, kw_only=True)
class TracingSettings:
    enabled: bool = False
    endpoint: str = ""  # the traces endpoint, as the exporter of `protocol` wants it
    protocol: str = "grpc"
    sampler: str = "parentbased_always_on"
    sampler_ratio: float = 1.0  # for the traceidratio samplers
    service_name: str = ""  # OTEL_SERVICE_NAME; "" lets the sidecar name itself <agent>-sidecar


def from_environ(env: Mapping[str, str]) -> TracingSettings:
    """The tracing settings the OTEL_* variables in `env` ask for; ConfigError names a bad one."""
    sampler = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower() or "parentbased_always_on"
    if sampler not in SAMPLERS:
        raise ConfigError(f"OTEL_TRACES_SAMPLER: must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    ratio = _ratio(env.get("OTEL_TRACES_SAMPLER_ARG", ""), sampler)
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    ).strip()
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: the sidecar exports with {' or '.join(PROTOCOLS)}, got {protocol!r}"
        )
    endpoint = _endpoint(env, protocol)
    disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    no_exporter = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none"
    return TracingSettings(
        enabled=bool(endpoint) and not disabled and not no_exporter,
        endpoint=endpoint,
        protocol=protocol,
        sampler=sampler,
        sampler_ratio=ratio,
        service_name=env.get("OTEL_SERVICE_NAME", "").strip(),
    )


def _ratio(text: str, sampler: str) -> float:
    if not text.strip():
        return 1.0
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG: the {sampler} sampler needs a ratio from 0 to 1, got {text!r}")
    return ratio


def _endpoint(env: Mapping[str, str], protocol: str) -> str:
    """The traces endpoint: the signal's own variable as given; the general one as given for
    gRPC and with /v1/traces appended for HTTP (as the OTLP exporter specification says)."""
    own = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if own:
        return own
    general = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not general or protocol == "grpc":
        return general
    return general.rstrip("/") + "/v1/traces"
