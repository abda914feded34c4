"""The model gateway's edge: OpenAI- and Anthropic-compatible routes on the agent's HTTP
gateway, so an unchanged client (the official `openai` and `anthropic` packages, and what is
built on them) calls its models through its sidecar.

    POST /v1/chat/completions   OpenAI chat completions, streaming or not
    POST /v1/responses          OpenAI Responses API, streaming or not
    POST /v1/embeddings         OpenAI embeddings
    POST /v1/messages           Anthropic Messages, streaming or not
    GET  /v1/models             the catalog's models, in OpenAI's list shape

Each request becomes one `Call` of kind "model" (the model name as the client asked is its
capability; its body the payload) and goes through `pipeline.model`. Before that, the edge
works out what the budget and policy stages need: the output cap the call runs with (the
client's, lowered to the model's `max_output_tokens`, or the model's `default_max_tokens`
when the client sets none), the estimated input tokens, and the worst-case cost at the
catalog's prices (`Call.cost_estimate_micro_usd`).

Attribution comes from headers the SDK's call context sets on the clients it hands a handler
(`x-meshwarden-session-id`, `-workflow-id`, `-task-id`, `-parent-call-id`, and at a session's
entry point `-on-behalf-of`: who it is started for, and `-session-labels`: what it works on,
`repository=acme/api,resource=db-prod`, meshwarden.session_labels); a call without
them is attributed to the agent alone, and its receipt says so. A call made for a task also
carries the task's signed fencing token (`x-meshwarden-task-token`, sidecar.edges.task_claim):
the task_fence stage refuses it once the token is stale ("lease lost", a 403). A policy's
@approval holds a model call as it holds any other: `x-meshwarden-approval-wait: none` and
`x-meshwarden-approval-id` work as on the local API (sidecar/wire/approval_headers.py).

Every error is answered in the shape of the API the client called (`{"error": {message, type,
param, code}}` for OpenAI, `{"type": "error", "error": {type, message}}` for Anthropic),
mapped from the mesh's typed errors here and only here.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Final

import grpc
from aiohttp import web

from meshwarden import session_labels, strict_json
from meshwarden.errors import MeshError, PayloadTooLarge, ProviderRefused
from meshwarden.policy_bundle.model_catalog import ModelCatalog
from meshwarden.session_labels import Labels
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Caller, Handler
from meshwarden.sidecar.edges.gateway_http import RouteFamily
from meshwarden.sidecar.edges.task_claim import BadTaskToken, task_token
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.model_call import ModelApi, ModelRequest
from meshwarden.sidecar.model_wire import anthropic, openai
from meshwarden.sidecar.model_wire.measured import BYTES_PER_TOKEN_WORST_CASE, BadModelRequest, RequestFacts
from meshwarden.sidecar.wire import approval_headers

log = logging.getLogger(__name__)

SESSION_HEADER: Final = "x-meshwarden-session-id"
WORKFLOW_HEADER: Final = "x-meshwarden-workflow-id"
TASK_HEADER: Final = "x-meshwarden-task-id"
PARENT_CALL_HEADER: Final = "x-meshwarden-parent-call-id"
ON_BEHALF_OF_HEADER: Final = "x-meshwarden-on-behalf-of"  # who a session is started for, at its entry point
_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}")
_PASSTHROUGH: Final = ("anthropic-version", "anthropic-beta")
_STATUS: Final = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.FAILED_PRECONDITION: 403,  # a kill switch: the same call fails until it is lifted
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,  # a budget; an oversized payload is 413 (below)
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
}


class ModelGateway:
    def __init__(
        self,
        handler: Handler,
        policy: PolicyHolder,
        local: LocalAgent,
        monotonic: Callable[[], float],
        timeout_s: float,
    ) -> None:
        self._handler, self._policy, self._local = handler, policy, local
        self._monotonic, self._timeout_s = monotonic, timeout_s

    def families(self) -> list[RouteFamily]:
        """Anthropic's route first: the gateway picks the first family whose prefix matches."""
        return [
            RouteFamily(
                "anthropic",
                "/v1/messages",
                [web.post("/v1/messages", self._messages)],
                lambda status, message: _error(ModelApi.ANTHROPIC_MESSAGES, status, message),
            ),
            RouteFamily(
                "openai",
                "/v1/",
                [
                    web.post("/v1/chat/completions", self._chat),
                    web.post("/v1/responses", self._responses),
                    web.post("/v1/embeddings", self._embeddings),
                    web.get("/v1/models", self._models),
                ],
                lambda status, message: _error(ModelApi.OPENAI_CHAT, status, message),
            ),
        ]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, ModelApi.OPENAI_CHAT)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, ModelApi.OPENAI_RESPONSES)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, ModelApi.OPENAI_EMBEDDINGS)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, ModelApi.ANTHROPIC_MESSAGES)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        catalog = self._catalog()
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": entry.provider}
            for name, entry in sorted(catalog.models.items())
        ]
        return web.json_response({"object": "list", "data": data})

    def _catalog(self) -> ModelCatalog:
        active = self._policy.active
        return active.models if active is not None else ModelCatalog(providers={}, models={})

    async def _serve(self, request: web.Request, api: ModelApi) -> web.StreamResponse:
        call_id = uuid.uuid4().hex
        sink: _SseSink | None = None
        try:
            raw = await request.read()
            call = self._to_call(request, api, raw, call_id)
            if call.model is not None and call.model.stream:
                sink = _SseSink(request)
                call = replace(call, model=replace(call.model, sink=sink))
            reply = await self._handler(call)
        except web.HTTPRequestEntityTooLarge:
            raise  # the gateway answers it, in this family's shape
        except MeshError as err:
            if sink is not None and sink.response is not None:
                return await sink.close()  # the status line is sent: the stream just ends
            return _error_of(api, err)
        except Exception:
            log.exception("model call %s failed in the sidecar", call_id)
            if sink is not None and sink.response is not None:
                return await sink.close()
            return _error(api, 500, f"sidecar fault; report call {call_id} to the sidecar's operator")
        if sink is not None:
            if sink.response is not None:
                return await sink.close()
            return _error(api, 502, "the provider ended the stream before it began")
        return web.Response(body=reply.result, content_type="application/json")

    def _to_call(self, request: web.Request, api: ModelApi, raw: bytes, call_id: str) -> Call:
        try:
            body = strict_json.loads(raw)  # no NaN, no nesting deep enough to exhaust the stack
        except ValueError as exc:
            raise BadModelRequest(f"the request body is not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise BadModelRequest("the request body must be a JSON object")
        facts = anthropic.read_request(body) if api is ModelApi.ANTHROPIC_MESSAGES else openai.read_request(api, body)
        if len(facts.model) > 128:
            raise BadModelRequest("the model name is over 128 characters; use a name from GET /v1/models", "model")
        session_id, workflow_id, task_id, parent, on_behalf_of = (
            _header_id(request.headers, name)
            for name in (SESSION_HEADER, WORKFLOW_HEADER, TASK_HEADER, PARENT_CALL_HEADER, ON_BEHALF_OF_HEADER)
        )
        try:
            token = task_token(request.headers)  # checked by the task_fence stage
        except BadTaskToken as exc:
            raise BadModelRequest(str(exc)) from None
        labels = _session_labels(request.headers)
        approval = approval_headers.from_metadata(
            [(h, request.headers.get(h, "")) for h in (approval_headers.WAIT_HEADER, approval_headers.ID_HEADER)]
        )
        entry = self._catalog().models.get(facts.model)
        estimated_input = math.ceil(len(raw) / BYTES_PER_TOKEN_WORST_CASE)
        max_output = _output_cap(
            api, facts, entry.default_max_tokens if entry else 0, entry.max_output_tokens if entry else 0
        )
        cost = entry.prices.cost_micro_usd(estimated_input, max_output) if entry is not None else None
        local = self._local
        return Call(
            call_id=call_id,
            capability=facts.model,
            payload=raw,
            caller=Caller(local.name, local.instance_id, local.spiffe_id),
            deadline=self._monotonic() + self._timeout_s,
            session_id=session_id,
            workflow_id=workflow_id,
            parent_call_id=parent,
            on_behalf_of=on_behalf_of,
            session_labels=labels,
            cost_estimate_micro_usd=cost,
            traceparent=request.headers.get("traceparent", "")[:256],
            tracestate=request.headers.get("tracestate", "")[:512],
            kind="model",
            task_token=token,
            approval_id=approval.approval_id,
            approval_wait=approval.wait,
            model=ModelRequest(
                api=api,
                body=body,
                stream=facts.stream,
                estimated_input_tokens=estimated_input,
                max_output_tokens=max_output,
                provider=entry.provider if entry is not None else "",
                task_id=task_id,
                attributed_to_agent_only=not (session_id or workflow_id or task_id),
                passthrough_headers=_passthrough(request.headers),
            ),
        )


def _output_cap(api: ModelApi, facts: RequestFacts, default: int, ceiling: int) -> int:
    if api is ModelApi.OPENAI_EMBEDDINGS:
        return 0
    asked = facts.max_output_tokens if facts.max_output_tokens is not None else default
    return min(asked, ceiling) if ceiling else asked


def _passthrough(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers a client chooses for its provider (`_PASSTHROUGH`), first 256 characters.
    They go onto the provider's request as they are, so only printable ASCII: aiohttp hands
    other bytes over as surrogates, which would fail the provider hop as a sidecar fault."""
    found: dict[str, str] = {}
    for name in _PASSTHROUGH:
        value = headers.get(name)
        if value is None:
            continue
        if not (value.isascii() and value.isprintable()):
            raise BadModelRequest(f"header {name} must be printable ASCII, got {value[:60]!r}")
        found[name] = value[:256]
    return found


def _session_labels(headers: Mapping[str, str]) -> Labels:
    """The session's free labels from x-meshwarden-session-labels; a bad one is the API's 400."""
    try:
        return session_labels.from_header(headers.get(session_labels.HEADER, ""))
    except session_labels.InvalidLabels as exc:
        raise BadModelRequest(exc.message) from None


def _header_id(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "").strip()
    if value and not _ID.fullmatch(value):
        raise BadModelRequest(
            f"header {name} must be 1-128 characters of letters, digits and _.:/@-, starting with a letter or "
            f"digit, got {value[:60]!r}"
        )
    return value


class _SseSink:
    """The client's event stream, opened when the provider's stream begins (so an error before
    that still gets a proper status and error body)."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self.response: web.StreamResponse | None = None

    async def open(self) -> None:
        if self.response is None:
            response = web.StreamResponse(
                status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await response.prepare(self._request)
            self.response = response

    async def send(self, event: bytes) -> None:
        assert self.response is not None  # opened by the hop before the first event
        await self.response.write(event)

    async def close(self) -> web.StreamResponse:
        assert self.response is not None
        try:
            await self.response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client is gone; its receipt already says how far the stream got
        return self.response


def _error_of(api: ModelApi, err: MeshError) -> web.Response:
    if isinstance(err, ProviderRefused) and err.body:
        return web.Response(status=err.http_status, body=err.body, content_type="application/json")
    status = 413 if isinstance(err, PayloadTooLarge) else _STATUS.get(err.status_code(), 500)
    param = err.param if isinstance(err, BadModelRequest) else ""
    return _error(api, status, err.message, param=param, code=err.kind)


def _error(api: ModelApi, status: int, message: str, *, param: str = "", code: str = "") -> web.Response:
    if api is ModelApi.ANTHROPIC_MESSAGES:
        body = anthropic.error_body(status, message)
    else:
        body = openai.error_body(status, message, param, code)
    return web.Response(status=status, body=body, content_type="application/json")
