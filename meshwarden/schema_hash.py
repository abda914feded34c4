"""The hash that names a capability's contract: sha256 over the canonical JSON of its input and
output schemas. Computed by the sidecar that registers a capability, and checked by the registry
and by Consul discovery, because other sidecars key their compiled validators by it: a hash that
did not match its schemas would let one agent's schema stand in for another's."""

from __future__ import annotations

import hashlib
import json


def schema_hash(input_schema: object, output_schema: object) -> str:
    """Equal contracts hash equal, whatever the key order or white space they were written with.
    An empty schema is {} ("any JSON value")."""
    canonical = json.dumps(
        {"input": input_schema, "output": output_schema}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
