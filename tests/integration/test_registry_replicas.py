"""Several registry addresses (issue 18, item 1; client side): sidecars and the CLI take a
comma-separated --registry (and --registry-mtls), use the first replica that answers and say
which one they passed over. Two registries cannot share one SQLite store, so the second
address here is the live registry and the first a port nobody listens on."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from meshwarden.local_mesh import meshwarden_argv
from tests.integration.mesh import LocalMesh

pytestmark = pytest.mark.integration


def _dead_address() -> str:
    """A loopback port with nobody listening: bound, then closed (refused from then on)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


async def _until(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.2)


async def test_the_cli_uses_the_next_replica_and_says_so(mesh: LocalMesh) -> None:
    assert mesh.registry is not None
    dead, live = _dead_address(), mesh.registry.addresses["listen"]
    process = await asyncio.create_subprocess_exec(
        *meshwarden_argv(
            "agents",
            "list",
            "--registry",
            f"{dead},{live}",
            "--ca-pin",
            mesh.registry.addresses["ca_fingerprint"],
            "--operator-token-file",
            str(mesh.registry_data_dir / "operator.token"),
            "--output",
            "json",
        ),  # fmt: skip
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert f"registry replica {dead} unreachable" in err.decode() and f"using {live}" in err.decode()
    assert out.decode().lstrip().startswith("[")


async def test_a_sidecar_uses_the_next_replica_and_says_so(mesh: LocalMesh, tmp_path: Path) -> None:
    assert mesh.registry is not None
    dead_tls, dead_mtls = _dead_address(), _dead_address()
    live_tls, live_mtls = mesh.registry.addresses["listen"], mesh.registry.addresses["mtls"]
    side = await mesh.sidecar(
        "billing",
        "--registry-mtls",
        f"{dead_mtls},{live_mtls}",
        registry=f"{dead_tls},{live_tls}",
        data_dir=tmp_path / "billing",
    )
    await mesh.agent(side)

    async def listed() -> bool:
        return any(i.agent == "billing" for i in await mesh.list_instances())

    await _until("the agent registers through the live replica", listed)
    log = side.stderr_text()
    assert f"registry replica {dead_tls} unreachable" in log and f"using {live_tls}" in log  # enrolment
    assert f"registry replica {dead_mtls} is unreachable; moving to {live_mtls}" in log  # the mTLS link
