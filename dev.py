#!/usr/bin/env python3
"""The two quickstart commands, with all their set-up:

    python3 dev.py demo     run a local mesh with a multi-agent scenario
    python3 dev.py test     run the checks: ruff, mypy, then the whole test suite

Needs only Python 3.11+. On first use (and whenever pyproject.toml changes) it creates a
virtual environment in .venv and installs meshwarden into it with its test dependencies.
Anything after the command is passed on: `python3 dev.py test tests/unit -k routing`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("MESHWARDEN_VENV", ROOT / ".venv"))
STAMP = VENV / ".meshwarden-installed"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under whatever python3 is on PATH
        sys.exit(f"meshwarden needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    if not PYTHON.exists():
        print(f"dev.py: creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("dev.py: installing meshwarden and its dependencies (first run only)", flush=True)
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "--quiet", "-e", f"{ROOT}[sidecar,test]"], check=True)
    STAMP.write_text(wanted + "\n")


def run(argv: list[str]) -> int:
    return subprocess.run(argv, cwd=ROOT, check=False).returncode


def main(args: list[str]) -> int:
    if not args or args[0] not in {"demo", "test"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    ensure_environment()
    if command == "demo":
        return run([str(BIN / "meshwarden"), "demo", *rest])
    checks = [
        [str(PYTHON), "-m", "ruff", "check", "."],
        [str(PYTHON), "-m", "mypy", "meshwarden", "benchmarks"],
    ]
    failed = [c[2] for c in checks if not rest and run(c) != 0]
    code = run([str(PYTHON), "-m", "pytest", *rest])
    if failed:
        print(f"dev.py: {', '.join(failed)} found problems (see above)", file=sys.stderr)
        return code or 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
