"""The demo's refund worker: a support agent that works tasks of kind "refund" (`@agent.task`).
Its work takes `--work-s` and holds the process without yielding, as a long GC pause or a
blocking call would, so nothing heartbeats meanwhile; then it issues the refund through
billing.refund under the task's fencing token, which its sidecar refuses once the token is
stale. (The demo also freezes the first holder with SIGSTOP during that work.)"""

from __future__ import annotations

import argparse
import time
from typing import Any

import meshwarden
from meshwarden.task_worker import TaskContext


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sidecar", required=True, help="the sidecar's local API")
    parser.add_argument("--version", default="1.0.0", help="this agent's version")
    parser.add_argument("--gateway", default="", help="the sidecar's HTTP gateway (unused: no model calls)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="the callback endpoint")
    parser.add_argument("--work-s", type=float, default=0.0, help="how long the work before the refund takes")
    options = parser.parse_args()
    agent = meshwarden.Agent(version=options.version, sidecar=options.sidecar, listen=options.listen)

    @agent.task("refund", poll_s=0.2)
    async def refund(args: Any, ctx: TaskContext) -> dict[str, Any]:
        time.sleep(options.work_s)  # noqa: ASYNC251 - the pause the demo is about: no heartbeat meanwhile
        refunded = await ctx.invoke(
            "billing.refund", {"customer_id": args["customer_id"], "amount_cents": args["amount_cents"]}
        )
        return {"refund": refunded.value, "token": ctx.fencing_token}

    agent.run(announce=True)


if __name__ == "__main__":
    main()
