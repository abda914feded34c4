"""Three registry replicas on one PostgreSQL (a throwaway cluster, tests/postgres_cluster), as
real processes: one CA for all, a real sidecar registered through one replica seen by a
watcher on another, registrations through two replicas reaching it in revision order, a kill
switch through one replica counted as enforced by the sidecar watching another, and the work
done once in the mesh (lease expiry) moving to another replica when the one doing it is
killed -9."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from meshwarden.local_mesh import sidecar_argv
from meshwarden.supervise import meshwarden_argv, start
from meshwarden.v1 import catalog_pb2, controls_pb2, controls_pb2_grpc, registry_pb2, sidecar_pb2, sidecar_pb2_grpc
from tests.integration.registry_process import RegistryProcess, start_registry
from tests.postgres_cluster import Cluster

pytestmark = pytest.mark.integration

HEARTBEAT_S = 0.5  # lease 1.25 s
HASH = "sha256:" + "e" * 64
CALLBACK_TOKEN = "replicas-test-callback-token-0123456789"
LEADER_LINE = "now runs the work done once in the mesh"


def _empty_database(cluster: Cluster, name: str) -> str:
    cluster.psql(f"DROP DATABASE IF EXISTS {name}")
    cluster.psql(f"CREATE DATABASE {name}")
    return cluster.url(name)


def _migrate(url: str) -> str:
    done = subprocess.run(
        [*meshwarden_argv(), "registry", "migrate", "--store", url],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
async def replicas(tmp_path: Path, postgres_cluster: Cluster) -> AsyncIterator[list[RegistryProcess]]:
    url = _empty_database(postgres_cluster, "replicas")
    assert "schema version 0 ->" in _migrate(url)
    started = await asyncio.gather(
        *(
            start_registry(
                tmp_path / f"r{n}",
                "--store",
                url,
                heartbeat_interval_s=HEARTBEAT_S,
                name=f"replica-{n}",
            )
            for n in range(3)
        )
    )
    try:
        yield list(started)
    finally:
        for replica in started:
            await replica.close_channels()
            await replica.child.stop()
            print(f"--- {replica.child.name}\n{replica.child.stderr_text()}")


def _instance(agent: str) -> catalog_pb2.Instance:
    return catalog_pb2.Instance(
        agent=agent,
        version="1.0.0",
        peer_address="127.0.0.1:7411",
        capabilities=[
            catalog_pb2.Capability(name=f"{agent}.run", input_schema_json='{"type":"object"}', schema_hash=HASH)
        ],
    )


async def _register(replica: RegistryProcess, agent: str) -> registry_pb2.RegisterResponse:
    reply: registry_pb2.RegisterResponse = await (await replica.stub(agent)).Register(
        registry_pb2.RegisterRequest(instance=_instance(agent)), timeout=10
    )
    return reply


async def _next_catalog_event(
    call: grpc.aio.UnaryStreamCall[registry_pb2.WatchRequest, registry_pb2.WatchEvent], timeout_s: float = 15.0
) -> registry_pb2.WatchEvent:
    while True:
        event = await asyncio.wait_for(call.read(), timeout_s)
        if not isinstance(event, registry_pb2.WatchEvent):
            pytest.fail("the watch stream ended")
        if event.WhichOneof("change") in ("upserted", "removed", "snapshot"):
            return event


def _leaders(replicas: list[RegistryProcess]) -> list[RegistryProcess]:
    return [r for r in replicas if r.child.running and LEADER_LINE in r.child.stderr_text()]


async def _until(condition: object, what: str, timeout_s: float = 20.0) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(poll(), timeout_s)
    except TimeoutError:
        pytest.fail(f"{what} did not happen within {timeout_s:g} s")


async def test_replicas_share_one_ca_one_catalog_in_order_and_hand_over_singleton_work(
    replicas: list[RegistryProcess], tmp_path: Path
) -> None:
    first, second, third = replicas
    assert len({r.child.addresses["ca_fingerprint"] for r in replicas}) == 1  # no replica minted its own CA

    watcher = (await second.stub("watcher")).Watch(registry_pb2.WatchRequest(since_revision=0))
    snapshot = await _next_catalog_event(watcher)
    assert snapshot.WhichOneof("change") == "snapshot"

    # A sidecar registered through the first replica is seen by a watcher on the second.
    keys = tmp_path / "bundle-keys"
    keys.mkdir()
    sidecar = await start(
        "sidecar-alpha",
        sidecar_argv("alpha", first.listen, tmp_path / "sidecar-alpha", keys),
        log_dir=tmp_path / "logs",
        health_address_key=None,  # no policy bundle yet: it serves no call, but it registers
    )
    try:
        async with grpc.aio.insecure_channel(sidecar.addresses["listen"]) as channel:  # loopback, as its agent
            await sidecar_pb2_grpc.SidecarStub(channel).RegisterAgent(
                sidecar_pb2.RegisterAgentRequest(
                    version="1.0.0",
                    capabilities=[catalog_pb2.Capability(name="alpha.run", input_schema_json='{"type":"object"}')],
                    callback_token=CALLBACK_TOKEN,
                ),
                timeout=10,
            )
        registered = await _next_catalog_event(watcher)
        assert registered.WhichOneof("change") == "upserted" and registered.upserted.agent == "alpha"
        assert registered.revision == snapshot.revision + 1
        # Registrations through the first and third replicas reach it too, in revision order.
        made = [await _register(third, "beta"), await _register(first, "gamma"), await _register(third, "epsilon")]
        seen = [await _next_catalog_event(watcher) for _ in made]
        expected = list(range(registered.revision + 1, registered.revision + 4))
        assert [e.revision for e in seen] == [r.revision for r in made] == expected
        assert [e.upserted.instance_id for e in seen] == [r.instance_id for r in made]
        # A kill switch through the third replica counts the sidecar watching the first.
        killed = await controls_pb2_grpc.ControlsStub(third.channel(None, mtls=False)).Kill(
            controls_pb2.KillRequest(
                scope_kind=controls_pb2.SCOPE_KIND_AGENT,
                scope_value="nobody",
                reason="replicas test",
                wait=duration_pb2.Duration(seconds=10),
            ),
            metadata=third.operator_metadata(),
            timeout=20,
        )
        assert (killed.enforcement.enforced, killed.enforcement.expected) == (1, 1), killed.enforcement
    finally:
        await sidecar.stop()
        print(sidecar.stderr_text())

    # Exactly one replica runs the work done once in the mesh; kill -9 it and another takes it over.
    await _until(lambda: len(_leaders(replicas)) == 1, "a replica taking the lead")
    (leader,) = _leaders(replicas)
    survivors = [r for r in replicas if r is not leader]
    await leader.close_channels()
    await leader.child.kill()
    await _until(lambda: len(_leaders(survivors)) == 1, "another replica taking the lead after kill -9")

    # ... and does it: an instance nobody renews expires, and a watcher on any survivor sees it go.
    own_watcher = survivors[1] if survivors[0] is second else survivors[0]
    watch = (await own_watcher.stub("watcher")).Watch(registry_pb2.WatchRequest(since_revision=0))
    await _next_catalog_event(watch)  # snapshot
    lapsing = await _register(survivors[0], "delta")
    events = [await _next_catalog_event(watch) for _ in range(2)]
    removed = [
        e for e in events if e.WhichOneof("change") == "removed" and e.removed.instance_id == lapsing.instance_id
    ]
    while not removed:
        event = await _next_catalog_event(watch)
        if event.WhichOneof("change") == "removed" and event.removed.instance_id == lapsing.instance_id:
            removed.append(event)
    assert removed[0].removed.reason == "lease_expired"
    watcher.cancel()
    watch.cancel()


async def test_a_replica_refuses_a_schema_newer_than_it_knows(tmp_path: Path, postgres_cluster: Cluster) -> None:
    url = _empty_database(postgres_cluster, "newer")
    _migrate(url)
    postgres_cluster.psql("UPDATE schema_version SET version = 99", "newer")
    done = subprocess.run(
        [
            *meshwarden_argv(),
            "registry",
            "serve",
            "--store",
            url,
            "--data-dir",
            str(tmp_path / "d"),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "schema version 99, newer than this registry understands" in done.stderr
    refused = subprocess.run(
        [*meshwarden_argv(), "registry", "migrate", "--store", url],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "newer than this meshwarden understands" in refused.stderr
