"""The mesh on a real `consul agent -dev`, when a Consul binary is available: on PATH, or
named by CONSUL_BINARY. Without one these tests are skipped, and the skip says so.

The same scenarios as test_consul_discovery.py's fake, against the real thing: sidecars
register and route, a killed sidecar's instance goes critical and leaves routing, and a
clean stop deregisters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import meshwarden
from meshwarden.supervise import Child
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable
from tests.integration.test_consul_discovery import eventually, routing_view

pytestmark = pytest.mark.integration

CONSUL = os.environ.get("CONSUL_BINARY") or shutil.which("consul")
if CONSUL is None:
    pytest.skip(
        "no Consul binary: put `consul` on PATH or set CONSUL_BINARY to run the live Consul suite",
        allow_module_level=True,
    )


def _free_port() -> int:
    # `consul agent` cannot bind port 0 and report it, so a port is picked here; the short
    # race with another process taking it is accepted in this optional suite.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveConsul:
    def __init__(self, process: asyncio.subprocess.Process, http_port: int) -> None:
        self.process, self.http_port = process, http_port

    @property
    def env(self) -> dict[str, str]:
        return {"CONSUL_HTTP_ADDR": f"127.0.0.1:{self.http_port}"}

    def get(self, path: str) -> object:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as answer:
            return json.loads(answer.read() or b"null")


@pytest.fixture
async def live_consul(tmp_path: Path) -> AsyncIterator[LiveConsul]:
    http = _free_port()
    ports = {"dns": -1, "grpc": -1, "serf_lan": _free_port(), "serf_wan": -1, "server": _free_port()}
    config = tmp_path / "consul.json"
    config.write_text(
        json.dumps({"ports": {"http": http, **ports}, "bind_addr": "127.0.0.1", "client_addr": "127.0.0.1"})
    )
    log = (tmp_path / "consul.log").open("wb")
    assert CONSUL is not None
    process = await asyncio.create_subprocess_exec(
        CONSUL, "agent", "-dev", "-config-file", str(config), stdout=log, stderr=log, start_new_session=True
    )
    consul = LiveConsul(process, http)
    try:
        for _ in range(600):
            if process.returncode is not None or await asyncio.to_thread(_leader, consul):
                break
            await asyncio.sleep(0.05)
        if not await asyncio.to_thread(_leader, consul):
            raise RuntimeError(f"{CONSUL} agent -dev did not start:\n{(tmp_path / 'consul.log').read_text()[-2000:]}")
        yield consul
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        await process.wait()
        log.close()


def _leader(consul: LiveConsul) -> bool:
    try:
        return bool(consul.get("/v1/status/leader"))
    except OSError:
        return False


async def live_sidecar(mesh: LocalMesh, consul: LiveConsul, agent: str) -> Child:
    return await mesh.sidecar(
        agent, "--discovery", "consul", "--consul-check-ttl-s", "2", "--consul-wait-s", "5", env=consul.env
    )


def passing_ids(consul: LiveConsul, name: str) -> set[str]:
    entries = consul.get(f"/v1/health/service/{name}?passing=1")
    assert isinstance(entries, list)
    return {e["Service"]["ID"] for e in entries}


async def test_the_mesh_runs_on_a_real_consul_agent(mesh: LocalMesh, live_consul: LiveConsul) -> None:
    caller = await live_sidecar(mesh, live_consul, "frontdesk")
    doomed = await live_sidecar(mesh, live_consul, "billing")
    await mesh.agent(doomed, "1.0.0")
    survivor = await live_sidecar(mesh, live_consul, "billing")
    await mesh.agent(survivor, "1.0.0")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")
        ids = {doomed.addresses["instance_id"], survivor.addresses["instance_id"]}
        await eventually(lambda: passing_ids(live_consul, "billing") == ids, "both passing in Consul")
        service = live_consul.get(f"/v1/agent/service/{survivor.addresses['instance_id']}")
        assert isinstance(service, dict) and service["Meta"]["meshwarden-spiffe-id"].endswith("/agent/billing")

        await doomed.kill()
        await eventually(
            lambda: passing_ids(live_consul, "billing") == {survivor.addresses["instance_id"]}, "critical", attempts=600
        )
        await eventually(lambda: _view_is(caller, {survivor.addresses["instance_id"]}), "left routing", attempts=600)
        assert (await client.invoke("echo", {}, timeout=5)).instance_id == survivor.addresses["instance_id"]

    assert await survivor.stop() == 0
    services = live_consul.get("/v1/agent/services")
    assert isinstance(services, dict) and survivor.addresses["instance_id"] not in services


async def _view_is(side: Child, ids: set[str]) -> bool:
    return await routing_view(side) == ids
