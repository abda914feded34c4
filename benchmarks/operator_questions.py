"""How long each of the operator's thirteen questions (README, "The operator's questions") takes
as one `meshwarden` command, CLI start-up included, against a real registry process holding
10,000 sessions, or 1,000,000 receipts, on SQLite or on PostgreSQL.

    PYTHONPATH=. .venv/bin/python benchmarks/operator_questions.py [--sessions 10000 | --receipts 1000000] \
        [--store postgresql://USER@HOST:PORT/DB] [--ingest 2000] [--runs 3]

The store is filled first (benchmarks/bulk_receipts.py): `--ingest` sessions of four calls
(seven receipts) through the receipt store's ingest path, which keeps every session's
aggregates, principal, signals and call facts in each batch's transaction; then, to reach the
size asked for, every row of those sessions is copied under new ids by SQL, each copy moved
one span of sessions further back in time (the ingest path recomputes each session once per
sidecar chain: a million receipts through it would take the better part of an hour on this
machine). The last session started a minute ago; at 1,000,000 receipts the history spans
about an hour and a half, so `changes` (last 7 days by default) reads every call and
`sessions suspect` finds the sessions idle for 15 minutes. Then `meshwarden
registry serve` starts on the store and every command runs as a fresh process with the
operator token, as an operator runs it, in table and in JSON; and once more in this process
(`warm`: the CLI's main with its imports done: the registry's answer, the TLS handshake and
the rendering, without the interpreter's start-up). Prints the median wall time of each.
Other load on the machine inflates the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import bulk_receipts  # beside this script: python puts its folder on sys.path

from meshwarden.cli.main import main as cli_main
from meshwarden.local_mesh import LocalMesh
from meshwarden.policy_bundle.keys import keygen
from meshwarden.registry.store import Stores
from meshwarden.registry.store.sqlite import DB_NAME, open_sqlite
from meshwarden.supervise import meshwarden_argv

QUESTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("1 running agents", ("agents", "list")),
    ("1 running sessions", ("sessions", "list", "--state", "running")),
    ("1 tasks in progress", ("tasks", "list", "--state", "leased")),
    ("2 who enrolled each agent", ("agents", "list")),  # ENROLLED-BY, read from each SVID at Register
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
    ("10 changes before/after", ("changes",)),
    ("11 approvals", ("approvals", "list", "--all")),
    ("12 refusals by cause", ("costs", "--by", "refusal")),
    ("13 kill switches", ("kill", "list")),
    # every list pages with a keyset cursor: the second page of the sessions, as an operator pages
    ("6 sessions, a page of 100", ("sessions", "list", "--limit", "100")),
)


async def filled(data_dir: Path, store: str, sessions: int, ingest: int) -> None:
    """`ingest` sessions through the ingest path, copied to `sessions` (a multiple of it)."""
    stores: Stores
    if store:
        from meshwarden.registry.store.postgres import open_postgres

        stores = await open_postgres(store, event_log_retention=100, migrate=True)
    else:
        stores = await open_sqlite(data_dir, event_log_retention=100)
    try:
        if await stores.receipts.count():
            raise SystemExit("the store holds receipts already: give a migrated, empty database")
        started = time.perf_counter()
        span_s = ingest * bulk_receipts.SESSION_SPACING_S
        first_at = time.time() - 60.0 - span_s  # the last session a minute ago
        await bulk_receipts.load(stores, ingest, first_at)
        took = time.perf_counter() - started
        print(
            f"ingest path: {ingest} sessions ({ingest * bulk_receipts.RECEIPTS_PER_SESSION} receipts) in {took:.1f} s "
            f"({ingest * bulk_receipts.RECEIPTS_PER_SESSION / took:.0f} receipts/s)"
        )
    finally:
        await stores.close()
    copies = sessions // ingest - 1
    if copies:
        started = time.perf_counter()
        if store:
            await bulk_receipts.copy_postgres(store, copies, span_s)
        else:
            await asyncio.to_thread(bulk_receipts.copy_sqlite, str(data_dir / DB_NAME), copies, span_s)
        print(f"copied {copies} times by SQL in {time.perf_counter() - started:.1f} s")
    print(f"stored {sessions} sessions, {sessions * bulk_receipts.RECEIPTS_PER_SESSION} receipts")


def warm_s(argv: list[str], runs: int) -> float:
    """The median time of the command run in this process (imports done, no interpreter start):
    the registry's answer, the channel's TLS handshake and the rendering, without start-up."""
    times = []
    for _ in range(runs):
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            started = time.perf_counter()
            cli_main(argv)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def median_s(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, int]:
    times, code = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        code = subprocess.run(argv, check=False, capture_output=True, env=env, timeout=60).returncode
        times.append(time.perf_counter() - started)
    return statistics.median(times), code


async def measure(sessions: int, ingest: int, store: str, runs: int, only: str = "") -> None:
    with tempfile.TemporaryDirectory() as directory:
        mesh = LocalMesh(Path(directory), bundle_keys=Path(directory) / "keys")
        signing = keygen(Path(directory) / "signing", "bench")  # the registry needs a trusted bundle key
        (Path(directory) / "keys").mkdir()
        shutil.copy(signing.public_key, Path(directory) / "keys" / signing.public_key.name)
        await filled(mesh.registry_data_dir, store, sessions, ingest)
        registry = await mesh.start_registry("127.0.0.1:0", "", *(("--store", store) if store else ()))
        try:
            flags = ["--registry", registry.addresses["listen"], "--ca-pin", registry.addresses["ca_fingerprint"]]
            env = {
                **os.environ,
                "MESHWARDEN_OPERATOR_TOKEN": (mesh.registry_data_dir / "operator.token").read_text().strip(),
            }
            os.environ["MESHWARDEN_OPERATOR_TOKEN"] = env["MESHWARDEN_OPERATOR_TOKEN"]  # for warm_s
            print(f"{'question':<28} {'command':<52} {'table s':>8} {'json s':>8} {'warm s':>8}  exit")
            for name, args in QUESTIONS:
                if only and only not in name:
                    continue
                table, code = await asyncio.to_thread(median_s, meshwarden_argv(*args, *flags), env, runs)
                as_json, _ = await asyncio.to_thread(
                    median_s, meshwarden_argv(*args, "--output", "json", *flags), env, runs
                )
                warm = await asyncio.to_thread(warm_s, [*args, "--output", "json", *flags], runs)
                print(f"{name:<28} {' '.join(args):<52} {table:>8.3f} {as_json:>8.3f} {warm:>8.3f}  {code}")
        finally:
            await mesh.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--receipts", type=int, default=0, help="instead of --sessions: this many receipts (about)")
    parser.add_argument("--ingest", type=int, default=2000, help="sessions through the ingest path (the rest copied)")
    parser.add_argument("--store", default="", help="postgresql://... (a migrated or empty database); default SQLite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="", help="only the questions whose name contains this (e.g. 7)")
    options = parser.parse_args()
    sessions = -(-options.receipts // bulk_receipts.RECEIPTS_PER_SESSION) if options.receipts else options.sessions
    ingest = min(options.ingest, sessions)
    sessions = -(-sessions // ingest) * ingest  # whole copies: at least as many as asked
    asyncio.run(measure(sessions, ingest, options.store, options.runs, options.only))


if __name__ == "__main__":
    main()
