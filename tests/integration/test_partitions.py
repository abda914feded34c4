"""Network partitions between real processes in network namespaces (iproute2).

The callee (`billing`: its sidecar and probe agent) runs in a namespace of its own, joined
to the host by a veth pair; the registry and the caller's sidecar stay on the host. Beyond
loopback there is no open enrolment, so sidecars enrol with join tokens, as in production.
Taking the host's end of the pair down is a full partition: a call's deadline holds and it
fails clearly (UNAVAILABLE or DEADLINE_EXCEEDED); a keyed call retried across the
partition runs once; when the link comes back up, calls succeed again by themselves.

Loss and delay need the kernel's netem qdisc; where `tc qdisc add ... netem` is refused
that part is skipped saying so. Checked again on 2026-12-06 on the team's machine (kernel
6.18.44-fc-v1300, a Firecracker guest): `tc qdisc add dev lo root netem delay 1ms` answers
"Error: Specified qdisc kind is unknown." (in a fresh namespace too), /proc/config.gz says
"# CONFIG_NET_SCH_NETEM is not set", and there is no modprobe nor /lib/modules to load it
from; tbf, a built-in qdisc, adds fine. Namespaces need
root (CAP_NET_ADMIN): without it the module is skipped, and in CI (CI=true) it fails.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

import meshwarden
from meshwarden import errors
from meshwarden.supervise import Child, meshwarden_argv
from meshwarden.v1 import identity_pb2, identity_pb2_grpc
from tests.integration.mesh import PROBE, LocalMesh

pytestmark = pytest.mark.integration


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)


@dataclass
class Namespace:
    name: str
    host_link: str
    host_address: str
    inside_address: str

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
    space = Namespace(ns, host, f"10.213.{octet}.1", f"10.213.{octet}.2")
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
    from pathlib import Path

    mesh = LocalMesh(Path(str(tmp_path)))
    await mesh.start_registry(f"{namespace.host_address}:0")
    try:
        caller = await mesh.sidecar("support", "--join-token", await _token(mesh, "support"))
        billing = await mesh.start_process(
            "sidecar-billing",
            namespace.run(
                meshwarden_argv(
                    "sidecar", "run", "--agent", "billing", "--registry", mesh.registry_address,
                    "--join-token", await _token(mesh, "billing"),
                    "--listen", "127.0.0.1:0", "--peer-listen", f"{namespace.inside_address}:0",
                    "--admin-listen", "off", "--gateway-listen", "off",
                    "--data-dir", str(mesh.workdir / "billing"), "--bundle-keys", str(mesh.bundles.trusted_keys_dir),
                )
            ),
            health_address_key=None,
        )  # fmt: skip
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


async def test_a_partition_fails_calls_within_their_deadline_and_healing_brings_them_back(
    split_mesh: tuple[LocalMesh, Child], namespace: Namespace
) -> None:
    _mesh, caller = split_mesh
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        for _ in range(200):  # billing registers from inside its namespace
            try:
                assert await _count(client, "before", 5) == 1
                break
            except (errors.UnknownCapability, errors.NoHealthyInstance):
                await asyncio.sleep(0.1)
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


def test_loss_and_delay_need_netem(namespace: Namespace) -> None:
    added = subprocess.run(
        ["tc", "qdisc", "add", "dev", namespace.host_link, "root", "netem", "delay", "50ms", "loss", "5%"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if added.returncode != 0:
        pytest.skip(f"netem is not available in this kernel ({added.stderr.strip()}); loss and delay not tested")
    subprocess.run(["tc", "qdisc", "del", "dev", namespace.host_link, "root"], check=False, timeout=10)
