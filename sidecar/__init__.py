"""The meshwarden sidecar: runs beside one agent, on every call it makes and receives.

Run it with `meshwarden sidecar run`; the call path is the composition in sidecar/pipeline.py.
The names below load when first used (PEP 562): `meshwarden sidecar status` and `sidecar
config` read only the settings' table (sidecar/config.py), not the servers `run` needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshwarden.sidecar.app import serve
    from meshwarden.sidecar.config import SidecarConfig, load

__all__ = ["SidecarConfig", "load", "serve"]


def __getattr__(name: str) -> Any:
    if name == "serve":
        from meshwarden.sidecar.app import serve

        return serve
    if name in ("SidecarConfig", "load"):
        from meshwarden.sidecar import config

        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
