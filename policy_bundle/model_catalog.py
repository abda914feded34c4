"""models.json: the providers and models a bundle lets agents call through their sidecar's
model gateway, checked once at build time and read again, unchanged, by every sidecar.

    {
      "providers": {
        "openai": {"api": "openai", "base_url": "https://api.openai.com/v1",
                   "credential": {"env": "OPENAI_API_KEY"}},
        "anthropic": {"api": "anthropic", "base_url": "https://api.anthropic.com",
                      "credential": {"file": "/etc/meshwarden/keys/anthropic"}, "ca_file": "..."}
      },
      "models": {
        "gpt-4o-mini": {"provider": "openai", "tier": "small", "context_tokens": 128000,
                        "default_max_tokens": 1024, "max_output_tokens": 16384,
                        "price_micro_usd_per_mtok": {"input": 150000, "output": 600000, "cached_input": 75000},
                        "fallbacks": ["gpt-4o-mini-azure"]}
      }
    }

Prices are integer millionths of a US dollar per million tokens, so a call's cost is exact
integer arithmetic. The bundle names WHERE a sidecar finds a provider's key (an environment
variable or a 0600 file on the sidecar's host), never the key itself: a signed bundle is
distributed to every sidecar and shown by `bundle show`. A model entry may send another name
upstream (`upstream_model`), so one model can be declared at two providers and one be the
other's fallback; a fallback must speak the same API, since clients do not change shape
mid-call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from meshwarden.policy_bundle.errors import BundleInvalid, SourceProblem

MODELS_FILE: Final = "models.json"
Api = Literal["openai", "anthropic"]
APIS: Final[tuple[Api, ...]] = ("openai", "anthropic")
NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}")
NAME_RULE: Final = "1-128 characters of letters, digits and ._:/@-, starting with a letter or digit"
ENV_NAME: Final = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
MAX_PRICE: Final = 10**12  # micro-USD per million tokens: a million dollars per million tokens
MAX_TOKENS: Final = 10**8
_PROVIDER_KEYS: Final = frozenset({"api", "base_url", "credential", "ca_file", "timeout_s"})
_MODEL_KEYS: Final = frozenset(
    {
        "provider",
        "upstream_model",
        "tier",
        "context_tokens",
        "default_max_tokens",
        "max_output_tokens",
        "price_micro_usd_per_mtok",
        "fallbacks",
    }
)
_PRICE_KEYS: Final = frozenset({"input", "output", "cached_input"})
_Problem = Callable[[str, str], None]  # problem(key, message)


@dataclass(frozen=True, slots=True)
class Credential:
    """Where the sidecar reads a provider's key: exactly one of an env variable or a file."""

    env: str = ""
    file: str = ""

    def __str__(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    api: Api
    base_url: str  # no trailing slash; the API's paths are appended ("/chat/completions", "/v1/messages")
    credential: Credential
    ca_file: str = ""  # "" verifies against the system's trust store
    timeout_s: float = 120.0


@dataclass(frozen=True, slots=True)
class Prices:
    """Micro-USD per million tokens."""

    input: int
    output: int
    cached_input: int

    def cost_micro_usd(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> int:
        """What tokens cost, rounded up to the micro-dollar (a budget never under-reserves)."""
        cached = min(cached_input_tokens, input_tokens)
        total = (input_tokens - cached) * self.input + cached * self.cached_input + output_tokens * self.output
        return -(-total // 1_000_000)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str  # as clients ask for it
    provider: str
    upstream_model: str  # as the provider is asked for it
    tier: str
    context_tokens: int
    default_max_tokens: int  # applied when the client sets no output cap
    max_output_tokens: int  # a client's larger cap is lowered to this
    prices: Prices
    fallbacks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ModelCatalog:
    providers: Mapping[str, Provider]
    models: Mapping[str, ModelEntry]

    def api_of(self, model: ModelEntry) -> Api:
        return self.providers[model.provider].api

    def chain(self, name: str) -> tuple[ModelEntry, ...]:
        """The model and its fallbacks, in the order they are tried (each model once)."""
        first = self.models.get(name)
        if first is None:
            return ()
        return (first, *(self.models[f] for f in first.fallbacks if f != name))


EMPTY: Final = ModelCatalog(providers={}, models={})


def parse_catalog(text: str) -> ModelCatalog:
    """The catalog in `text`, or BundleInvalid listing every problem with its line."""
    problems: list[SourceProblem] = []

    def problem(key: str, message: str) -> None:
        problems.append(SourceProblem(MODELS_FILE, _line_of(text, key), message))

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BundleInvalid([SourceProblem(MODELS_FILE, getattr(exc, "lineno", 1), f"not valid JSON: {exc}")]) from exc
    if not isinstance(data, dict) or set(data) - {"providers", "models"}:
        raise BundleInvalid([SourceProblem(MODELS_FILE, 1, 'models.json is an object with "providers" and "models"')])
    providers = {
        name: p for name, raw in _table(data, "providers", problem).items() if (p := _provider(name, raw, problem))
    }
    models = {name: m for name, raw in _table(data, "models", problem).items() if (m := _model(name, raw, problem))}
    for model in models.values():
        provider = providers.get(model.provider)
        if provider is None:
            problem(model.name, f"model {model.name}: provider {model.provider!r} is not declared under providers")
            continue
        for fallback in model.fallbacks:
            other = models.get(fallback)
            if other is None or fallback == model.name:
                problem(model.name, f"model {model.name}: fallback {fallback!r} must be another model declared here")
            elif other.provider in providers and providers[other.provider].api != provider.api:
                problem(
                    model.name,
                    f"model {model.name}: fallback {fallback} is served with the {providers[other.provider].api} "
                    f"API, {model.name} with the {provider.api} API; a fallback must speak the same API",
                )
    if problems:
        raise BundleInvalid(sorted(problems, key=lambda p: p.line))
    return ModelCatalog(providers=providers, models=models)


def _table(data: Mapping[str, object], key: str, problem: _Problem) -> dict[str, object]:
    raw = data.get(key, {})
    if not isinstance(raw, dict):
        problem(key, f"{key} must be an object of name -> declaration")
        return {}
    for name in raw:
        if not NAME.fullmatch(name):
            problem(name, f"{key} name {name[:80]!r} must be {NAME_RULE}")
    return {name: value for name, value in raw.items() if NAME.fullmatch(name)}


def _provider(name: str, raw: object, problem: _Problem) -> Provider | None:
    where = f"provider {name}"
    if not isinstance(raw, dict):
        problem(name, f"{where} must be an object with api, base_url and credential")
        return None
    for key in sorted(set(raw) - _PROVIDER_KEYS):
        problem(key, f"{where}: unknown key {key}; known keys: {', '.join(sorted(_PROVIDER_KEYS))}")
    api = raw.get("api")
    base_url = raw.get("base_url")
    ca_file = raw.get("ca_file", "")
    timeout_s = raw.get("timeout_s", 120)
    ok = True
    if api not in APIS:
        problem(name, f"{where}: api must be one of {', '.join(APIS)}, got {api!r}")
        ok = False
    if not isinstance(base_url, str) or not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", base_url):
        problem(name, f"{where}: base_url must be an http(s) URL such as https://api.openai.com/v1, got {base_url!r}")
        ok = False
    if not isinstance(ca_file, str) or (ca_file and not ca_file.startswith("/")):
        problem(name, f"{where}: ca_file must be an absolute path to a PEM file, got {ca_file!r}")
        ok = False
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not 0 < timeout_s <= 3600:
        problem(name, f"{where}: timeout_s must be a number of seconds from 0 to 3600, got {timeout_s!r}")
        ok = False
    credential = _credential(where, name, raw.get("credential"), problem)
    if not ok or credential is None or api not in APIS or not isinstance(base_url, str):
        return None
    api_name: Api = "openai" if api == "openai" else "anthropic"
    return Provider(name, api_name, base_url.rstrip("/"), credential, str(ca_file), float(timeout_s))


def _credential(where: str, name: str, raw: object, problem: _Problem) -> Credential | None:
    rule = (
        f'{where}: credential must be {{"env": "NAME"}} or {{"file": "/absolute/path"}}, naming where the '
        "sidecar reads the key (never the key itself)"
    )
    if not isinstance(raw, dict) or len(raw) != 1:
        problem(name, rule)
        return None
    env, file = raw.get("env"), raw.get("file")
    if isinstance(env, str) and ENV_NAME.fullmatch(env):
        return Credential(env=env)
    if isinstance(file, str) and file.startswith("/") and len(file) <= 4096:
        return Credential(file=file)
    problem(name, rule)
    return None


def _model(name: str, raw: object, problem: _Problem) -> ModelEntry | None:
    where = f"model {name}"
    if not isinstance(raw, dict):
        problem(name, f"{where} must be an object with provider, tier and price_micro_usd_per_mtok")
        return None
    for key in sorted(set(raw) - _MODEL_KEYS):
        problem(key, f"{where}: unknown key {key}; known keys: {', '.join(sorted(_MODEL_KEYS))}")
    provider, upstream, tier = raw.get("provider"), raw.get("upstream_model", name), raw.get("tier", "")
    fallbacks = raw.get("fallbacks", [])
    ok = True
    for key, value in (("provider", provider), ("upstream_model", upstream)):
        if not isinstance(value, str) or not NAME.fullmatch(value):
            problem(name, f"{where}: {key} must be {NAME_RULE}, got {value!r}")
            ok = False
    if not isinstance(tier, str) or len(tier) > 64:
        problem(name, f"{where}: tier must be a string of at most 64 characters, got {tier!r}")
        ok = False
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks) or len(fallbacks) > 8:
        problem(name, f"{where}: fallbacks must be a list of at most 8 model names, got {fallbacks!r}")
        ok = False
    counts = {
        key: _count(where, name, key, raw.get(key, default), problem)
        for key, default in (("context_tokens", 128_000), ("default_max_tokens", 1024), ("max_output_tokens", 8192))
    }
    prices = _prices(where, name, raw.get("price_micro_usd_per_mtok"), problem)
    if None in counts.values() or prices is None or not ok:
        return None
    default_max, max_out = counts["default_max_tokens"] or 0, counts["max_output_tokens"] or 0
    if default_max > max_out:
        problem(name, f"{where}: default_max_tokens {default_max} is over max_output_tokens {max_out}")
        return None
    return ModelEntry(
        name=name,
        provider=str(provider),
        upstream_model=str(upstream),
        tier=str(tier),
        context_tokens=counts["context_tokens"] or 0,
        default_max_tokens=default_max,
        max_output_tokens=max_out,
        prices=prices,
        fallbacks=tuple(fallbacks) if isinstance(fallbacks, list) else (),
    )


def _count(where: str, name: str, key: str, value: object, problem: _Problem) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS:
        problem(name, f"{where}: {key} must be a whole number of tokens from 1 to {MAX_TOKENS}, got {value!r}")
        return None
    return value


def _prices(where: str, name: str, raw: object, problem: _Problem) -> Prices | None:
    rule = (
        f'{where}: price_micro_usd_per_mtok must be {{"input": N, "output": N, "cached_input": N}}, whole '
        "millionths of a US dollar per million tokens (0.15 USD per million is 150000)"
    )
    if not isinstance(raw, dict) or set(raw) - _PRICE_KEYS or not {"input", "output"} <= set(raw):
        problem(name, rule)
        return None
    values: dict[str, int] = {}
    for key in _PRICE_KEYS:
        value = raw.get(key, raw.get("input"))  # no cached price: cached input costs what input does
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRICE:
            problem(name, rule)
            return None
        values[key] = value
    return Prices(input=values["input"], output=values["output"], cached_input=values["cached_input"])


def _line_of(text: str, key: str) -> int:
    """The first line where `"key"` appears; 1 if it does not (good enough to point at)."""
    needle = json.dumps(key)
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return 1


def model_entities(catalog: ModelCatalog) -> list[dict[str, object]]:
    """Cedar entities for the catalog's models: `Model::"<name>"` with what policies read."""
    return [
        {
            "uid": {"type": "Model", "id": m.name},
            "attrs": {
                "provider": m.provider,
                "tier": m.tier,
                "context_tokens": m.context_tokens,
                "input_micro_usd_per_mtok": m.prices.input,
                "output_micro_usd_per_mtok": m.prices.output,
            },
            "parents": [],
        }
        for m in catalog.models.values()
    ]
