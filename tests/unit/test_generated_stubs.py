"""meshwarden/v1/ is generated from proto/ by the locked grpcio-tools; a .proto edited without
regenerating, or a toolchain other than the locked one, fails here."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def locked_version(name: str) -> str:
    found = re.search(rf"^{re.escape(name)}==(\S+)", (ROOT / "requirements.lock").read_text(), re.M)
    assert found is not None, f"requirements.lock pins no {name}"
    return found[1]


def test_the_environment_has_the_locked_grpcio_tools() -> None:
    installed, locked = importlib.metadata.version("grpcio-tools"), locked_version("grpcio-tools")
    assert installed == locked, (
        f"this environment has grpcio-tools {installed}, requirements.lock pins {locked}: "
        "python3 dev.py test installs the locked one"
    )


def test_committed_stubs_match_the_proto_sources(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate(tmp_path)
    fresh = {p.name: p.read_text() for p in (tmp_path / "meshwarden" / "v1").glob("*_pb2*.py*")}
    committed = {p.name: p.read_text() for p in (ROOT / "meshwarden" / "v1").glob("*_pb2*.py*")}
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], (
        f"{stale} differ from what grpcio-tools {importlib.metadata.version('grpcio-tools')} generates: "
        "run `python3 dev.py lock` (or `.venv/bin/python proto/generate.py`) and commit meshwarden/v1"
    )
