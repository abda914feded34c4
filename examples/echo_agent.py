"""The smallest meshwarden agent: serves `echo`, answering with what it got and who answered.

meshwarden sidecar run --agent echo --listen 127.0.0.1:7410 --app 127.0.0.1:7412 ...
python examples/echo_agent.py --sidecar 127.0.0.1:7410 --listen 127.0.0.1:7412 --version 1.0.0
meshwarden call --sidecar 127.0.0.1:7410 echo '{"hello": "mesh"}'
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import meshwarden

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--sidecar", default="127.0.0.1:7410", help="the sidecar's local API")
parser.add_argument("--listen", default="127.0.0.1:7412", help="this agent's callback endpoint (the sidecar's --app)")
parser.add_argument("--version", default="1.0.0", help="this agent's semantic version")
parser.add_argument("--announce", action="store_true", help="print a JSON ready line on stdout once registered")
options = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s echo: %(message)s")

agent = meshwarden.Agent(version=options.version, sidecar=options.sidecar, listen=options.listen)


@agent.capability(
    "echo",
    input_schema={"type": "object"},
    output_schema={
        "type": "object",
        "required": ["echo", "instance_id", "version"],
        "properties": {"echo": {}, "instance_id": {"type": "string"}, "version": {"type": "string"}},
    },
)
async def echo(args: Any, ctx: meshwarden.CallContext) -> dict[str, Any]:
    """Answers with the arguments it got, and which instance and version answered."""
    return {"echo": args, "instance_id": agent.instance_id, "version": agent.version, "caller": ctx.caller_agent}


agent.run(announce=options.announce)
