"""The operator's questions 2, 7 and 10 on a registry over PostgreSQL, as real processes: a
session started for user:alice calls billing five times with the same arguments; the store
keeps who it was started for, its loop signals and its call facts as the receipts arrive, so
`sessions list --started-for`, `sessions suspect` and `changes` answer from them, and the
registry's meshwarden_sessions_suspect gauge counts it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import meshwarden
from meshwarden.supervise import meshwarden_argv
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable
from tests.integration.test_usage import until
from tests.postgres_cluster import Cluster, fresh_database

pytestmark = pytest.mark.integration

GAUGE_LINE = 'meshwarden_sessions_suspect{reason="repeating"} 1.0'


@pytest.fixture
async def mesh(tmp_path: Path, postgres_cluster: Cluster, postgres_template: str) -> AsyncIterator[LocalMesh]:
    local = LocalMesh(tmp_path)
    await local.start_registry("127.0.0.1:0", "", "--store", fresh_database(postgres_cluster, postgres_template))
    try:
        yield local
    finally:
        await local.close()
        print(local.logs())


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 -- a loopback test URL
        return str(response.read().decode())


async def test_a_looping_session_is_a_suspect_started_for_its_principal_and_counted_by_the_gauge(
    mesh: LocalMesh,
) -> None:
    top = await mesh.sidecar("frontdesk")
    await mesh.pair("billing", "2.4.0", "--work-as", "bill.work")
    async with meshwarden.Client(top.addresses["listen"]) as client:
        await routable(client, "bill.work", {})
        for _ in range(5):  # the same arguments five times: the default --repeats
            await client.invoke("bill.work", {"n": 1}, session_id="s-loop", on_behalf_of="user:alice", timeout=10)

    flags = ["--registry", mesh.registry_address, "--ca-pin", mesh.registry.addresses["ca_fingerprint"]]  # type: ignore[union-attr]
    env = {**os.environ, "MESHWARDEN_OPERATOR_TOKEN": mesh.operator_token()}

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, meshwarden_argv(*args, *flags), capture_output=True, text=True, env=env, timeout=60
        )

    async def suspect_found() -> bool:
        done = await cli("sessions", "suspect", "--reason", "repeating", "--output", "json")
        return done.returncode == 8 and any(s["session_id"] == "s-loop" for s in json.loads(done.stdout))

    await until(suspect_found, "s-loop's receipts reaching the registry and making it a suspect")
    suspects = await cli("sessions", "suspect", "--reason", "repeating", "--output", "json")
    [suspect] = json.loads(suspects.stdout)
    assert (suspect["max_repeats"], suspect["repeated_capability"], suspect["started_for"]) == (
        5,
        "bill.work",
        "user:alice",
    )
    listed = await cli("sessions", "list", "--started-for", "user:alice", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert [(s["session_id"], s["launched_by"]) for s in json.loads(listed.stdout)] == [("s-loop", "frontdesk")]
    nobody = await cli("sessions", "list", "--started-for", "user:mallory", "--output", "json")
    assert json.loads(nobody.stdout) == []
    changes = await cli("changes", "--output", "json")
    assert changes.returncode in (0, 8), changes.stderr
    assert isinstance(json.loads(changes.stdout), list)

    metrics = f"http://{mesh.registry.addresses['admin']}/metrics"  # type: ignore[union-attr]

    async def counted() -> bool:  # the registry counts every 15 s
        return GAUGE_LINE in await asyncio.to_thread(_get, metrics)

    await until(counted, "the gauge counting s-loop", within_s=30.0)
