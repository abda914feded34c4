"""Network partitions, loss and delay between real processes in network namespaces.

The callee (`billing`: its sidecar and probe agent) runs in a namespace of its own, joined
to the host by a veth pair; the registry and the caller's sidecar stay on the host. Beyond
loopback there is no open enrolment, so sidecars enrol with join tokens, as in production.
Taking the host's end of the pair down is a full partition: a call's deadline holds and it
fails clearly (UNAVAILABLE or DEADLINE_EXCEEDED); a keyed call retried across the
partition runs once; when the link comes back up, calls succeed again by themselves.

Loss and delay do not use netem: this kernel has none (checked on 2026-12-06 on the team's
machine, kernel 6.18.44-fc-v1300, a Firecracker guest: `tc qdisc add ... netem` answers
"Error: Specified qdisc kind is unknown.", /proc/config.gz says "# CONFIG_NET_SCH_NETEM is
not set", and there is no module to load). It does have nftables with numgen, so random loss
is an nftables rule (`numgen random mod 100 < N drop`) on the namespace's end of the veth,
both ways, which hits the callee's traffic with the caller's sidecar and with the registry
alike; the delay is added by the fault proxy (fault_proxy.py) that the callee's sidecar
advertises as its peer address, so it lies between the caller's sidecar and the veth.
Namespaces and nftables need root (CAP_NET_ADMIN): without it the module is skipped, and in
CI (CI=true) it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass

import grpc
import pytest

import meshwarden
from meshwarden import errors
from meshwarden.supervise import Child, meshwarden_argv
from meshwarden.v1 import identity_pb2, identity_pb2_grpc
from tests.integration.fault_proxy import FaultProxy
from tests.integration.mesh import PROBE, LocalMesh
from tests.system_tools import require_program

pytestmark = pytest.mark.integration


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)


@dataclass
class Namespace:
    name: str
    host_link: str
    host_address: str
    inside_address: str
    inside_link: str

    def run(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def partition(self) -> None:
        _ip("link", "set", self.host_link, "down").check_returncode()

    def heal(self) -> None:
        _ip("link", "set", self.host_link, "up").check_returncode()


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    tag = secrets.token_hex(3)
    ns, host, inside = f"mw-{tag}", f"mwh{tag}", f"mwi{tag}"
    octet = int(tag[:2], 16)
    space = Namespace(ns, host, f"10.213.{octet}.1", f"10.213.{octet}.2", inside)
    if shutil.which("ip") is None or _ip("netns", "add", ns).returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("network namespaces cannot be created (needs iproute2 and CAP_NET_ADMIN)")
        pytest.skip("network namespaces cannot be created here (needs iproute2 and root); partition tests skipped")
    try:
        for argv in (
            ["link", "add", host, "type", "veth", "peer", "name", inside],
            ["link", "set", inside, "netns", ns],
            ["addr", "add", f"{space.host_address}/30", "dev", host],
            ["link", "set", host, "up"],
            ["netns", "exec", ns, "ip", "addr", "add", f"{space.inside_address}/30", "dev", inside],
            ["netns", "exec", ns, "ip", "link", "set", inside, "up"],
            ["netns", "exec", ns, "ip", "link", "set", "lo", "up"],
        ):
            _ip(*argv).check_returncode()
        yield space
    finally:
        _ip("link", "del", host)
        _ip("netns", "del", ns)


@pytest.fixture
async def split_mesh(tmp_path: object, namespace: Namespace) -> AsyncIterator[tuple[LocalMesh, Child]]:
    """A registry on the host's veth address; returns the mesh and the caller's sidecar, with
    billing (sidecar and probe agent) inside the namespace."""
    async with _split(tmp_path, namespace) as split:
        yield split


@pytest.fixture
async def delayed_mesh(tmp_path: object, namespace: Namespace) -> AsyncIterator[tuple[LocalMesh, Child, FaultProxy]]:
    """As split_mesh, but the caller's sidecar reaches billing through a fault proxy on the host."""
    # Calls that fail here would soon open the caller's circuit breaker, which then fails the
    # rest at once without sending them; these tests want them sent, so it opens much later.
    breaker = ("--breaker-failures", "1000", "--breaker-min-calls", "1000")
    # Billing renews its lease across the lossy link too: with the tests' 0.5 s heartbeat (a
    # 1.25 s lease) a renewal that meets 25% loss each way on a loaded machine can miss, and the
    # registry rightly drops billing. The product's default heartbeat (2 s, a 5 s lease) keeps
    # these tests about deadlines and keys, not about leases.
    async with (
        FaultProxy() as proxy,
        _split(tmp_path, namespace, proxy, *breaker, heartbeat_interval_s=2.0) as (mesh, caller),
    ):
        yield mesh, caller, proxy


