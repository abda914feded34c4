"""How long each of the operator's thirteen questions (README, "The operator's questions") takes
as one `meshwarden` command, CLI start-up included, against a real registry process holding
10,000 sessions.

    PYTHONPATH=. .venv/bin/python benchmarks/operator_questions.py [--sessions 10000] [--runs 3]

The registry's store is filled first, as benchmarks/session_queries.py fills it (sessions of
four calls, both sidecars' receipts of each, outcomes on two sessions in three), then
`meshwarden registry serve` starts on it and every command runs as a fresh process with the
operator token, as an operator runs it, in table and in JSON. Prints the median wall time of
each. Other load on the machine inflates the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from session_queries import fill  # beside this script: python puts its folder on sys.path

from meshwarden.clock import SystemClock
from meshwarden.local_mesh import LocalMesh
from meshwarden.policy_bundle.keys import keygen
from meshwarden.registry.issuer import Issuer
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.receipts import Receipts
from meshwarden.registry.store.sqlite import open_sqlite
from meshwarden.supervise import meshwarden_argv

QUESTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("1 running agents", ("agents", "list")),
    ("1 running sessions", ("sessions", "list", "--state", "running")),
    ("1 tasks in progress", ("tasks", "list", "--state", "leased")),
    ("2 who enrolled (audit)", ("audit", "list")),
    ("2 started for, launched by", ("sessions", "list", "--started-for", "user:u7")),
    ("3 sessions of a workflow", ("sessions", "list", "--workflow", "w3")),
    ("4 model per agent", ("costs", "--by", "agent-model")),
    ("5 tool ledger", ("tools", "ledger")),
    ("6 session costs", ("sessions", "list")),
    ("6 one session", ("session", "show", "s7")),
    ("7 stuck (idle longest)", ("sessions", "list", "--state", "running", "--order", "oldest")),
    ("7 suspect (loops, retries)", ("sessions", "suspect")),
    ("8/9 cost per success, burn", ("costs", "--by", "workflow")),
    ("10 per version", ("costs", "--by", "version")),
    ("10 changes before/after", ("changes", "--since", "400d")),
    ("11 approvals", ("approvals", "list", "--all")),
    ("12 refusals by cause", ("costs", "--by", "refusal")),
    ("13 kill switches", ("kill", "list")),
    # every list pages with a keyset cursor: the second page of the sessions, as an operator pages
    ("6 sessions, a page of 100", ("sessions", "list", "--limit", "100")),
)


async def filled(data_dir: Path, sessions: int) -> None:
    stores = await open_sqlite(data_dir, event_log_retention=100)
    try:
        clock = SystemClock()
        issuer = Issuer.ephemeral("meshwarden.local", clock)
        receipts = Receipts(stores.receipts, clock, trust_bundle_pem=issuer.bundle_pem)
        await fill(receipts, Outcomes(stores.outcomes, clock), issuer, sessions * 4)
    finally:
        await stores.close()


def median_s(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, int]:
    times, code = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        code = subprocess.run(argv, check=False, capture_output=True, env=env, timeout=60).returncode
        times.append(time.perf_counter() - started)
    return statistics.median(times), code


async def measure(sessions: int, runs: int, only: str = "") -> None:
    with tempfile.TemporaryDirectory() as directory:
        mesh = LocalMesh(Path(directory), bundle_keys=Path(directory) / "keys")
        signing = keygen(Path(directory) / "signing", "bench")  # the registry needs a trusted bundle key
        (Path(directory) / "keys").mkdir()
        shutil.copy(signing.public_key, Path(directory) / "keys" / signing.public_key.name)
        started = time.perf_counter()
        await filled(mesh.registry_data_dir, sessions)
        print(f"stored {sessions} sessions ({sessions * 8} receipts) in {time.perf_counter() - started:.1f} s")
        registry = await mesh.start_registry()
        try:
            flags = ["--registry", registry.addresses["listen"], "--ca-pin", registry.addresses["ca_fingerprint"]]
            env = {
                **os.environ,
                "MESHWARDEN_OPERATOR_TOKEN": (mesh.registry_data_dir / "operator.token").read_text().strip(),
            }
            print(f"{'question':<28} {'command':<52} {'table s':>8} {'json s':>8}  exit")
            for name, args in QUESTIONS:
                if only and only not in name:
                    continue
                table, code = await asyncio.to_thread(median_s, meshwarden_argv(*args, *flags), env, runs)
                as_json, _ = await asyncio.to_thread(
                    median_s, meshwarden_argv(*args, "--output", "json", *flags), env, runs
                )
                print(f"{name:<28} {' '.join(args):<52} {table:>8.3f} {as_json:>8.3f}  {code}")
        finally:
            await mesh.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="", help="only the questions whose name contains this (e.g. 7)")
    options = parser.parse_args()
    asyncio.run(measure(options.sessions, options.runs, options.only))


if __name__ == "__main__":
    main()
