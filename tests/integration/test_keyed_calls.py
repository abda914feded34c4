"""A keyed call runs once at its callee even when its caller gives up: the delivery goes on
without the caller, a retry joins it or gets its result, and a key whose outcome cannot be
known (the agent died mid-call) is refused as in doubt rather than run again.

One mesh for the module: a registry, the caller's sidecar (`frontdesk`) and `ledger` (a
sidecar and its probe agent). probe.hold counts its runs per tag and holds each until
probe.release frees the tag, so "the handler outlives the caller's deadline" is no race.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

import meshwarden
from meshwarden import errors
from meshwarden.supervise import Child
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

GIVE_UP_S = 2.0  # the caller's deadline for a call the agent holds: it always passes


@dataclass
class Keyed:
    mesh: LocalMesh
    client: meshwarden.Client
    ledger: Child  # the callee's sidecar
    agent: Child  # its probe agent; a test that kills it starts the next one here


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def keyed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Keyed]:
    mesh = LocalMesh(Path(tmp_path_factory.mktemp("keyed")))
    await mesh.start_registry()
    try:
        caller = await mesh.sidecar("frontdesk")
        ledger, agent = await mesh.pair("ledger")
        async with meshwarden.Client(caller.addresses["listen"]) as client:
            await routable(client, "probe.held")
            yield Keyed(mesh, client, ledger, agent)
    finally:
        await mesh.close()


async def _held(client: meshwarden.Client) -> dict[str, int]:
    return dict((await client.invoke("probe.held", {}, timeout=5)).value["held"])  # type: ignore[index]


async def _handed_over(client: meshwarden.Client, tag: str) -> None:
    """Returns once the agent has started the held call `tag` (it may reach it after its caller left)."""
    for _ in range(200):
        if (await _held(client)).get(tag):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the held call {tag} never reached the agent")


async def _abandoned(client: meshwarden.Client, key: str) -> None:
    """A keyed call to probe.hold whose caller gives up at its deadline, after the agent began it."""
    with pytest.raises(errors.DeadlineExceeded):
        await client.invoke("probe.hold", {"tag": key}, idempotency_key=key, timeout=GIVE_UP_S)
    await _handed_over(client, key)


async def test_a_keyed_call_its_caller_gave_up_on_runs_once_and_retries_get_its_result(keyed: Keyed) -> None:
    client, key = keyed.client, "refund-7"
    await _abandoned(client, key)
    with pytest.raises(errors.DeadlineExceeded):  # still held: the retry waits for the same run
        await client.invoke("probe.hold", {"tag": key}, idempotency_key=key, timeout=GIVE_UP_S)
    joined = asyncio.create_task(client.invoke("probe.hold", {"tag": key}, idempotency_key=key, timeout=30))
    await client.invoke("probe.release", {"tag": key}, timeout=5)
    result = await joined  # joined the run in flight, or got its stored result
    again = await client.invoke("probe.hold", {"tag": key}, idempotency_key=key, timeout=5)
    assert result.value == {"tag": key, "runs": 1, "key": key} and again.raw == result.raw
    assert (await _held(client))[key] == 1, "the agent ran the key more than once"


async def test_a_key_whose_agent_died_mid_call_is_in_doubt_and_never_runs_again(keyed: Keyed) -> None:
    client, key = keyed.client, "transfer-9"
    await _abandoned(client, key)
    await keyed.agent.kill()  # the connection to the agent drops while it holds the call
    keyed.agent = await keyed.mesh.agent(keyed.ledger)
    for _ in range(200):  # until the caller reaches ledger's new agent
        try:
            await client.invoke("probe.hold", {"tag": key}, idempotency_key=key, timeout=5)
        except (errors.NoHealthyInstance, errors.PeerUnavailable, errors.CircuitOpen):
            await asyncio.sleep(0.05)
            continue
        except errors.KeyInDoubt as err:
            doubt = err
            break
        raise AssertionError("the retry of a key in doubt ran again")
    else:
        raise AssertionError("ledger's new agent never became reachable")
    assert doubt.code is grpc.StatusCode.FAILED_PRECONDITION
    assert (doubt.idempotency_key, doubt.capability, doubt.reason) == (key, "probe.hold", "agent_connection_lost")
    assert key in doubt.message and "new key" in doubt.message, doubt.message
    assert key not in await _held(client), "the new agent ran a key in doubt"
    other = "transfer-10"
    await client.invoke("probe.release", {"tag": other}, timeout=5)
    done = await client.invoke("probe.hold", {"tag": other}, idempotency_key=other, timeout=5)
    assert done.value["runs"] == 1  # other keys run as before
