"""`meshwarden bundle init DIR --from-registry`: a starting bundle describing the agents and
capabilities the registry knows; run again on that directory, it adds what appeared since to
entities.json (keeping every entity a person edited) and raises the manifest's revision."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import grpc

from meshwarden.cli import exit_codes, mesh_inventory, registry_access
from meshwarden.policy_bundle.manifest import MANIFEST_FILE, parse_manifest, with_revision
from meshwarden.policy_bundle.mesh_starter import ENTITIES_FILE, MeshInventory, merged_entities, starter_files
from meshwarden.secure_files import write_atomically

COMMAND = "meshwarden bundle init"


def run(args: argparse.Namespace) -> int:
    try:
        access = registry_access.resolve(args, os.environ)
        view = asyncio.run(mesh_inventory.fetch(access))
    except registry_access.AccessError as exc:
        print(f"{COMMAND}: {exc}", file=sys.stderr)
        return exc.exit_code
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(COMMAND, err, access.address)
    directory: Path = args.directory
    mesh, latest = view.inventory(), view.bundles.latest
    if not mesh.agents:
        print(f"{COMMAND}: the registry knows no agents yet; start a sidecar and its agent first", file=sys.stderr)
        return exit_codes.FAILED
    if (directory / MANIFEST_FILE).exists():
        return _update(directory, mesh, access.trust.trust_domain, latest.revision)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        print(f"{COMMAND}: {directory} is not empty and holds no bundle (no {MANIFEST_FILE})", file=sys.stderr)
        return exit_codes.USAGE
    # The mesh runs one bundle: keep its name, and come after its latest revision.
    files = starter_files(mesh, access.trust.trust_domain, latest.name or "mesh", latest.revision + 1)
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path)
    print(
        f"described {len(mesh.agents)} agent(s) and {len(mesh.capabilities())} capability(ies) the registry knows; "
        f"next: meshwarden bundle build {directory}",
        file=sys.stderr,
    )
    return exit_codes.OK


def _update(directory: Path, mesh: MeshInventory, trust_domain: str, latest: int) -> int:
    """Adds the agents and capabilities entities.json lacks; raises the revision when it did,
    above both the directory's and the registry's latest (a push must be newer than both)."""
    entities_path, manifest_path = directory / ENTITIES_FILE, directory / MANIFEST_FILE
    try:
        existing = json.loads(entities_path.read_text()) if entities_path.exists() else []
        manifest_text = manifest_path.read_text()
        revision = parse_manifest(manifest_text).revision
    except (OSError, ValueError) as exc:
        print(f"{COMMAND}: cannot read the bundle in {directory}: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    if not isinstance(existing, list):
        print(f"{COMMAND}: {entities_path} is not a JSON list of entities", file=sys.stderr)
        return exit_codes.USAGE
    entities, added = merged_entities(existing, mesh, trust_domain)
    if not added:
        print(f"{entities_path} already lists every agent and capability the registry knows")
        return exit_codes.OK
    write_atomically(entities_path, (json.dumps(entities, indent=2) + "\n").encode(), mode=0o644)
    new_revision = max(revision, latest) + 1
    write_atomically(manifest_path, with_revision(manifest_text, new_revision).encode(), mode=0o644)
    for uid in added:
        print(f"added {uid}")
    print(f"{manifest_path}: revision {revision} -> {new_revision}; next: meshwarden bundle build {directory}")
    return exit_codes.OK
