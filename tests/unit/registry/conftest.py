"""Fixtures of the registry's unit tests: the storage seam over a real SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshwarden.registry.store import Stores
from meshwarden.registry.store.sqlite import open_sqlite


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    opened = await open_sqlite(tmp_path / "data", event_log_retention=100)
    yield opened
    await opened.close()
