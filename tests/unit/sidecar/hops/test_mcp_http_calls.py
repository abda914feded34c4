"""The POST path's answer: the result relayed as the server wrote it, only when its span is certain."""

from __future__ import annotations

import json

from meshwarden.sidecar.hops.mcp_http_calls import relayed_result


def test_a_plain_answer_is_relayed_byte_for_byte() -> None:
    result = b'{"content":[{"type":"text","text":"ticket 1: \\"late\\" {braces}"}],"isError":false}'
    answer = relayed_result(b'{"jsonrpc":"2.0","id":7,"result":' + result + b"}\n", 7)
    assert answer is not None and answer.result == result and not answer.is_error


def test_the_tool_s_own_failure_is_read_from_the_result() -> None:
    answer = relayed_result(b'{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}', 1)
    assert answer is not None and answer.is_error


def test_text_beyond_ascii_keeps_its_bytes() -> None:
    result = json.dumps({"content": [{"type": "text", "text": "reçu 49 € ✓"}]}, ensure_ascii=False).encode()
    answer = relayed_result(b'{"jsonrpc":"2.0","id":2,"result":' + result + b"}", 2)
    assert answer is not None and answer.result == result


def test_any_other_layout_is_left_to_the_general_reading() -> None:
    for raw in (
        b'{"jsonrpc":"2.0","id":3,"result":{"content":[]},"extra":1}',  # a key after the result
        b'{"jsonrpc":"2.0","id":3,"result":{"content":[]},"result":{"x":1}}',  # a second result
        b'{"jsonrpc":"2.0","id":4,"result":{"content":[]}}',  # another request's id
        b'{"id":3,"jsonrpc":"2.0","result":{"content":[]}}',  # keys in another order
        b'{"jsonrpc":"2.0","id":3,"result":[1,2]}',  # not an object
        b'{"jsonrpc":"2.0","id":3,"result":{"content":[]',  # cut short
        b'{"jsonrpc":"2.0","id":3,"result":{"text":"\xff"}}',  # not UTF-8
    ):
        assert relayed_result(raw, 3) is None, raw
