"""The demo's last part: usage, outcomes, a session's timeline and the cost table.

Four tickets of workflow "refund-desk", each its own session: two the support agent resolves,
one whose refund the policy refuses (support reports the session failed), and one the
customer abandons (the demo, as frontdesk, reports it). Every agent calls its model through its
sidecar's model gateway, which measures the usage: the cost tables come from those receipts. Once the sidecars have shipped their receipts, the demo prints what an
operator would see, with the real commands: the sessions, one session's timeline and tree,
and the cost tables by agent and by model.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from meshwarden.client import Client
from meshwarden.demo.operator_flags import operator_flags
from meshwarden.errors import MeshError
from meshwarden.supervise import Child, meshwarden_argv

if TYPE_CHECKING:
    from meshwarden.demo.scenario import Narrator

WORKFLOW: Final = "refund-desk"
# ticket id -> (what the customer wrote, duplicate charge in cents or 0, the outcome expected, its
# calls: agent calls, the model call each agent that ran made, and support reading the ticket
# through the MCP tool tickets.read_ticket)
TICKETS: Final = {
    "T-2001": ("I was charged twice for my plan this month", 1299, "succeeded", 7),
    "T-2002": ("how do I reset my password, the login page loops", 0, "succeeded", 5),
    "T-2003": ("charged twice for the annual plan, please refund", 15000, "failed", 6),
}
ABANDONED: Final = "T-2004"
RECEIPTS_WAIT_S: Final = 30.0  # shipping backs off while the registry was down a moment ago


async def sessions_and_costs(client: Client, registry: Child, workdir: Path, n: Narrator) -> None:
    n.section("Usage and outcomes: four tickets of workflow refund-desk, each its own session")
    for ticket_id, (text, cents, expected, _) in TICKETS.items():
        args: dict[str, object] = {"ticket_id": ticket_id, "customer_id": "C42", "text": text}
        if cents:
            args["charged_twice_cents"] = cents
        try:
            result = await client.invoke(
                "support.resolve_ticket", args, session_id=f"ticket-{ticket_id}", workflow_id=WORKFLOW, timeout=10
            )
        except MeshError as err:
            (n.ok if expected == "failed" else n.fail)(f"{ticket_id}: {err.kind}; support reported the session failed")
            continue
        n.ok(f"{ticket_id}: resolved: {result.value['resolution']}")
    await client.invoke(
        "kb.search", {"query": "cancel my order"}, session_id=f"ticket-{ABANDONED}", workflow_id=WORKFLOW, timeout=5
    )
    await client.report_outcome(f"ticket-{ABANDONED}", "abandoned", "the customer left the chat")
    n.ok(f"{ABANDONED}: the customer left; frontdesk reported the session abandoned")

    flags = operator_flags(registry, workdir)
    n.say("waiting for the sidecars to ship their receipts to the registry ...")
    missing = await _receipts_arrived(flags)
    if missing:
        n.fail(
            f"the registry did not hold every call of the {WORKFLOW} sessions within {RECEIPTS_WAIT_S:.0f} s: {missing}"
        )
        return
    n.section("What the operator sees: sessions, one session's timeline, and what it all cost")
    await _show(n, ["sessions", "list", "--workflow", WORKFLOW, *flags])
    await _show(n, ["session", "show", "ticket-T-2001", *flags])
    await _show(n, ["costs", "--by", "agent", "--since", "15m", *flags])
    await _show(n, ["costs", "--by", "model", "--since", "15m", *flags])


async def _receipts_arrived(flags: list[str]) -> str:
    """ "" once every call of every ticket is in the registry and every session has its
    outcome; else what is still missing."""
    expected = {f"ticket-{t}": (outcome, calls) for t, (_, _, outcome, calls) in TICKETS.items()}
    expected[f"ticket-{ABANDONED}"] = ("abandoned", 2)  # kb.search and kb's model call
    deadline = time.monotonic() + RECEIPTS_WAIT_S
    missing = "no answer from the registry"
    while time.monotonic() < deadline:
        argv = meshwarden_argv("sessions", "list", "--workflow", WORKFLOW, "--output", "json", *flags)
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            seen = {s["session_id"]: (s["state"], s["calls"]) for s in json.loads(done.stdout)}
            if seen == expected:
                return ""
            missing = f"expected (state, calls) {expected}, the registry has {seen}"
        else:
            missing = done.stderr.strip()
        await asyncio.sleep(0.5)
    return missing


async def _show(n: Narrator, args: list[str]) -> None:
    """Runs one real command and prints all it printed (the registry flags left out of the echo)."""
    shown = (
        [a for a in args if not a.startswith("--registry")][: args.index("--registry")]
        if "--registry" in args
        else args
    )
    n.say("$ meshwarden " + " ".join(shown))
    done = await asyncio.to_thread(subprocess.run, meshwarden_argv(*args), capture_output=True, text=True, timeout=60)
    for line in done.stdout.splitlines():
        n.say(f"  {line}")
    if done.returncode != 0:
        n.fail(f"meshwarden {' '.join(shown)} exited {done.returncode}: {done.stderr.strip()}")
