"""What `meshwarden check` gathers before judging (mesh_checks.py): the registry's view in one
connection, the clocks of admin ports (their HTTP Date header), and the modes of data
directories on this machine."""

from __future__ import annotations

import asyncio
import email.utils
import os
import stat
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from meshwarden.cli.mesh_checks import ClockReading, ExposedPath
from meshwarden.cli.mesh_inventory import MeshView
from meshwarden.cli.registry_access import RegistryAccess
from meshwarden.registry_client import registry_channel, registry_stub
from meshwarden.v1 import bundle_history_pb2, bundle_history_pb2_grpc, controls_pb2, controls_pb2_grpc, registry_pb2

TIMEOUT_S: Final = 10.0
ADMIN_TIMEOUT_S: Final = 3.0
SECRET_SUFFIXES: Final = (".key", ".token", ".db")  # private keys, operator token, databases (receipts)
DEFAULT_DATA_ROOT: Final = Path(".meshwarden")


@dataclass(frozen=True, slots=True)
class RegistryFacts:
    view: MeshView
    routes: registry_pb2.ListRoutesResponse
    kills: controls_pb2.ListKillsResponse
    isolations: controls_pb2.ListIsolationsResponse
    latest_entities: str  # entities.json of the latest bundle; "" when none was pushed


async def registry_facts(access: RegistryAccess) -> RegistryFacts:
    from meshwarden.policy_bundle.artifact import contents_of, decode

    metadata = access.metadata()
    async with registry_channel(access.address, access.trust) as channel:
        stub, controls = registry_stub(channel), controls_pb2_grpc.ControlsStub(channel)
        catalog, bundles, routes, kills, isolations = await asyncio.gather(
            stub.ListInstances(registry_pb2.ListInstancesRequest(), timeout=TIMEOUT_S, metadata=metadata),
            stub.ListBundleStatus(registry_pb2.ListBundleStatusRequest(), timeout=TIMEOUT_S, metadata=metadata),
            stub.ListRoutes(registry_pb2.ListRoutesRequest(), timeout=TIMEOUT_S, metadata=metadata),
            controls.ListKills(controls_pb2.ListKillsRequest(), timeout=TIMEOUT_S, metadata=metadata),
            controls.ListIsolations(controls_pb2.ListIsolationsRequest(), timeout=TIMEOUT_S, metadata=metadata),
        )
        entities = ""
        if bundles.latest.revision:
            latest: registry_pb2.PolicyBundle = await bundle_history_pb2_grpc.BundleHistoryStub(channel).GetBundle(
                bundle_history_pb2.GetBundleRequest(revision=bundles.latest.revision),
                timeout=TIMEOUT_S,
                metadata=metadata,
            )
            entities = contents_of(decode(latest.artifact)).entities_text
        return RegistryFacts(MeshView(catalog, bundles), routes, kills, isolations, entities)


def clock_reading(endpoint: str) -> ClockReading:
    """The admin port's clock against ours, from the Date header of GET /healthz (whole seconds)."""
    sent = time.time()
    try:
        with urllib.request.urlopen(f"http://{endpoint}/healthz", timeout=ADMIN_TIMEOUT_S) as reply:  # noqa: S310
            date = reply.headers.get("Date", "")
    except (urllib.error.URLError, OSError) as exc:
        return ClockReading(endpoint, None, str(getattr(exc, "reason", exc)))
    received = time.time()
    if not date:
        return ClockReading(endpoint, None, "no Date header")
    theirs = email.utils.parsedate_to_datetime(date).timestamp()
    # The header truncates to the second: their clock read somewhere in [theirs, theirs + 1).
    return ClockReading(endpoint, theirs + 0.5 - (sent + received) / 2)


def default_data_dirs(root: Path = DEFAULT_DATA_ROOT) -> list[Path]:
    """The data directories the README's layout puts under ./.meshwarden, those that exist."""
    found = [root / "registry", root / "keys"]
    sidecars = root / "sidecars"
    if sidecars.is_dir():
        found += sorted(p for p in sidecars.iterdir() if p.is_dir())
    return [p for p in found if p.is_dir()]


def exposed_paths(directory: Path) -> list[ExposedPath]:
    """The directory itself when group or others may enter it, and every private-looking file
    (keys, tokens, databases) beneath it that they may read."""
    exposed: list[ExposedPath] = []
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        exposed.append(ExposedPath(str(directory), mode))
    for dirpath, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(dirpath) / name
            if path.suffix in SECRET_SUFFIXES or name.endswith(SECRET_SUFFIXES):
                file_mode = stat.S_IMODE(path.lstat().st_mode)
                if file_mode & 0o077:
                    exposed.append(ExposedPath(str(path), file_mode))
    return exposed
