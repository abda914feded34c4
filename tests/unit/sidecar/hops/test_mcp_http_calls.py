"""The POST path: the result relayed as the server wrote it, only when its span is certain;
calls over one kept-alive connection to a real server, JSON or event-stream answers, the
server's JSON-RPC errors, and an answer too large to relay."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from meshwarden.sidecar.hops import mcp_http_calls
from meshwarden.sidecar.hops.http1_client import BodyTooLarge
from meshwarden.sidecar.hops.mcp_http_calls import CallAnswer, HttpToolCaller, relayed_result


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


async def _server(
    answer: web.Response | None = None, sse: bool = False
) -> tuple[web.AppRunner, str, list[bytes], list[object]]:
    """A real HTTP server answering every POST; the bodies it was sent."""
    bodies: list[bytes] = []
    peers: list[object] = []  # each request's client address: one connection, one address

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        bodies.append(body)
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        if answer is not None:
            return answer
        request_id = json.loads(body)["id"]
        result = b'{"content":[{"type":"text","text":"ok"}],"isError":false}'
        message = b'{"jsonrpc":"2.0","id":%d,"result":%s}' % (request_id, result)
        if sse:
            note = b'{"jsonrpc":"2.0","method":"notifications/progress","params":{}}'
            return web.Response(
                body=b"data: " + note + b"\n\ndata: " + message + b"\n\n", content_type="text/event-stream"
            )
        return web.Response(body=message, content_type="application/json")

    app = web.Application()
    app.router.add_post("/mcp", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/mcp", bodies, peers


@pytest.mark.parametrize("sse", [False, True])
async def test_calls_share_one_connection_and_read_json_or_an_event_stream(sse: bool) -> None:
    runner, url, bodies, peers = await _server(sse=sse)
    caller = HttpToolCaller(url, {"X-Api-Key": "secret"})
    try:
        for _ in range(3):
            answer = await caller.call("read_ticket", b'{"ticket_id":1}', 5.0)
            assert answer == CallAnswer(b'{"content":[{"type":"text","text":"ok"}],"isError":false}', False)
    finally:
        await caller.close()
        await runner.cleanup()
    assert [json.loads(b)["params"]["arguments"] for b in bodies] == [{"ticket_id": 1}] * 3
    assert len(set(peers)) == 1  # kept alive between calls


async def test_an_error_answer_and_an_answer_too_large_are_the_server_s() -> None:
    refused = b'{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"ticket_id must be an integer"}}'
    runner, url, _, _ = await _server(web.Response(body=refused, content_type="application/json"))
    caller = HttpToolCaller(url, {})
    try:
        assert await caller.call("read_ticket", b"{}", 5.0) == CallAnswer(
            b"", False, -32602, "ticket_id must be an integer"
        )
    finally:
        await caller.close()
        await runner.cleanup()
    runner, url, _, _ = await _server(web.Response(body=b"x" * 2048, content_type="application/json"))
    caller = HttpToolCaller(url, {})
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(mcp_http_calls, "MAX_ANSWER_BYTES", 1024)
            with pytest.raises(BodyTooLarge):
                await caller.call("read_ticket", b"{}", 5.0)
    finally:
        await caller.close()
        await runner.cleanup()
