"""What every API style yields: the facts of a request, the usage measured in an answer, and
the refusal of a malformed request (typed, with the offending parameter)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from meshwarden.errors import BadPayload

# A token is about four bytes of English text; an estimate from bytes that must not fall
# short (budgets reserve it) divides by less.
BYTES_PER_TOKEN_WORST_CASE = 3
BYTES_PER_TOKEN_TYPICAL = 4


class BadModelRequest(BadPayload):
    """The client's request does not follow its API; `param` names the field (OpenAI's error
    shape carries it)."""

    kind = "bad_model_request"

    def __init__(self, message: str, param: str = "") -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class RequestFacts:
    model: str
    stream: bool
    max_output_tokens: int | None  # as the client set it; None when it set none


@dataclass(frozen=True, slots=True)
class Measured:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    model: str = ""  # the model the provider says answered
    # The provider's own count never came (a stream cut short). Input: the meter leaves it 0
    # and the hop estimates it from the request (model_wire/prompt_estimate.py). Output:
    # counted from the text that streamed.
    input_estimated: bool = False
    output_estimated: bool = False

    @property
    def complete(self) -> bool:
        """Every figure is the provider's own."""
        return not (self.input_estimated or self.output_estimated)


class StreamMeter(Protocol):
    """Reads a stream's events as they pass; says whether each goes on to the client."""

    def observe(self, data: bytes) -> bool: ...

    def measured(self) -> Measured: ...


def tokens_in_text(chars: int, deltas: int = 0) -> int:
    """Output counted from streamed text when the provider's usage never came: about four
    bytes a token, and at least one token for each delta that carried text (providers stream
    whole tokens, OpenAI about one per chunk)."""
    return max(-(-chars // BYTES_PER_TOKEN_TYPICAL), deltas)


def count(value: object) -> int:
    """A token count from a provider's JSON (anything else counts 0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
