"""The bundle artifact: one JSON file holding the bundle's source files, their digests and
its signature. Built by `build`, signed by `sign`, checked by `verify`.

    {
      "format": "meshwarden-policy-bundle/1",
      "files":   {"manifest.toml": "<text>", "schema.cedarschema": "<text>",
                  "entities.json": "<text>", "policies/<name>.cedar": "<text>", ...},
      "digests": {"<same paths>": "sha256:<hex of the file's UTF-8 bytes>", ...},
      "signatures": [{"key_id": "...", "algorithm": "ed25519", "signature": "<base64>"}]
    }

Why this shape: the files stay as written (so errors and `bundle show` can point at lines,
and a diff between revisions reads like the git diff), one file moves through the registry
as opaque bytes, and only the standard library is needed to read it. The signature covers
the canonical JSON of {"format", "digests"} (sorted keys, no spaces, UTF-8), as OPA's
.signatures.json covers file hashes: a verifier checks the signature first, then each
file against its signed digest, so a changed file is reported by name with both hashes.
The SHA-256 of those same signed bytes is the bundle digest: one fingerprint per revision.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from meshwarden.policy_bundle.errors import BundleError, BundleUnreadable, bundle_label
from meshwarden.policy_bundle.manifest import MANIFEST_FILE, Manifest, parse_manifest
from meshwarden.policy_bundle.mcp_servers import MCP_SERVERS_FILE, NO_SERVERS, McpServers, parse_mcp_servers

FORMAT: Final = "meshwarden-policy-bundle/1"
SCHEMA_FILE: Final = "schema.cedarschema"
ENTITIES_FILE: Final = "entities.json"
POLICY_DIR: Final = "policies"
MODELS_FILE: Final = "models.json"  # optional: providers and models (policy_bundle/model_catalog.py)
ALGORITHM: Final = "ed25519"
POLICY_FILE: Final = re.compile(r"policies/[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.cedar")
_DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")
_KEYS: Final = {"format", "files", "digests", "signatures"}


@dataclass(frozen=True, slots=True)
class Signature:
    key_id: str
    algorithm: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Artifact:
    files: Mapping[str, str]  # path -> text, read-only by convention
    digests: Mapping[str, str]  # path -> "sha256:<hex>", as recorded (and signed)
    signatures: tuple[Signature, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyFile:
    path: str  # "policies/refunds.cedar"
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleContents:
    """What a bundle says, read from its files: what ActivePolicy is built from."""

    manifest: Manifest
    schema_text: str
    policy_files: tuple[PolicyFile, ...]  # sorted by path
    entities_text: str
    models_text: str = ""  # models.json, "" when the bundle declares no model
    mcp_servers: McpServers = NO_SERVERS  # from mcp_servers.toml, if the bundle has one


def file_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def signed_payload(digests: Mapping[str, str]) -> bytes:
    """The exact bytes a signature covers."""
    return _canonical({"format": FORMAT, "digests": dict(digests)})


def bundle_digest(digests: Mapping[str, str]) -> str:
    return "sha256:" + hashlib.sha256(signed_payload(digests)).hexdigest()


def unsigned(files: Mapping[str, str]) -> Artifact:
    return Artifact(files=dict(files), digests={path: file_digest(text) for path, text in files.items()})


def encode(artifact: Artifact) -> bytes:
    """The artifact file: sorted keys, two-space indent, one trailing newline (deterministic)."""
    document = {
        "format": FORMAT,
        "files": dict(artifact.files),
        "digests": dict(artifact.digests),
        "signatures": [
            {"key_id": s.key_id, "algorithm": s.algorithm, "signature": base64.b64encode(s.value).decode()}
            for s in artifact.signatures
        ],
    }
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False).encode() + b"\n"


def decode(raw: bytes) -> Artifact:
    """The artifact in `raw`, or BundleUnreadable saying what is wrong with it. Checks shape
    only: signatures and digests are verify's business."""
    try:
        document = json.loads(raw.decode(), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleUnreadable(
            f"not a meshwarden policy bundle (not JSON text: {exc}); build it with `meshwarden bundle build`"
        ) from exc
    if not isinstance(document, dict) or set(document) != _KEYS:
        raise BundleUnreadable(f"not a meshwarden policy bundle: expected a JSON object with keys {sorted(_KEYS)}")
    if document["format"] != FORMAT:
        raise BundleUnreadable(
            f"bundle format {document['format']!r} is not {FORMAT!r}; rebuild it with this meshwarden"
        )
    files = _string_map(document["files"], "files")
    digests = _string_map(document["digests"], "digests")
    for path in files:
        if not _known_path(path):
            raise BundleUnreadable(f"unexpected file {path!r} in bundle")
    for path, digest in digests.items():
        if not _DIGEST.fullmatch(digest):
            raise BundleUnreadable(f"digest of {path} is {digest!r}, not sha256:<64 hex digits>")
    return Artifact(files=files, digests=digests, signatures=_signatures(document["signatures"]))


def contents_of(artifact: Artifact) -> BundleContents:
    """The bundle's files, read; its manifest parsed (BundleInvalid if it is wrong)."""
    for required in (MANIFEST_FILE, SCHEMA_FILE, ENTITIES_FILE):
        if required not in artifact.files:
            raise BundleUnreadable(f"the bundle has no {required}")
    manifest = parse_manifest(artifact.files[MANIFEST_FILE])
    policies = tuple(
        PolicyFile(path, text) for path, text in sorted(artifact.files.items()) if POLICY_FILE.fullmatch(path)
    )
    return BundleContents(
        manifest=manifest,
        schema_text=artifact.files[SCHEMA_FILE],
        policy_files=policies,
        entities_text=artifact.files[ENTITIES_FILE],
        models_text=artifact.files.get(MODELS_FILE, ""),
        mcp_servers=(
            parse_mcp_servers(artifact.files[MCP_SERVERS_FILE]) if MCP_SERVERS_FILE in artifact.files else NO_SERVERS
        ),
    )


def label_of(artifact: Artifact) -> str:
    """ "bundle <name> rev <n>" if the manifest says so, else "bundle": for error messages
    about a bundle not yet trusted (the label is then only a claim)."""
    try:
        return parse_manifest(artifact.files.get(MANIFEST_FILE, "")).label
    except BundleError:
        return bundle_label("", None)


def _known_path(path: str) -> bool:
    return (
        path in (MANIFEST_FILE, SCHEMA_FILE, ENTITIES_FILE, MODELS_FILE, MCP_SERVERS_FILE)
        or POLICY_FILE.fullmatch(path) is not None
    )


def _signatures(raw: object) -> tuple[Signature, ...]:
    if not isinstance(raw, list):
        raise BundleUnreadable("signatures must be a JSON list")
    found: list[Signature] = []
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) != {"key_id", "algorithm", "signature"}:
            raise BundleUnreadable("each signature must be an object with key_id, algorithm and signature")
        key_id, algorithm, value = entry["key_id"], entry["algorithm"], entry["signature"]
        if not isinstance(key_id, str) or not isinstance(algorithm, str) or not isinstance(value, str):
            raise BundleUnreadable("signature key_id, algorithm and signature must be strings")
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BundleUnreadable(f"signature by key {key_id!r} is not base64") from exc
        found.append(Signature(key_id, algorithm, decoded))
    return tuple(found)


def _string_map(raw: object, name: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise BundleUnreadable(f"{name} must be a JSON object of strings")
    return dict(raw)


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"duplicate key {duplicate!r}")
    return dict(pairs)


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
