"""Suite-wide settings.

Unix socket paths are limited to 107 bytes, and the integration tests put sidecars' sockets
under `tmp_path`. pytest's default base (/tmp/pytest-of-USER/pytest-N/, plus popen-gwN/ under
xdist) leaves too little of that for a test's own name, so the suite uses a short base of its
own unless one is given with --basetemp. The PostgreSQL fixtures (a throwaway cluster per
session, or per xdist worker) come from tests/postgres_cluster.
"""

from __future__ import annotations

import os
import tempfile

import pytest

from tests.postgres_cluster import postgres_cluster, postgres_template  # the PostgreSQL store's fixtures

__all__ = ["postgres_cluster", "postgres_template", "pytest_configure"]


def pytest_configure(config: pytest.Config) -> None:
    if config.option.basetemp or os.environ.get("PYTEST_XDIST_WORKER"):
        return  # given on the command line, or a worker under the controller's base
    config.option.basetemp = tempfile.mkdtemp(prefix="mw-")
