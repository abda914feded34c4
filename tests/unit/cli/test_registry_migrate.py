"""`meshwarden registry migrate` on either store: an empty store gets the whole schema, a
current one is left as it is, and a store written by a newer meshwarden is refused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from meshwarden.cli import exit_codes
from meshwarden.cli.main import main
from meshwarden.registry.store.postgres import SCHEMA_VERSION as POSTGRES_VERSION
from meshwarden.registry.store.sqlite import DB_NAME
from meshwarden.registry.store.sqlite import SCHEMA_VERSION as SQLITE_VERSION
from tests.postgres_cluster import Cluster


def _migrate(capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, dict[str, object], str]:
    code = main(["registry", "migrate", *flags, "--output", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == exit_codes.OK else {}), err


def test_a_sqlite_data_dir_is_migrated_once_and_a_newer_one_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    code, first, _ = _migrate(capsys, "--data-dir", str(data_dir))
    assert code == exit_codes.OK and (first["from_version"], first["to_version"]) == (0, SQLITE_VERSION)
    code, again, _ = _migrate(capsys, "--data-dir", str(data_dir))
    assert code == exit_codes.OK and again["from_version"] == again["to_version"] == SQLITE_VERSION
    db = sqlite3.connect(data_dir / DB_NAME)
    db.execute(f"PRAGMA user_version = {SQLITE_VERSION + 1}")
    db.close()
    code, _, err = _migrate(capsys, "--data-dir", str(data_dir))
    assert code == exit_codes.FAILED and "newer than this registry understands" in err


def test_a_postgresql_database_is_migrated_once(postgres_cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    postgres_cluster.psql("DROP DATABASE IF EXISTS cli_migrate")
    postgres_cluster.psql("CREATE DATABASE cli_migrate")
    url = postgres_cluster.url("cli_migrate")
    code, first, _ = _migrate(capsys, "--store", url)
    assert code == exit_codes.OK and (first["from_version"], first["to_version"]) == (0, POSTGRES_VERSION)
    code, again, _ = _migrate(capsys, "--store", url)
    assert code == exit_codes.OK and again["from_version"] == POSTGRES_VERSION
    assert postgres_cluster.psql("SELECT version FROM schema_version", "cli_migrate") == str(POSTGRES_VERSION)
