"""meshwarden: a service mesh for AI agents.

The agent SDK: `Agent` serves capabilities, `Client` and `SyncClient` call them through the
local sidecar, and `meshwarden.errors` holds the errors both raise.
"""

from meshwarden.agent import Agent, CallContext, HandlerError
from meshwarden.client import Client, Result, SidecarUnreachable, SyncClient
from meshwarden.errors import MeshError, Refused, Unreachable
from meshwarden.usage import Usage

__all__ = [
    "Agent",
    "CallContext",
    "Client",
    "HandlerError",
    "MeshError",
    "Refused",
    "Result",
    "SidecarUnreachable",
    "SyncClient",
    "Unreachable",
    "Usage",
]
