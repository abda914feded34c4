"""Usage on the wire: what a callee agent reports a call consumed, read from the agent's
Outcome or the peer's reply into `Reply.usage` (sidecar/wire), and written back out.

The agent's word is all there is, so the sidecar only keeps it bounded: a model name longer
than MAX_MODEL_CHARS is cut (receipts and cost tables group by it). A message without usage,
or with an all-empty one, is no usage at all (None), so receipts tell "not reported" apart.
"""

from __future__ import annotations

from meshwarden.usage import MAX_MODEL_CHARS, Usage
from meshwarden.v1 import receipts_pb2


def from_proto(message: receipts_pb2.Usage | None) -> Usage | None:
    if message is None:
        return None
    usage = Usage(
        model=message.model[:MAX_MODEL_CHARS],
        input_tokens=message.input_tokens,
        output_tokens=message.output_tokens,
        cost_micro_usd=message.cost_micro_usd,
    )
    return None if usage == Usage() else usage


def to_proto(usage: Usage | None) -> receipts_pb2.Usage | None:
    return None if usage is None else usage.to_proto()
