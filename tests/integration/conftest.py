from __future__ import annotations

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
    local = LocalMesh(tmp_path)
    await local.start_registry()
    try:
        yield local
    finally:
        await local.close()
        if request.node.stash.get(_FAILED, False):
            print(local.logs())


@pytest.fixture
async def bare_mesh(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[LocalMesh]:
    """A mesh with nothing started, for tests that start the registry their own way.

    Like `mesh`, it stops everything afterwards and prints every process's log when the test
    failed, so a failure in such a test can be read after the fact.
    """
    local = LocalMesh(tmp_path)
    try:
        yield local
    finally:
        await local.close()
        if request.node.stash.get(_FAILED, False):
            print(local.logs())
