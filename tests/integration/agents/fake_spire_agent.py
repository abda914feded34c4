"""A stand-in for a SPIRE agent: serves the SPIFFE Workload API on a Unix socket, with SVIDs
for one SPIFFE ID signed by a CA directory, and rotates them every --rotate-every-s.

SPIRE cannot be installed here, so the Workload API path is tested against this: the wire
format is the SPIFFE Workload API's (the `spiffe` package's own workload.proto stubs), the
client on the other side is the real `spiffe.X509Source`. It prints a ready line once
serving and one line per rotation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from meshwarden.clock import SystemClock
from meshwarden.ready import announce_ready
from meshwarden.registry.issuer import Issuer
from meshwarden.sidecar.workload_api_server import SvidFeed, serve

parser = argparse.ArgumentParser()
parser.add_argument("--ca-dir", required=True, type=Path)
parser.add_argument("--spiffe-id", required=True)
parser.add_argument("--socket", required=True, type=Path)
parser.add_argument("--ttl-s", type=float, default=3600)
parser.add_argument("--rotate-every-s", type=float, default=0, help="0: never")
options = parser.parse_args()


async def main() -> None:
    issuer = Issuer.load(options.ca_dir, SystemClock())
    feed = SvidFeed(issuer.issue_between(options.spiffe_id, time.time() - 60, time.time() + options.ttl_s))
    server = await serve(feed, options.socket)
    announce_ready("fake-spire-agent", socket=f"unix://{options.socket}", not_after=str(feed.svid.not_after))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        if options.rotate_every_s > 0:
            try:
                await asyncio.wait_for(stop.wait(), options.rotate_every_s)
            except TimeoutError:
                now = time.time()
                await feed.publish(issuer.issue_between(options.spiffe_id, now - 60, now + options.ttl_s))
                sys.stdout.write(json.dumps({"event": "rotated", "not_after": feed.svid.not_after}) + "\n")
                sys.stdout.flush()
        else:
            await stop.wait()
    await server.stop(grace=0.5)


asyncio.run(main())
