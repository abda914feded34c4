"""The registry's layers hold to their seams: SQL only in the store's implementations, and
servicers (registry.api) that neither query a database nor decide who may call them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import meshwarden.registry

REGISTRY = Path(meshwarden.registry.__file__).resolve().parent
SQL = re.compile(r"\b(SELECT .* FROM|INSERT (OR \w+ )?INTO|UPDATE \w+ SET|DELETE FROM|CREATE (TABLE|INDEX))\b")


def _modules(*, under: str = "", outside: tuple[str, ...] = ()) -> list[Path]:
    found = sorted((REGISTRY / under).rglob("*.py"))
    return [p for p in found if not any((REGISTRY / o) in p.parents for o in outside)]


def _strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return names


def test_no_sql_and_no_database_driver_outside_the_store_implementations() -> None:
    offenders = []
    for path in _modules(outside=("store/sqlite", "store/postgres")):
        for driver in ("sqlite3", "asyncpg"):
            if driver in _imports(path):
                offenders.append(f"{path.relative_to(REGISTRY)} imports {driver}")
        offenders += [f"{path.relative_to(REGISTRY)}: {s[:60]!r}" for s in _strings(path) if SQL.search(s)]
    assert offenders == []
    for store in ("store/sqlite", "store/postgres"):  # the check sees SQL
        assert any(SQL.search(s) for path in _modules(under=store) for s in _strings(path)), store


def test_servicers_take_the_caller_from_the_interceptor_and_decide_nothing_about_it() -> None:
    for path in _modules(under="api"):
        if path.name in ("authorization.py", "__init__.py"):
            continue
        authz = {name for name in _imports(path) if name.startswith("meshwarden.registry.authz.")}
        assert authz <= {"meshwarden.registry.authz.current_caller"}, path.name
        assert not any(name.startswith("meshwarden.registry.store") for name in _imports(path)), path.name
