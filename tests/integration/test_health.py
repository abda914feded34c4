"""Instance health through real processes: a failure rate opens a caller's breaker (ISOLATED in
its view) and the failing instance's own sidecar reports the same rate (ISOLATED, shown by
`meshwarden agents list`: the registry takes a report about an instance only from the
certificate that owns it), a slow instance is DEGRADED in its callers' view and gets less
traffic, a capability's default timeout applies to calls without a deadline, and a session
leaves an isolated version."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections import Counter

import grpc
import pytest

import meshwarden
from meshwarden import errors
from meshwarden.registry_client import registry_stub
from meshwarden.supervise import Child, meshwarden_argv
from meshwarden.v1 import catalog_pb2, registry_pb2, sidecar_pb2, sidecar_pb2_grpc
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable

pytestmark = pytest.mark.integration


async def agents_list_json(mesh: LocalMesh) -> list[dict[str, object]]:
    """`meshwarden agents list --output json`, run as the operator's CLI process."""
    assert mesh.registry is not None
    done = await asyncio.to_thread(
        subprocess.run,
        meshwarden_argv(
            "agents",
            "list",
            "--output",
            "json",
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
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, object]] = json.loads(done.stdout)
    return listed


async def sidecar_health(caller: Child) -> dict[str, catalog_pb2.InstanceHealth]:
    async with grpc.aio.insecure_channel(caller.addresses["listen"]) as channel:
        listed = await sidecar_pb2_grpc.SidecarStub(channel).ListCapabilities(
            sidecar_pb2.ListCapabilitiesRequest(), timeout=5
        )
    return {h.instance_id: h for h in listed.health}


async def both_seen(client: meshwarden.Client, capability: str, ids: set[str]) -> None:
    seen: set[str] = set()
    for _ in range(200):
        seen.add((await routable(client, capability, {})).instance_id)
        if seen == ids:
            return
    raise AssertionError(f"only {seen} of {ids} answered")


