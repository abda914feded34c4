"""A real agent working tasks of kind "refund" with `@agent.task`: it waits `--work-s`, then
confirms its lease and appends one line (its instance, the task and its token) to
`--effects`, the side effect whose count the tests check. With `--call`, it first calls that
capability for the task (under its fencing token)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import meshwarden
from meshwarden.task_worker import TaskContext

parser = argparse.ArgumentParser()
parser.add_argument("--sidecar", required=True)
parser.add_argument("--listen", default="127.0.0.1:0")
parser.add_argument("--version", default="1.0.0")
parser.add_argument("--effects", required=True, type=Path)
parser.add_argument("--work-s", type=float, default=0.0)
parser.add_argument("--call", default="", help="a capability to call under the task's token before the effect")
options = parser.parse_args()

agent = meshwarden.Agent(version=options.version, sidecar=options.sidecar, listen=options.listen)


@agent.task("refund", poll_s=0.1)
async def refund(args: Any, ctx: TaskContext) -> dict[str, Any]:
    await asyncio.sleep(options.work_s)
    if options.call:  # a call for the task: its sidecar refuses it once the token is stale
        await ctx.invoke(options.call, {"n": args["ticket"]})
    await ctx.confirm_lease()  # raises LeaseLost when another holder has the task now
    with options.effects.open("a") as effects:
        effects.write(f"{agent.instance_id} {ctx.task_id} {ctx.fencing_token} {args['ticket']}\n")
    return {"refunded": args["ticket"], "token": ctx.fencing_token}


agent.run(announce=True)
