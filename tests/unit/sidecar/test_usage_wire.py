"""Usage as the sidecars read it off the wire: bounded, and "nothing reported" stays None."""

from __future__ import annotations

from meshwarden.sidecar import usage
from meshwarden.usage import Usage
from meshwarden.v1 import receipts_pb2


def test_usage_round_trips_and_an_empty_one_is_none() -> None:
    reported = Usage(model="gpt-4o", input_tokens=10, output_tokens=2, cost_micro_usd=77)
    assert usage.from_proto(usage.to_proto(reported)) == reported
    assert usage.from_proto(receipts_pb2.Usage()) is None
    assert usage.from_proto(None) is None and usage.to_proto(None) is None


def test_a_long_model_name_is_cut() -> None:
    read = usage.from_proto(receipts_pb2.Usage(model="m" * 500, cost_micro_usd=1))
    assert read is not None and len(read.model) == usage.MAX_MODEL_CHARS