async def test_a_failure_rate_isolates_an_instance_and_agents_list_shows_it(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar(
        "frontdesk",
        *("--breaker-failures", "100", "--breaker-failure-rate", "0.4"),
        *("--breaker-window-s", "60", "--breaker-min-calls", "10", "--breaker-reset-s", "60"),
    )
    flaky = await mesh.sidecar(  # judging its own deliveries by the caller's rule
        "twin", *("--breaker-failure-rate", "0.4", "--breaker-window-s", "60", "--breaker-min-calls", "10")
    )
    await mesh.agent(flaky, "1.0.0", "--fail-every", "2")  # never two failures in a row
    flaky_id = flaky.addresses["instance_id"]
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")  # one success in the window
        outcomes: list[str] = []
        for _ in range(30):
            try:  # no idempotency key: no retries, each failure is seen
                await client.invoke("probe.flaky", {}, timeout=5, idempotent=False)
                outcomes.append("ok")
            except errors.CircuitOpen as err:
                outcomes.append("circuit_open")
                assert "45% failures over 60 s (5 of 11 calls)" in err.message
                break
            except errors.AgentFailed:
                outcomes.append("failed")
    # Consecutive counting (100) never opens it; 5 failures in 11 calls (45% >= 40%) do.
    assert outcomes == ["ok", "failed"] * 5 + ["circuit_open"]
    health = await sidecar_health(caller)
    assert health[flaky_id].state == catalog_pb2.HEALTH_STATE_ISOLATED
    assert health[flaky_id].reason == "45% failures over 60 s (5 of 11 calls)"
    assert f"circuit opened for instance {flaky_id}" in caller.stderr_text()

    for _ in range(100):  # the report reaches the registry within a second or two
        listed = {str(i["instance_id"]): i["health"] for i in await agents_list_json(mesh)}
        shown = listed[flaky_id]
        if isinstance(shown, dict) and shown["state"] == "ISOLATED":
            break
        await asyncio.sleep(0.2)
    assert shown == {
        "state": "ISOLATED",
        "reason": "45% of deliveries to its agent failed over 60 s (5 of 11 calls)",
        "reporters": 1,
        "updated_at": shown["updated_at"],
    }
    assert shown["updated_at"]


async def test_a_slow_instance_is_degraded_and_gets_less_traffic(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    fast, _ = await mesh.pair("twin")
    slow, _ = await mesh.pair("twin", "1.0.0", "--delay-s", "0.5")
    fast_id, slow_id = fast.addresses["instance_id"], slow.addresses["instance_id"]
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await both_seen(client, "echo", {fast_id, slow_id})
        answered: Counter[str] = Counter()

        async def caller_loop() -> None:
            for n in range(15):
                answered[(await client.invoke("echo", {"n": n}, timeout=10)).instance_id] += 1

        await asyncio.gather(*(caller_loop() for _ in range(4)))  # 60 calls, 4 in flight
    assert sum(answered.values()) == 60
    assert answered[slow_id] * 5 < answered[fast_id], answered  # P2C by peak-EWMA steers away from it

    health = await sidecar_health(caller)
    assert health[slow_id].state == catalog_pb2.HEALTH_STATE_DEGRADED
    assert re.fullmatch(r"echo: latency EWMA \d+ ms vs peers' median [\d.]+ ms", health[slow_id].reason)
    assert health[fast_id].state == catalog_pb2.HEALTH_STATE_HEALTHY
    # Latency against other instances is each caller's view: no instance sees its peers, and the
    # registry takes reports about an instance only from its own sidecar (sidecar.own_health).


async def mesh_health(mesh: LocalMesh) -> list[catalog_pb2.InstanceHealth]:
    """ListInstances' health, as an operator."""
    async with await mesh._operator_channel() as channel:
        reply = await registry_stub(channel).ListInstances(
            registry_pb2.ListInstancesRequest(), metadata=mesh._operator_metadata(), timeout=5
        )
    return list(reply.health)


async def test_a_capability_default_timeout_applies_when_the_caller_sets_none(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk", "--default-timeout-s", "30")
    await mesh.pair("timed")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")
        declared = await client.invoke("probe.deadline_default", {})  # no timeout: the capability's 7 s
        undeclared = await client.invoke("probe.deadline", {})  # no timeout: the sidecar's 30 s
        asked = await client.invoke("probe.deadline_default", {}, timeout=20)  # the caller's own wins
        with pytest.raises(errors.DeadlineExceeded) as info:  # keyed: retries could not outlive 0.5 s
            await client.invoke("probe.slow_default", {})
    assert 1.0 < declared.value["time_remaining"] <= 7.5  # gRPC rounds the timeouts it sends up
    assert 7.5 < undeclared.value["time_remaining"] <= 30.5
    assert 7.5 < asked.value["time_remaining"] <= 20.5
    left = re.search(r"\(([\d.]+) s left when sent\)", info.value.message)
    assert left is not None and float(left.group(1)) <= 0.5, info.value.message
    listed = {str(i["agent"]): i for i in await agents_list_json(mesh)}
    capabilities = listed["timed"]["capabilities"]
    assert isinstance(capabilities, list)
    assert {c["name"]: c["default_timeout_ms"] for c in capabilities}["probe.deadline_default"] == 7000


async def test_a_session_leaves_an_isolated_version_and_fails_clearly_when_none_is_left(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk", "--breaker-failures", "1", "--breaker-reset-s", "60")
    _, old_agent = await mesh.pair("echoer", "1.0.0")
    _, new_agent = await mesh.pair("echoer", "2.0.0")
    agents = {"1.0.0": old_agent, "2.0.0": new_agent}
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo", version="1.0.0")  # both versions in the caller's catalog
        await routable(client, "echo", version="2.0.0")
        first = (await client.invoke("echo", {}, timeout=5, session_id="s-iso")).version
        other = "2.0.0" if first == "1.0.0" else "1.0.0"
        await agents[first].kill()  # its sidecar stays: calls to it fail UNAVAILABLE, the breaker opens
        with pytest.raises(errors.PeerUnavailable):
            await client.invoke("echo", {}, timeout=5, session_id="s-iso", idempotent=False)
        moved = [(await client.invoke("echo", {}, timeout=5, session_id="s-iso")).version for _ in range(5)]
        assert moved == [other] * 5
        await agents[other].kill()
        with pytest.raises(errors.PeerUnavailable):
            await client.invoke("echo", {}, timeout=5, session_id="s-iso", idempotent=False)
        with pytest.raises(errors.NoHealthyInstance) as info:
            await client.invoke("echo", {}, timeout=5, session_id="s-iso", idempotent=False)
    assert f"session s-iso is on version {other}, whose instances are all isolated" in info.value.message
    assert f"session s-iso moved echo from version {first} (its instances failed or their circuits are open)" in (
        caller.stderr_text()
    )