@contextlib.asynccontextmanager
async def _split(
    tmp_path: object,
    namespace: Namespace,
    proxy: FaultProxy | None = None,
    *caller_flags: str,
    heartbeat_interval_s: float = 0.5,
) -> AsyncIterator[tuple[LocalMesh, Child]]:
    from pathlib import Path

    mesh = LocalMesh(Path(str(tmp_path)), heartbeat_interval_s=heartbeat_interval_s)
    await mesh.start_registry(f"{namespace.host_address}:0")
    try:
        caller = await mesh.sidecar("support", "--join-token", await _token(mesh, "support"), *caller_flags)
        advertise = ["--peer-advertise", proxy.address] if proxy is not None else []
        billing = await mesh.start_process(
            "sidecar-billing",
            namespace.run(
                meshwarden_argv(
                    "sidecar", "run", "--agent", "billing", "--registry", mesh.registry_address,
                    "--join-token", await _token(mesh, "billing"),
                    "--listen", "127.0.0.1:0", "--peer-listen", f"{namespace.inside_address}:0", *advertise,
                    "--admin-listen", "off", "--gateway-listen", "off",
                    "--data-dir", str(mesh.workdir / "billing"), "--bundle-keys", str(mesh.bundles.trusted_keys_dir),
                )
            ),
            health_address_key=None,
        )  # fmt: skip
        if proxy is not None:
            proxy.upstream = billing.addresses["peer_bound"]
        await mesh.start_process(
            "agent-billing",
            namespace.run([sys.executable, str(PROBE), "--sidecar", billing.addresses["listen"]]),
            health_address_key=None,
        )
        yield mesh, caller
    finally:
        await mesh.close()


async def _token(mesh: LocalMesh, agent: str) -> str:
    async with await mesh.operator_channel() as channel:
        reply = await identity_pb2_grpc.IdentityStub(channel).CreateJoinToken(
            identity_pb2.CreateJoinTokenRequest(agent=agent), metadata=mesh.operator_metadata(), timeout=5
        )
    return str(reply.token)


async def _count(client: meshwarden.Client, key: str, timeout: float) -> int:
    result = await client.invoke("probe.count", {}, idempotency_key=key, timeout=timeout)
    return int(result.value["runs"])  # type: ignore[index]


async def _billing_answers(client: meshwarden.Client) -> None:
    for _ in range(200):  # billing registers from inside its namespace
        try:
            assert await _count(client, "before", 5) == 1
            return
        except (errors.UnknownCapability, errors.NoHealthyInstance):
            await asyncio.sleep(0.1)
    raise AssertionError("billing never became callable")


async def test_a_partition_fails_calls_within_their_deadline_and_healing_brings_them_back(
    split_mesh: tuple[LocalMesh, Child], namespace: Namespace
) -> None:
    _mesh, caller = split_mesh
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await _billing_answers(client)
        namespace.partition()
        try:
            started = time.monotonic()
            with pytest.raises((errors.PeerUnavailable, errors.DeadlineExceeded, errors.NoHealthyInstance)):
                await _count(client, "during", 3)
            assert time.monotonic() - started < 3 + 2, "the caller's deadline did not hold"
        finally:
            namespace.heal()
        for _ in range(300):  # connections come back by themselves
            try:
                runs = await _count(client, "during", 5)
                break
            except (errors.PeerUnavailable, errors.NoHealthyInstance, errors.CircuitOpen, errors.DeadlineExceeded):
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("calls never came back after the partition healed")
        assert runs == 1  # the keyed call tried during the partition never ran there: it runs once


LOSS_PERCENT = 25  # of the packets crossing the callee's end of the veth, each way
LATENCY_S = 0.2  # the fault proxy holds each chunk this long, each way: a round trip >= 0.4 s
SHORT_S = 0.25  # shorter than any round trip now
# How many chunks a request and its answer take varies, so keyed calls get deadlines spread
# over the range where billing may run a call whose answer then misses the caller's deadline.
SPREAD_S = [0.3 + 0.05 * i for i in range(12)]
_CLEAR = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_TABLE = "meshwarden_loss"


@dataclass
class Loss:
    """Random packet loss with nftables inside the namespace, on its end of the veth."""

    namespace: Namespace
    percent: int

    def add(self) -> None:
        link, pct = self.namespace.inside_link, self.percent
        ruleset = (
            f"table inet {_TABLE} {{\n"
            f"  chain inbound {{ type filter hook input priority 0; policy accept;"
            f' iifname "{link}" numgen random mod 100 < {pct} counter drop; }}\n'
            f"  chain outbound {{ type filter hook output priority 0; policy accept;"
            f' oifname "{link}" numgen random mod 100 < {pct} counter drop; }}\n'
            "}\n"
        )
        added = self._nft(["-f", "-"], ruleset)
        if added.returncode != 0:
            message = f"nftables refused the loss rules ({added.stderr.strip()}); loss and delay not tested"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)

    def dropped(self) -> int:
        """Packets the rules dropped so far, from their counters."""
        listed = self._nft(["-j", "list", "table", "inet", _TABLE])
        listed.check_returncode()
        return sum(
            expr["counter"]["packets"]
            for item in json.loads(listed.stdout)["nftables"]
            for expr in item.get("rule", {}).get("expr", [])
            if "counter" in expr
        )

    def remove(self) -> None:
        self._nft(["delete", "table", "inet", _TABLE]).check_returncode()

    def _nft(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = self.namespace.run([require_program("nft", "nftables"), *args])
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=10, check=False)


