"""The registry's web console: an operator's view of the mesh in a browser (agents and who
calls whom, sessions and their timelines, costs against budgets, approvals, kill switches,
tasks, bundle status, the audit log), served on its own port beside the gRPC ports.

    server.py       the aiohttp server: port, TLS, routes
    guard.py        who is logged in, the operator role and CSRF token for writes, headers
    doors.py        logging in (rate-limited, audited) and out
    logins.py       console logins in memory, with their expiry
    login_limits.py failed logins per address
    pages.py        one handler per view and per write
    reads.py        what each view shows, through the registry's domain objects
    actions.py      approve, deny, engage and lift kill switches, through the same logic as the RPCs
    traffic.py      who calls whom: rates, error rates, p99
    timeline.py     one session's calls as a tree
    render.py       Jinja2 with autoescaping, and the live part of a page
"""

from meshwarden.registry.console.reads import Sources
from meshwarden.registry.console.server import ConsoleBindError, ConsoleServer

__all__ = ["ConsoleBindError", "ConsoleServer", "Sources"]
