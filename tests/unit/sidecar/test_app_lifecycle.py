"""sidecar.app in-process against an in-process registry, over real sockets: a start-up that
fails at a late step stops everything that had started; a normal stop does too."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshwarden.sidecar import app, config
from meshwarden.supervise import Child, meshwarden_argv, registry_health_tls, start


def _listening_inodes() -> set[str]:
    """Socket inodes of this process that are in LISTEN state (TCP and TCP6)."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    listening = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in mine:
                    listening.add(fields[9])
    return listening


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Child]:
    """A real registry process: its tasks and sockets are not this process's."""
    child = await start(
        "registry",
        meshwarden_argv(
            "registry",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path / "registry"),
            "--admin-listen",
            "off",
            "--allow-unverified-bundles",
            "true",
        ),
        log_dir=tmp_path / "logs",
        health_tls=registry_health_tls,
    )
    try:
        yield child
    finally:
        await child.stop()


def _sidecar_config(tmp_path: Path, registry: Child, gateway: str, peer: str = "127.0.0.1:0") -> config.SidecarConfig:
    args = argparse.Namespace(
        agent="billing",
        registry=registry.addresses["listen"],
        data_dir=str(tmp_path / "sidecar"),
        listen="127.0.0.1:0",
        peer_listen=peer,
        admin_listen="127.0.0.1:0",
        gateway_listen=gateway,
        ca_pin=registry.addresses["ca_fingerprint"],
    )
    return config.load(args, {})


async def test_a_late_start_up_failure_stops_everything_started_before(tmp_path: Path, registry: Child) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        cfg = _sidecar_config(tmp_path, registry, f"127.0.0.1:{taken.getsockname()[1]}")
        tasks_before = asyncio.all_tasks()
        listening_before = _listening_inodes()
        with pytest.raises(app.StartError, match="gateway"):
            await app.serve(cfg, stop=asyncio.Event(), on_ready=lambda ready: pytest.fail("it started"))
        # The admin port and the Workload API were serving, and the event loop lag probe
        # running, when the gateway's bind failed; none of them is left.
        assert _listening_inodes() == listening_before
        assert await _tasks_left(tasks_before) == set()
        assert not (tmp_path / "sidecar" / "identity" / "workload.sock").exists() or not _accepts(
            tmp_path / "sidecar" / "identity" / "workload.sock"
        )
    finally:
        taken.close()


async def test_a_peer_port_in_use_closes_the_local_api_bound_before_it(tmp_path: Path, registry: Child) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        cfg = _sidecar_config(tmp_path, registry, "127.0.0.1:0", peer=f"127.0.0.1:{taken.getsockname()[1]}")
        tasks_before = asyncio.all_tasks()
        listening_before = _listening_inodes()
        with pytest.raises(app.StartError, match="peer endpoint"):
            await app.serve(cfg, stop=asyncio.Event(), on_ready=lambda ready: pytest.fail("it started"))
        # The local API's port was bound (grpcio keeps a bound port of a server that never
        # started open), and the admin port and gateway served: all closed.
        assert _listening_inodes() == listening_before
        assert await _tasks_left(tasks_before) == set()
    finally:
        taken.close()


async def test_a_sidecar_that_started_stops_everything_it_started(tmp_path: Path, registry: Child) -> None:
    cfg = _sidecar_config(tmp_path, registry, "127.0.0.1:0")
    tasks_before = asyncio.all_tasks()
    listening_before = _listening_inodes()
    stop, ready = asyncio.Event(), asyncio.Future[app.Ready]()
    running = asyncio.create_task(app.serve(cfg, stop=stop, on_ready=ready.set_result))
    started = await asyncio.wait_for(ready, 20)
    assert started.admin != "off" and started.gateway != "off"
    assert len(_listening_inodes() - listening_before) >= 4  # local API, peer, admin, gateway
    stop.set()
    await asyncio.wait_for(running, 20)
    assert _listening_inodes() == listening_before
    assert await _tasks_left(tasks_before | {running}) == set()


async def _tasks_left(before: set[asyncio.Task[object]]) -> set[str]:
    """Tasks started since `before` that have not ended, after grpcio's own server tasks had
    a moment to see their server's shutdown (they end on the loop's next turns)."""
    for _ in range(150):
        left = {repr(t) for t in asyncio.all_tasks() - before - {asyncio.current_task()} if not t.done()}
        if not left:
            break
        await asyncio.sleep(0.02)
    return left


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
