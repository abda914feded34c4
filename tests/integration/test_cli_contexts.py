"""Operators' commands from a named context against a real registry: no flags, any working
directory, the CA pinned once (no trust-on-first-use warning after that), flags still win."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from meshwarden.supervise import meshwarden_argv
from tests.integration.mesh import LocalMesh


async def _cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        meshwarden_argv(*args),
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_context_pins_the_ca_once_and_serves_commands_from_any_directory(
    mesh: LocalMesh, tmp_path: Path
) -> None:
    assert mesh.registry is not None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"MESHWARDEN_CONTEXTS": str(tmp_path / "config" / "contexts.toml")}
    token = str(mesh.registry_data_dir / "operator.token")

    saved = await _cli(
        elsewhere, env, "context", "set", "local", "--registry", mesh.registry_address,
        "--pin-presented-ca", "--operator-token-file", token,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    assert mesh.registry.addresses["ca_fingerprint"] in saved.stdout
    assert (tmp_path / "config" / "contexts.toml").stat().st_mode & 0o777 == 0o600

    listed = await _cli(elsewhere, env, "agents", "list", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    json.loads(listed.stdout)
    assert "first use" not in listed.stderr, "a pinned CA is not trusted on first use again"

    table = await _cli(elsewhere, env, "context", "list")
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[:3] == ["CURRENT", "NAME", "REGISTRY"] and row.split()[:3] == [
        "*",
        "local",
        mesh.registry_address,
    ]
    as_json = json.loads((await _cli(elsewhere, env, "context", "list", "--output", "json")).stdout)
    assert as_json["current"] == "local" and as_json["contexts"]["local"]["registry"] == mesh.registry_address
    assert as_json["contexts"]["local"]["ca_pin"] == mesh.registry.addresses["ca_fingerprint"]
    current = await _cli(elsewhere, env, "context", "current")
    assert (current.returncode, current.stdout.strip()) == (0, "local")

    # A flag wins over the context: this registry address answers nothing.
    unreachable = await _cli(elsewhere, env, "agents", "list", "--registry", "127.0.0.1:1", "--log-level", "error")
    assert unreachable.returncode == 3, unreachable.stderr

    # An unknown context is refused, naming the known ones.
    unknown = await _cli(elsewhere, env, "agents", "list", "--context", "prod")
    assert unknown.returncode == 2 and "known: local" in unknown.stderr

    # A CA pin that does not match the registry is refused, not trusted.
    wrong = await _cli(elsewhere, env, "context", "set", "local", "--ca-pin", "sha256:" + "00" * 32)
    assert wrong.returncode == 0, wrong.stderr
    refused = await _cli(elsewhere, env, "agents", "list")
    assert refused.returncode == 2 and "refusing to trust it" in refused.stderr