async def _clear_outcome(call: Awaitable[object], timeout: float) -> str:
    """The outcome, "ok" or the kind of a clear failure (UNAVAILABLE or DEADLINE_EXCEEDED); a
    call that outlives its deadline fails the test."""
    try:
        await asyncio.wait_for(call, timeout + 2)
    except errors.Unreachable as err:
        assert err.code in _CLEAR, err
        return err.kind
    except TimeoutError:
        raise AssertionError(f"a call with a {timeout} s deadline hung past it") from None
    return "ok"


async def _retried_until_it_succeeds(client: meshwarden.Client, key: str, timeout: float) -> list[str]:
    outcomes: list[str] = []
    for _ in range(10):
        outcomes.append(await _clear_outcome(_count(client, key, timeout), timeout))
        if outcomes[-1] == "ok":
            return outcomes
        await asyncio.sleep(0.2)
    raise AssertionError(f"the call {key} never succeeded through the loss: {outcomes}")


async def test_under_loss_and_delay_deadlines_hold_keyed_calls_run_once_and_healing_restores_calls(
    delayed_mesh: tuple[LocalMesh, Child, FaultProxy], namespace: Namespace
) -> None:
    _mesh, caller, proxy = delayed_mesh
    loss = Loss(namespace, LOSS_PERCENT)
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await _billing_answers(client)
        proxy.add_latency(LATENCY_S)
        loss.add()
        try:
            # Deadlines shorter than the added delay: every call fails, clearly, within them.
            short = [f"short-{i}" for i in range(4)]
            short_calls = [_clear_outcome(_count(client, k, SHORT_S), SHORT_S) for k in short]
            short_outcomes = await asyncio.gather(*short_calls)
            assert "ok" not in short_outcomes, short_outcomes
            # Unkeyed calls are never retried once sent: each succeeds or fails clearly, no hang.
            deadlines = [SHORT_S] * 4 + [3.0] * 8
            unkeyed = [
                _clear_outcome(client.invoke("probe.count", {}, idempotent=False, timeout=t), t) for t in deadlines
            ]
            unkeyed_outcomes = await asyncio.gather(*unkeyed)
            assert "ok" not in unkeyed_outcomes[:4], unkeyed_outcomes
            # Keyed calls whose answer misses the deadline after billing ran them (the caller never
            # hears), retried with a longer deadline until they succeed: they run no more.
            keyed = [f"keyed-{i}" for i in range(len(SPREAD_S))]
            tight_outcomes = await asyncio.gather(
                *(_clear_outcome(_count(client, key, t), t) for key, t in zip(keyed, SPREAD_S, strict=True))
            )
            ran = (await client.invoke("probe.runs", {}, timeout=5)).value["runs_by_key"]  # type: ignore[index]
            ran_unheard = [
                key for key, tried in zip(keyed, tight_outcomes, strict=True) if tried != "ok" and key in ran
            ]
            assert ran_unheard, f"no keyed call ran at billing before its deadline ({ran}): nothing was tested"
            keyed_outcomes = await asyncio.gather(*(_retried_until_it_succeeds(client, key, 3) for key in keyed))
            dropped = loss.dropped()
        finally:
            loss.remove()
            proxy.pass_through()
        assert dropped > 0, "the loss rules dropped nothing"
        for _ in range(300):  # healed: calls succeed again by themselves
            if await _clear_outcome(_count(client, "healed", 2), 2) == "ok":
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("calls never came back after the loss and delay were removed")
        for key in short:  # they may have run at billing: retried, they do not run again
            assert await _clear_outcome(_count(client, key, 5), 5) == "ok"
        runs = (await client.invoke("probe.runs", {}, timeout=5)).value["runs_by_key"]  # type: ignore[index]
    print(f"loss {LOSS_PERCENT}% each way, +{LATENCY_S}s a chunk each way: {dropped} packets dropped; "
          f"short {short_outcomes}; unkeyed {unkeyed_outcomes}; "
          f"keyed, tight {tight_outcomes}, ran unheard {ran_unheard}, retried {keyed_outcomes}")  # fmt: skip
    assert {key: runs[key] for key in short + keyed} == {key: 1 for key in short + keyed}
