"""What a model call carries through the pipeline besides the shared `Call` fields, and what
the provider hop learns about it for the reporting stages.

The edge (edges/model_http.py) reads the client's request once into a `ModelRequest`; model
routing adds the chain of catalog entries to try; the provider hop writes a `ModelOutcome`
into the call's record (which provider and model answered, cached tokens, a fallback, a
stream cut short, the usage measured), which tracing and receipts read once the call has ended.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from meshwarden.policy_bundle.model_catalog import ModelEntry
from meshwarden.usage import Usage


class ModelApi(enum.Enum):
    """The client API a call came in with; the provider is called with the same one."""

    OPENAI_CHAT = "openai.chat"
    OPENAI_RESPONSES = "openai.responses"
    OPENAI_EMBEDDINGS = "openai.embeddings"
    ANTHROPIC_MESSAGES = "anthropic.messages"

    @property
    def family(self) -> str:
        """The provider API style ("openai" or "anthropic") that serves it."""
        return "anthropic" if self is ModelApi.ANTHROPIC_MESSAGES else "openai"

    @property
    def operation(self) -> str:
        """`gen_ai.operation.name` of the OpenTelemetry GenAI conventions."""
        return "embeddings" if self is ModelApi.OPENAI_EMBEDDINGS else "chat"


class StreamSink(Protocol):
    """Where a streamed answer goes as it arrives: the client's HTTP response."""

    async def open(self) -> None:
        """Sends the response's status and headers (once; later calls do nothing)."""

    async def send(self, event: bytes) -> None:
        """Sends one server-sent event, as the provider framed it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRequest:
    api: ModelApi
    # The client's JSON body, parsed once by the edge; the hop sends a copy with the upstream
    # model name and the output cap applied. Read-only by convention.
    body: Mapping[str, object]
    stream: bool
    estimated_input_tokens: int
    max_output_tokens: int  # the cap the call runs with (0 for embeddings)
    provider: str  # the requested model's provider (kill switches by provider match it)
    task_id: str = ""
    attributed_to_agent_only: bool = False  # no session, workflow or task header came with it
    # Headers passed to the provider as they came (anthropic-version, anthropic-beta).
    passthrough_headers: Mapping[str, str] = field(default_factory=dict)
    sink: StreamSink | None = None  # set for streams
    # Set by model routing: the requested model and its fallbacks, in the order to try.
    chain: tuple[ModelEntry, ...] = ()


@dataclass(slots=True)
class ModelOutcome:
    """Written by the provider hop only."""

    provider: str = ""  # the provider of the last attempt
    response_model: str = ""  # as the provider named it
    cached_input_tokens: int = 0
    fallback_from: str = ""  # "provider/model" of the first attempt, when another one answered
    stream_cut: bool = False
    # The provider's own count never came (a stream cut short): these figures are the gateway's.
    input_estimated: bool = False
    output_estimated: bool = False
    attempts: int = 0
    # What the call consumed, as measured: also on the Reply when there is one, and here for a
    # call that ended without one (a stream cancelled by a kill switch, the deadline, the client).
    usage: Usage | None = None


def measured_usage(reply_usage: Usage | None, outcome: ModelOutcome | None) -> Usage | None:
    """A model call's usage: the Reply's, else what the provider hop measured before the call
    ended without a reply (so a cancelled stream is still charged and recorded)."""
    if reply_usage is not None:
        return reply_usage
    return outcome.usage if outcome is not None else None
