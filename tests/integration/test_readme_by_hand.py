"""README.md's "Running the pieces by hand", command by command as written (readme_by_hand.py),
in a fresh network namespace so its fixed ports are free whatever else runs here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.integration import readme_by_hand
from tests.system_tools import require_program

pytestmark = pytest.mark.integration


def test_the_block_holds_the_policy_step_and_the_checks() -> None:
    found = readme_by_hand.commands()
    assert any(c.startswith("meshwarden bundle push") for c in found)
    assert "meshwarden check" in found
    assert sum(readme_by_hand.is_server(c.split()) for c in found) == 4


def test_running_the_pieces_by_hand_works_as_written() -> None:
    # A short working directory: the sidecar's Workload API socket lies under it, and a unix
    # socket path has at most 107 characters (pytest's tmp_path can be longer).
    with tempfile.TemporaryDirectory(prefix="mw-readme-") as workdir:
        walk(Path(workdir))


def walk(tmp_path: Path) -> None:
    unshare = require_program("unshare", "util-linux")
    require_program("ip", "iproute2")
    if subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False).returncode != 0:
        message = "cannot create a network namespace here (unshare -rn); the README walk needs its fixed ports"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    inner = f"ip link set lo up && exec {sys.executable} -m tests.integration.readme_by_hand {tmp_path}"
    done = subprocess.run(
        # its own PID namespace too: if the walk is cut short, the kernel ends every server in it
        [unshare, "-rn", "--pid", "--fork", "--kill-child", "sh", "-c", inner],
        cwd=readme_by_hand.REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    steps = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    report = "\n".join(f"$ {s['command']} -> {s['returncode']}\n{s['stdout']}{s['stderr'][-3000:]}" for s in steps)
    assert done.returncode == 0, done.stderr + report
    commands = readme_by_hand.commands()
    assert [s["command"] for s in steps] == commands, report  # every command ran
    for step in steps:
        if not step["server"]:
            assert step["returncode"] == 0, report
    by_command = {s["command"]: s for s in steps}
    hello = next(s for c, s in by_command.items() if "hello" in c)
    assert json.loads(hello["stdout"])["echo"] == {"hello": "mesh"}, report
    pushed = next(s for c, s in by_command.items() if c.startswith("meshwarden bundle push"))
    assert "enforced by 2/2 live sidecar(s)" in pushed["stdout"], report
    check = by_command["meshwarden check"]
    assert " FAIL " not in check["stdout"] and "registry reachable" in check["stdout"], report
