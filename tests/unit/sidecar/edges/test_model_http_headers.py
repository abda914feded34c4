"""sidecar.edges.model_http's pass-through headers (anthropic-version, anthropic-beta): what the
client chose reaches the provider as it is, and bytes that cannot go onto a request are a 400
at the edge rather than a sidecar fault in the provider hop."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from meshwarden.sidecar.edges.model_http import _passthrough
from meshwarden.sidecar.model_wire.measured import BadModelRequest


def test_the_chosen_headers_pass_and_no_others() -> None:
    headers = CIMultiDict(
        {"Anthropic-Beta": "tools-2024-05-16," + "b" * 300, "anthropic-version": "2023-06-01", "x-api-key": "k"}
    )
    assert _passthrough(headers) == {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": ("tools-2024-05-16," + "b" * 300)[:256],
    }


@pytest.mark.parametrize("value", ["a\udcffb", "caf\u00e9", "a\tb"])  # \udcff: how aiohttp hands over the byte 0xff
def test_a_value_that_is_not_printable_ascii_is_refused_naming_the_header(value: str) -> None:
    with pytest.raises(BadModelRequest, match="header anthropic-beta must be printable ASCII"):
        _passthrough(CIMultiDict({"anthropic-beta": value}))
