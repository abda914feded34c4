from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.mesh import LocalMesh


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    item.stash.setdefault(_FAILED, False)
    if report.failed:
        item.stash[_FAILED] = True
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
async def mesh(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[LocalMesh]:
    """A registry (heartbeat 0.5 s) plus whatever the test starts; all stopped afterwards."""
    async with _stopped_after(LocalMesh(tmp_path), request) as local:
        await local.start_registry()
        yield local


@pytest.fixture
async def bare_mesh(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[LocalMesh]:
    """A mesh with nothing started, for tests that start the registry their own way; stopped
    and its logs printed on failure like `mesh`'s."""
    async with _stopped_after(LocalMesh(tmp_path), request) as local:
        yield local


@contextlib.asynccontextmanager
async def _stopped_after(local: LocalMesh, request: pytest.FixtureRequest) -> AsyncIterator[LocalMesh]:
    """Stops every process of `local` at the end, and prints their logs when the test failed
    (read after the fact: the processes are gone by then)."""
    try:
        yield local
    finally:
        await local.close()
        if request.node.stash.get(_FAILED, False):
            print(local.logs())
