"""The model call's last hop: the provider, with the sidecar's key, then the fallbacks.

Model routing put the chain to try in `call.model.chain` (the requested model, then its
fallbacks from models.json). Each is tried in turn while the previous one failed in a way
another provider may not: a connection that could not be made, HTTP 429 or 5xx, all before
any byte of the answer reached the client. A provider's 4xx (a malformed request, a context
too long) is the request's fault and goes back to the client as the provider said it (keys
redacted): another provider would refuse it too. Nothing is retried at the same provider:
the fallback is the retry, and a timeout ends the call (the deadline stage's, or the
provider's `timeout_s`), since a request that timed out may have been billed.

One circuit breaker per provider endpoint (a BreakerBoard keyed by base URL): a provider
that keeps failing is skipped at once, straight to the fallback, until its breaker lets a
trial through.

Usage is measured here from the provider's answer, priced at the catalog's prices of the
model that answered, and put on the Reply (and in the call's ModelOutcome, for a call that ends
without one). A stream is relayed
event by event as it arrives; when it ends early (the client went away, a kill switch, the
deadline, the provider cut it) the `finally` still measures what was streamed, so the call is
charged for what it used: the provider's own figures where they came (Anthropic's input comes
first, in `message_start`), else the output counted from the streamed text and the input
estimated from the request's text (model_wire/prompt_estimate.py); the receipt says which
figures are estimates.

What goes upstream: the provider's key (never the agent's token, which stays at the gateway),
content-type, the Anthropic version and beta headers the client chose, and the body with the
upstream model name and the output cap the call runs with.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Final

import pybreaker

from meshwarden.errors import BadPayload, ProviderRefused, ProvidersUnavailable, Unreachable
from meshwarden.policy_bundle.model_catalog import ModelCatalog, ModelEntry, Provider
from meshwarden.sidecar.call import Call, Reply
from meshwarden.sidecar.hops.http1_client import HttpClientError, Response
from meshwarden.sidecar.hops.upstream import Upstream
from meshwarden.sidecar.model_call import ModelApi, ModelOutcome, ModelRequest
from meshwarden.sidecar.model_wire import anthropic, openai
from meshwarden.sidecar.model_wire.measured import Measured, StreamMeter
from meshwarden.sidecar.model_wire.prompt_estimate import estimated_prompt_tokens
from meshwarden.sidecar.model_wire.sse import SseSplitter, event_data
from meshwarden.sidecar.provider_credentials import ProviderCredentials, redact
from meshwarden.sidecar.stages.breaker import BreakerBoard
from meshwarden.usage import Usage

MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024


class ProviderFailed(Unreachable):
    """One provider could not answer (connection, 429, 5xx): the next in the chain may."""

    kind = "provider_failed"


class Send:
    def __init__(
        self,
        upstream: Upstream,
        credentials: ProviderCredentials,
        breakers: BreakerBoard,
        catalog: Callable[[], ModelCatalog],
        monotonic: Callable[[], float],
    ) -> None:
        self._upstream, self._credentials, self._breakers = upstream, credentials, breakers
        self._catalog, self._monotonic = catalog, monotonic

    async def __call__(self, call: Call) -> Reply:
        request = call.model
        if request is None or not request.chain:
            raise BadPayload(f"{call.capability} reached the provider hop without a model route (a sidecar fault)")
        outcome = call.record.model = ModelOutcome()
        catalog = self._catalog()
        tried: list[str] = []
        first = request.chain[0]
        for entry in request.chain:
            provider = catalog.providers.get(entry.provider)
            if provider is None:  # a bundle swapped in after routing no longer declares it
                tried.append(f"{entry.provider}/{entry.name}: no longer declared in the active bundle's models.json")
                continue
            outcome.provider, outcome.attempts = provider.name, outcome.attempts + 1
            call.record.attempt = outcome.attempts  # receipts and spans count attempts as for agent calls
            key = f"provider:{provider.base_url}"
            if not self._breakers.allows(key):
                tried.append(f"{provider.name}/{entry.name}: circuit open after repeated failures")
                continue
            try:
                with self._breakers.breaker(key).calling():  # records the outcome once the await ends
                    reply = await self._attempt(call, request, entry, provider, outcome)
            except ProviderFailed as err:
                self._breakers.record(key, failed=True)
                tried.append(f"{provider.name}/{entry.name}: {err.message}")
                continue
            except pybreaker.CircuitBreakerError:
                tried.append(f"{provider.name}/{entry.name}: circuit open after repeated failures")
                continue
            self._breakers.record(key, failed=False)
            if entry is not first:
                outcome.fallback_from = f"{first.provider}/{first.name}"
            return reply
        raise ProvidersUnavailable(call.capability, tried)

    async def _attempt(
        self, call: Call, request: ModelRequest, entry: ModelEntry, provider: Provider, outcome: ModelOutcome
    ) -> Reply:
        api_key = await self._credentials.key(provider.name, provider.credential)
        path, body = _upstream_request(request, entry)
        headers = {"Content-Type": "application/json", **request.passthrough_headers}
        if provider.api == "anthropic":
            headers["x-api-key"] = api_key
            headers.setdefault("anthropic-version", anthropic.API_VERSION)
        else:
            headers["Authorization"] = f"Bearer {api_key}"
        try:
            response = await self._upstream.post(
                provider.base_url + path, body, headers, ca_file=provider.ca_file, timeout_s=provider.timeout_s
            )
        except HttpClientError as exc:
            raise ProviderFailed(f"could not reach {provider.base_url} ({exc})") from None
        async with response:
            if response.status != 200:
                await self._refuse(response, provider)
            if request.stream and request.sink is not None:
                return await self._relay(call, request, entry, provider, outcome, response)
            try:
                raw = await response.read(MAX_ANSWER_BYTES)
            except HttpClientError as exc:
                raise ProviderFailed(f"answered HTTP 200 but its answer did not arrive whole ({exc})") from None
            try:
                answer = json.loads(raw)
            except ValueError:
                raise ProviderFailed("answered HTTP 200 with a body that is not JSON") from None
            measured = _measured(request.api, answer if isinstance(answer, dict) else {})
            usage = _settle(call, entry, outcome, measured)
            return Reply(result=raw, instance_id="", agent=provider.name, version=measured.model, usage=usage)

    async def _refuse(self, response: Response, provider: Provider) -> None:
        status = response.status
        try:
            raw = await response.read(1024 * 1024)
        except HttpClientError:
            raw = b""
        text = redact(raw.decode("utf-8", "replace"), self._credentials.known_keys())
        if status == 429 or status >= 500:
            raise ProviderFailed(f"answered HTTP {status}{_short(text)}")
        if status in (401, 403):  # the sidecar's key is refused: another provider may still answer
            raise ProviderFailed(f"refused the sidecar's key (HTTP {status}){_short(text)}")
        raise ProviderRefused(provider.name, status, text.encode(), _message_of(text))

    async def _relay(
        self,
        call: Call,
        request: ModelRequest,
        entry: ModelEntry,
        provider: Provider,
        outcome: ModelOutcome,
        response: Response,
    ) -> Reply:
        sink = request.sink
        assert sink is not None  # checked by the caller; narrows the type
        meter = _meter(request)
        splitter = SseSplitter()
        finished = False
        await sink.open()
        try:
            async for chunk in response.chunks():
                # The events that arrived together leave together: one write, not one per event.
                passed = [event for event in splitter.feed(chunk) if meter.observe(event_data(event))]
                if passed:
                    await sink.send(b"".join(passed))
            finished = not splitter.rest.strip()
        except (HttpClientError, OSError, ValueError):
            finished = False  # the provider cut the stream: charge what came
        finally:
            measured = meter.measured()
            if measured.input_estimated:
                measured = replace(measured, input_tokens=estimated_prompt_tokens(request.api, request.body))
            outcome.stream_cut = not finished or not measured.complete
            usage = _settle(call, entry, outcome, measured)
        return Reply(result=b"", instance_id="", agent=provider.name, version=measured.model, usage=usage)


def _upstream_request(request: ModelRequest, entry: ModelEntry) -> tuple[str, bytes]:
    if request.api is ModelApi.ANTHROPIC_MESSAGES:
        return anthropic.PATH, anthropic.upstream_body(request.body, entry.upstream_model, request.max_output_tokens)
    body = openai.upstream_body(request.api, request.body, entry.upstream_model, request.max_output_tokens)
    return openai.PATHS[request.api], body


def _measured(api: ModelApi, answer: Mapping[str, object]) -> Measured:
    return anthropic.measured(answer) if api is ModelApi.ANTHROPIC_MESSAGES else openai.measured(api, answer)


def _meter(request: ModelRequest) -> StreamMeter:
    if request.api is ModelApi.ANTHROPIC_MESSAGES:
        return anthropic.MessagesStreamMeter()
    if request.api is ModelApi.OPENAI_RESPONSES:
        return openai.ResponsesStreamMeter()
    return openai.ChatStreamMeter(openai.client_asked_usage(request.body))


def _settle(call: Call, entry: ModelEntry, outcome: ModelOutcome, measured: Measured) -> Usage:
    """The call's usage at the answering model's prices, into the record for the reporting stages."""
    cost = entry.prices.cost_micro_usd(measured.input_tokens, measured.output_tokens, measured.cached_input_tokens)
    usage = Usage(
        model=(measured.model or entry.name)[:128],
        input_tokens=measured.input_tokens,
        output_tokens=measured.output_tokens,
        cost_micro_usd=cost,
    )
    outcome.response_model = measured.model
    outcome.cached_input_tokens = measured.cached_input_tokens
    outcome.input_estimated, outcome.output_estimated = measured.input_estimated, measured.output_estimated
    outcome.usage = usage
    return usage


def _message_of(text: str) -> str:
    """The provider's own error message (both shapes keep it at error.message)."""
    try:
        document = json.loads(text)
    except ValueError:
        return text[:500]
    error = document.get("error") if isinstance(document, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else text[:500]


def _short(text: str) -> str:
    message = _message_of(text).strip()
    return f": {message[:300]}" if message else ""
