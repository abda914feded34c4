"""The meshwarden sidecar: runs beside one agent, on every call it makes and receives.

Run it with `meshwarden sidecar run`; the call path is the composition in sidecar/pipeline.py.
"""

from meshwarden.sidecar.app import serve
from meshwarden.sidecar.config import SidecarConfig, load

__all__ = ["SidecarConfig", "load", "serve"]
