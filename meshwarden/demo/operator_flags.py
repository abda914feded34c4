"""The flags every operator command of the demo passes: where the registry is, the CA
fingerprint to pin, and the operator token the registry wrote into its data directory."""

from __future__ import annotations

from pathlib import Path

from meshwarden.supervise import Child


def operator_flags(registry: Child, workdir: Path) -> list[str]:
    return [
        "--registry",
        registry.addresses["listen"],
        "--ca-pin",
        registry.addresses["ca_fingerprint"],
        "--operator-token-file",
        str(workdir / "registry" / "operator.token"),
    ]
