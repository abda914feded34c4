"""meshwarden/v1/ is generated from proto/; a .proto edited without regenerating fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).parents[2]


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
    assert stale == [], f"run `python proto/generate.py`: {stale} are out of date"
