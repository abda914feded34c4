"""A bare aiohttp relay, the floor under the model gateway: it forwards POST bodies to one
upstream with a fixed Authorization header, streaming answers through, and decides nothing.

    python benchmarks/http_relay.py --upstream http://127.0.0.1:PORT --key KEY

benchmarks/model_gateway.py runs it beside the sidecar: gateway - relay is what the gateway's
own work (policy, receipts, usage, the stages) costs per call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import aiohttp
from aiohttp import web


async def serve(upstream: str, key: str) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        async with session.post(upstream + request.path, data=body, headers=headers) as answer:
            if answer.headers.get("Content-Type", "").startswith("text/event-stream"):
                response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await response.prepare(request)
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
            return web.Response(status=answer.status, body=await answer.read(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(json.dumps({"event": "ready", "component": "http-relay", "listen": f"{host}:{port}"}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await session.close()
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--key", required=True)
    options = parser.parse_args()
    try:
        asyncio.run(serve(options.upstream, options.key))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
