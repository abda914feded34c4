"""Runs README.md's "Running the pieces by hand" block command by command, as written.

The block sits between `<!-- by-hand -->` markers. Lines continued with a backslash are one
command; `#` starts a comment. Servers (`meshwarden registry serve`, `meshwarden sidecar run`,
`python examples/...`) keep running, as in their own terminal: the walk waits for each one's
ready line (stdout) or its "registered" log line (stderr, the SDK's agents) before the next
command. Every other command must exit 0. `meshwarden` and `python` resolve to this
interpreter, as they would in the activated virtual environment.

Run as a program (`python -m tests.integration.readme_by_hand WORKDIR`) it prints one JSON
object per step, so the test can run it inside a fresh network namespace where the README's
fixed ports are free whatever else runs on the machine.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from meshwarden.supervise import meshwarden_argv

REPO = Path(__file__).parents[2]
README = REPO / "README.md"
START_TIMEOUT_S = 90.0  # a loaded 2-core machine takes its time importing the servers
COMMAND_TIMEOUT_S = 120.0


@dataclass
class Step:
    command: str
    server: bool
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""


def commands(readme: str = "") -> list[str]:
    """The block's commands, continuation lines joined, comments and blank lines dropped."""
    text = readme or README.read_text()
    block = text.split("<!-- by-hand -->", 1)[1].split("<!-- /by-hand -->", 1)[0]
    body = block.split("```sh\n", 1)[1].split("```", 1)[0]
    joined = body.replace("\\\n", " ")
    return [
        shlex.join(shlex.split(line, comments=True)) for line in joined.splitlines() if shlex.split(line, comments=True)
    ]


def is_server(argv: list[str]) -> bool:
    return argv[:3] in (["meshwarden", "registry", "serve"], ["meshwarden", "sidecar", "run"]) or argv[0] == "python"


def resolved(argv: list[str]) -> list[str]:
    if argv[0] == "meshwarden":
        return meshwarden_argv(*argv[1:])
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return argv


@dataclass
class Server:
    step: Step
    process: subprocess.Popen[str]
    ready: threading.Event = field(default_factory=threading.Event)
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    def follow(self) -> None:
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(
            target=self._read, args=(self.process.stdout, self.out, '"event":"ready"'), daemon=True
        ).start()
        threading.Thread(
            target=self._read, args=(self.process.stderr, self.err, " registered as instance "), daemon=True
        ).start()

    def _read(self, stream: IO[str], into: list[str], sign: str) -> None:
        for line in stream:
            into.append(line)
            if sign in line:
                self.ready.set()


def walk(workdir: Path) -> list[Step]:
    """Runs every command in `workdir`; stops at the first that fails. Servers are stopped at
    the end (SIGTERM, as Ctrl-C in their terminal would)."""
    (workdir / "examples").symlink_to(REPO / "examples")
    steps: list[Step] = []
    servers: list[Server] = []
    try:
        for command in commands():
            argv = shlex.split(command)
            step = Step(command, is_server(argv))
            steps.append(step)
            if step.server:
                process = subprocess.Popen(
                    resolved(argv), cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
                server = Server(step, process)
                servers.append(server)
                server.follow()
                deadline = time.monotonic() + START_TIMEOUT_S
                while not server.ready.wait(0.1):
                    if process.poll() is not None or time.monotonic() > deadline:
                        step.returncode = process.poll()
                        step.stderr = "".join(server.err) or "(no output)"
                        step.stdout = "".join(server.out)
                        return steps
                continue
            done = subprocess.run(
                resolved(argv), cwd=workdir, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
            )
            step.returncode, step.stdout, step.stderr = done.returncode, done.stdout, done.stderr
            if done.returncode != 0:
                return steps
    finally:
        for server in reversed(servers):
            server.process.terminate()
        for server in servers:
            try:
                server.step.returncode = server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.step.returncode = server.process.wait()
            server.step.stdout, server.step.stderr = "".join(server.out), "".join(server.err)
    return steps


if __name__ == "__main__":
    for result in walk(Path(sys.argv[1])):
        print(json.dumps(asdict(result)), flush=True)
