"""Regenerate the Python stubs in meshwarden/v1/ from the .proto sources in this folder.

The stubs are committed so that installing meshwarden needs no code generation step;
tests/unit/test_generated_stubs.py fails when they drift from the sources.
Run: python proto/generate.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent


def generate(out_dir: Path) -> None:
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    package = out_dir / "meshwarden" / "v1"
    init = package / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated protobuf and gRPC stubs (python proto/generate.py)."""\n')


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT)
