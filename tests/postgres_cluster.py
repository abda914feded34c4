"""A throwaway PostgreSQL cluster for one test session: Debian's `postgresql` package (in
dev.py's SYSTEM_PACKAGES), `initdb` in a temporary directory as a non-root user (PostgreSQL
refuses to run as root, and CI runs as root), listening on loopback only, fsync off (the data
is thrown away). Outside CI, without the package, the tests that need it skip and say how to
run them; under CI=true they fail instead (tests/system_tools)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

SUPERUSER: Final = "meshwarden"
TEMPLATE: Final = "meshwarden_template"
_FIRST_PORT: Final = 25432


@dataclass(frozen=True)
class Cluster:
    port: int
    bin_dir: Path
    run_as: str
    home: Path

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, self.url(database)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {done.stderr.strip()}")
        return done.stdout.strip()

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m mode`: fast ends every session and shuts down cleanly; immediate is a crash."""
        subprocess.run(
            _as(self.run_as or None, [str(self.bin_dir / "pg_ctl"), "-D", str(self.home / "data"), "-m", mode, "stop"]),
            capture_output=True,
            check=False,
        )

    def start(self) -> bool:
        """Starts the server again on its port; False when it did not start."""
        return _pg_ctl_start(self.bin_dir, self.home, self.port, self.run_as or None)


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path is not None:
        return Path(on_path).resolve().parent
    message = (
        "PostgreSQL is not installed, so the PostgreSQL store's tests cannot run: apt-get install postgresql "
        "(python3 dev.py test installs it when it runs as root with apt-get)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _non_root_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    pytest.fail("no non-root user (postgres, nobody) to run PostgreSQL as")


def _as(user: str | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


def _pg_ctl_start(bin_dir: Path, home: Path, port: int, user: str | None) -> bool:
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
    started = subprocess.run(
        _as(
            user,
            [str(bin_dir / "pg_ctl"), "-D", str(home / "data"), "-o", options, "-l", str(home / "log"), "-w", "start"],
        ),
        capture_output=True,
        check=False,
    )
    return started.returncode == 0


@contextlib.contextmanager
def throwaway_cluster(first_port: int = _FIRST_PORT) -> Iterator[Cluster]:
    """A cluster of its own, initialised in a temporary directory and removed afterwards."""
    bin_dir = _bin_dir()
    user = _non_root_user() if os.geteuid() == 0 else None
    home = Path(tempfile.mkdtemp(prefix="meshwarden-pg-"))
    if user is not None:
        shutil.chown(home, user)
    subprocess.run(
        _as(user, [str(bin_dir / "initdb"), "-D", str(home / "data"), "-A", "trust", "-U", SUPERUSER, "--no-sync"]),
        check=True,
        capture_output=True,
    )
    cluster = None
    for port in range(first_port + os.getpid() % 1000, first_port + os.getpid() % 1000 + 20):
        if _pg_ctl_start(bin_dir, home, port, user):
            cluster = Cluster(port=port, bin_dir=bin_dir, run_as=user or "", home=home)
            break
    if cluster is None:
        log = (home / "log").read_text(errors="replace") if (home / "log").exists() else ""
        shutil.rmtree(home, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start on any of 20 ports:\n{log[-2000:]}")
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_template(postgres_cluster: Cluster) -> str:
    """A database migrated to the current schema, to copy for each test (CREATE DATABASE ...
    TEMPLATE is much faster than running the steps again)."""
    import asyncio
    import concurrent.futures

    from meshwarden.registry.store.postgres import migrations
    from meshwarden.registry.store.postgres.database import Database

    postgres_cluster.psql(f"CREATE DATABASE {TEMPLATE}")

    async def migrate() -> None:
        db = await Database.connect(postgres_cluster.url(TEMPLATE), min_size=1, max_size=1)
        try:
            await migrations.migrate(db)
        finally:
            await db.close()

    with concurrent.futures.ThreadPoolExecutor(1) as thread:  # the caller may be inside an event loop
        thread.submit(asyncio.run, migrate()).result()
    return TEMPLATE


def fresh_database(cluster: Cluster, template: str) -> str:
    """The URL of `template`'s database emptied: every table truncated and every counter back
    to 0 (much faster than creating a database per test)."""
    cluster.psql(_EMPTY, template)
    return cluster.url(template)


_EMPTY: Final = """
DO $$ DECLARE names text;
BEGIN
  SELECT string_agg(quote_ident(tablename), ', ') INTO names FROM pg_tables
   WHERE schemaname = 'public' AND tablename NOT IN ('meta', 'schema_version');
  EXECUTE 'DELETE FROM ' || replace(names, ', ', '; DELETE FROM ');
  UPDATE meta SET value = 0;
END $$;
"""
