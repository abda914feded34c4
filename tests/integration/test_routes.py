"""Weighted version routes through real processes: `meshwarden route set`, the watch stream,
and a session that stays on its version until that version dies."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import pytest

import meshwarden
from meshwarden.supervise import meshwarden_argv
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable

pytestmark = pytest.mark.integration


async def route_cli(mesh: LocalMesh, *args: str) -> str:
    done = await route_cli_run(mesh, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def route_cli_run(mesh: LocalMesh, *args: str) -> subprocess.CompletedProcess[str]:
    assert mesh.registry is not None
    done = await asyncio.to_thread(
        subprocess.run,
        meshwarden_argv(
            "route",
            *args,
            "--registry",
            mesh.registry_address,
            "--ca-pin",
            mesh.registry.addresses["ca_fingerprint"],
            "--operator-token-file",
            str(mesh.registry_data_dir / "operator.token"),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done


async def version_of(client: meshwarden.Client, session_id: str = "") -> str:
    result = await client.invoke("echo", {"text": "hi"}, timeout=5, session_id=session_id or None)
    return result.version


async def until_new_sessions_go_to(client: meshwarden.Client, version: str) -> None:
    """Waits until the caller's sidecar applied the route (watch lag): 10 fresh sessions in a row."""
    streak = 0
    for _ in range(200):
        streak = streak + 1 if await version_of(client, uuid.uuid4().hex) == version else 0
        if streak >= 10:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"new sessions never settled on {version}")


async def test_weighted_routes_and_session_pinning(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    old_side, _ = await mesh.pair("echoer", "1.0.0")
    await mesh.pair("echoer", "2.0.0")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo", {"text": "hi"})
        for _ in range(100):  # both versions are in the caller's catalog
            if {await version_of(client) for _ in range(20)} == {"1.0.0", "2.0.0"}:
                break
            await asyncio.sleep(0.05)

        misspelled = await route_cli_run(mesh, "set", "ecoh", "--weights", "1.0.0=100")
        assert misspelled.returncode == 2 and "did you mean echo?" in misspelled.stderr
        unseen = await route_cli_run(mesh, "set", "echo", "--weights", "1.0.0=90,3.0.0=10")
        assert unseen.returncode == 2 and "version 3.0.0; live versions: 1.0.0, 2.0.0" in unseen.stderr
        assert "route for echo set to 1.0.0=90,3.0.0=10" in await route_cli(
            mesh, "set", "echo", "--weights", "1.0.0=90,3.0.0=10", "--force"
        )
        out = await route_cli(mesh, "set", "echo", "--weights", "1.0.0=100,2.0.0=0")
        assert "route for echo set to 1.0.0=100,2.0.0=0" in out
        await until_new_sessions_go_to(client, "1.0.0")
        assert {await version_of(client) for _ in range(30)} == {"1.0.0"}  # no session: by weight too
        assert await version_of(client, "long-session") == "1.0.0"
        assert "echo" in await route_cli(mesh, "list")

        await route_cli(mesh, "set", "echo", "--weights", "1.0.0=0,2.0.0=100")
        await until_new_sessions_go_to(client, "2.0.0")
        assert {await version_of(client, "long-session") for _ in range(10)} == {"1.0.0"}  # pinned

        old_side.process.kill()  # no deregistration: the catalog still lists it until its lease ends
        await old_side.process.wait()
        assert await version_of(client, "long-session") == "2.0.0"  # moved, no error
        assert {await version_of(client, "long-session") for _ in range(10)} == {"2.0.0"}

        await route_cli(mesh, "clear", "echo")
        assert "no routes" in await route_cli(mesh, "list")
    assert "session long-session moved echo from version 1.0.0" in caller.stderr_text()
