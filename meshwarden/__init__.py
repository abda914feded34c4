"""meshwarden: a service mesh for AI agents.

The agent SDK: `Agent` serves capabilities, `Client` and `SyncClient` call them through the
local sidecar, and `meshwarden.errors` holds the errors both raise.

The names below are imported on first use (PEP 562 `__getattr__`): every `meshwarden` CLI
command imports this package first, and most of them need neither grpc nor asyncio, which
the SDK's modules bring. `from meshwarden import Agent` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
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

# The module each public name lives in.
_HOMES: Final = {
    "Agent": "meshwarden.agent",
    "CallContext": "meshwarden.agent",
    "HandlerError": "meshwarden.agent",
    "Client": "meshwarden.client",
    "Result": "meshwarden.client",
    "SidecarUnreachable": "meshwarden.client",
    "SyncClient": "meshwarden.client",
    "MeshError": "meshwarden.errors",
    "Refused": "meshwarden.errors",
    "Unreachable": "meshwarden.errors",
    "Usage": "meshwarden.usage",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'meshwarden' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
