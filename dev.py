#!/usr/bin/env python3
"""The quickstart commands, with all their set-up:

    python3 dev.py demo     run a local mesh with a multi-agent scenario
    python3 dev.py test     run the checks: ruff, mypy, then the whole test suite (one pytest-xdist
                            worker per CPU, at least two)
    python3 dev.py lock     refresh requirements.lock from pyproject.toml, then regenerate the
                            stubs with the locked grpcio-tools (`lock --upgrade` moves every pin
                            to the newest release; `lock --upgrade-package NAME` only NAME)

Needs only Python 3.11+ and pip. On first use, and whenever pyproject.toml or requirements.lock
changes, it creates a virtual environment in .venv and installs into it exactly what the lock
names, hash-checked: the wheels are downloaded once into .venv/wheelhouse and installed from
there with no index, so every machine gets the same files whatever its pip configuration, and
the suite's wheel test installs from the same wheelhouse without the network.
Anything after the command is passed on: `python3 dev.py test tests/unit -k routing`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
LOCK = ROOT / "requirements.lock"
VENV = Path(os.environ.get("MESHWARDEN_VENV", ROOT / ".venv"))
STAMP = VENV / ".meshwarden-installed"
WHEELHOUSE = VENV / "wheelhouse"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
# The extras the development environment installs, and so the ones the lock resolves.
EXTRAS = ("all", "test")
# Where the lock must install from wheels alone (`dev.py lock` checks each): (uv's platform, Python).
SUPPORTED = [(f"{arch}-unknown-linux-gnu", py) for arch in ("x86_64", "aarch64") for py in ("3.11", "3.12", "3.13")]
# Debian packages the test suite uses (the tests that need one skip without it, or fail under
# CI=true). `python3 dev.py test` installs the missing ones when it runs as root with apt-get.
SYSTEM_PACKAGES: list[str] = [
    "sqlite3",  # tests/integration/test_receipts.py edits the registry's database behind its back
    "iproute2",  # tests/integration/test_partitions.py: network namespaces, veth pairs
    "nftables",  # tests/integration/test_partitions.py: random packet loss (the kernel has no netem)
    "postgresql",  # the registry's PostgreSQL store: tests/postgres_cluster.py runs a throwaway cluster
    "prometheus",  # promtool: tests/unit/test_deploy_observability.py checks deploy/prometheus and deploy/grafana
    "chromium",  # tests/integration/test_console.py: the web console in a real browser (Playwright)
]


def say(message: str) -> None:
    print(f"dev.py: {message}", flush=True)


def ensure_environment() -> None:
    """Make .venv hold exactly the locked packages plus meshwarden itself (editable)."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under whatever python3 is on PATH
        sys.exit(f"meshwarden needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = _inputs_digest()
    if PYTHON.exists() and WHEELHOUSE.is_dir() and STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    unlocked = unlocked_requirements()
    if unlocked and os.environ.get("CI") == "true":
        sys.exit(f"dev.py: requirements.lock does not pin {', '.join(unlocked)}: run python3 dev.py lock and commit it")
    if not PYTHON.exists():
        say(f"creating a virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    say("installing the locked dependencies from requirements.lock (when it or pyproject.toml changes)")
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    # The download honours the machine's pip configuration (index, certificates, proxy): the
    # hashes decide which files are acceptable, wherever they come from.
    subprocess.run(
        [*pip, "download", "-qq", "--require-hashes", "--no-deps", "--only-binary", ":all:"]
        + ["--dest", str(WHEELHOUSE), "--requirement", str(LOCK)],
        check=True,
    )
    _prune_wheelhouse()
    # The installs see no configuration at all (no constraints, find-links or extra indexes):
    # only the wheelhouse, and only the locked hashes.
    offline = _without_pip_configuration()
    local = ["--no-index", "--find-links", str(WHEELHOUSE)]
    subprocess.run(
        [*pip, "install", "--quiet", *local, "--require-hashes", "--only-binary", ":all:", "-r", str(LOCK)],
        check=True,
        env=offline,
    )
    subprocess.run(
        [*pip, "install", "-qq", *local, "--no-deps", "--no-build-isolation", "--editable", str(ROOT)],
        check=True,
        env=offline,
    )
    if not unlocked:
        _remove_unlocked(pip, offline)
    else:  # someone added a dependency to pyproject.toml: work on until the lock is refreshed
        say(f"requirements.lock does not pin {', '.join(unlocked)} yet: installing unpinned (python3 dev.py lock pins)")
        subprocess.run([*pip, "download", "-qq", "--dest", str(WHEELHOUSE), *unlocked], check=True)
        subprocess.run([*pip, "install", "--quiet", *local, *unlocked], check=True, env=offline)
    STAMP.write_text(wanted + "\n")


def _prune_wheelhouse() -> None:
    """Keep only the files the lock names, so what installs from here without hashes (the
    wheel test) gets the locked versions too, never a file an earlier lock left."""
    locked = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", LOCK.read_text()))
    for wheel in WHEELHOUSE.glob("*.whl"):
        if hashlib.sha256(wheel.read_bytes()).hexdigest() not in locked:
            wheel.unlink()


def _inputs_digest() -> str:
    digest = hashlib.sha256()
    for source in (ROOT / "pyproject.toml", LOCK):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _without_pip_configuration() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no configuration file
    return env


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_names() -> set[str]:
    return {_normalized(m[1]) for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", LOCK.read_text(), re.M)}


def unlocked_requirements() -> list[str]:
    """What pyproject.toml asks for (the base and EXTRAS, with the extras those name) that the
    lock does not pin, by name; empty when the lock is up to date with pyproject.toml."""
    import tomllib  # Python 3.11+: imported after the version check

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups: dict[str, list[str]] = project.get("optional-dependencies", {})
    wanted, pending, seen = list(project.get("dependencies", [])), list(EXTRAS), set()
    while pending:
        extra = pending.pop()
        seen.add(extra)
        for requirement in groups.get(extra, []):
            name, extras = _requirement_name(requirement)
            if name == "meshwarden":
                pending.extend(e for e in extras if e not in seen)
            else:
                wanted.append(requirement)
    locked = locked_names()
    return [r for r in wanted if _requirement_name(r)[0] not in locked]


def _requirement_name(requirement: str) -> tuple[str, list[str]]:
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", requirement)
    if found is None:
        sys.exit(f"dev.py: cannot read the requirement {requirement!r} in pyproject.toml")
    return _normalized(found[1]), [e.strip() for e in (found[2] or "").split(",") if e.strip()]


def _remove_unlocked(pip: list[str], env: dict[str, str]) -> None:
    """Uninstall what an earlier lock brought and this one no longer names."""
    listing = subprocess.run([*pip, "list", "--format=json"], check=True, env=env, capture_output=True, text=True)
    keep = locked_names() | {"meshwarden"}
    extra = sorted(p["name"] for p in json.loads(listing.stdout) if _normalized(p["name"]) not in keep)
    if extra:
        say(f"removing packages the lock no longer names: {', '.join(extra)}")
        subprocess.run([*pip, "uninstall", "--quiet", "--yes", *extra], check=True, env=env)


def ensure_system_packages() -> None:
    """Install the missing SYSTEM_PACKAGES with apt-get when we may; otherwise say what is missing."""
    missing = [name for name in SYSTEM_PACKAGES if not _dpkg_installed(name)]
    if not missing:
        return
    if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        say(
            f"missing system packages {' '.join(missing)}: the tests that need them skip (fail under CI=true); "
            f"install them with `sudo apt-get install {' '.join(missing)}`"
        )
        return
    say(f"installing system packages the tests use: {' '.join(missing)} (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    subprocess.run(install, check=True, env=env, stdout=subprocess.DEVNULL)


def _dpkg_installed(name: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    status = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Status}", name], capture_output=True, text=True, check=False
    )
    return status.returncode == 0 and status.stdout.strip().endswith(" installed")


def lock(args: list[str]) -> int:
    """Re-resolve requirements.lock for every supported platform, sync .venv, regenerate the stubs."""
    uv = BIN / "uv"
    if not uv.exists():
        ensure_environment()  # the current lock brings uv
    compiled = subprocess.run(
        [str(uv), "pip", "compile", "--quiet", f"--python={PYTHON}", str(ROOT / "pyproject.toml")]
        + [f"--extra={extra}" for extra in EXTRAS]
        + ["--universal", "--python-version=3.11", "--generate-hashes"]
        + ["--custom-compile-command=python3 dev.py lock", f"--output-file={LOCK}", *args],
        cwd=ROOT,
        check=False,
    )
    if compiled.returncode != 0:
        return compiled.returncode
    for platform, python in SUPPORTED:
        wheels_only = [str(uv), "pip", "compile", "--quiet", "--no-deps", "--only-binary=:all:", str(LOCK)]
        target = [f"--python-platform={platform}", f"--python-version={python}", f"--python={PYTHON}"]
        target.append(f"--output-file={os.devnull}")
        if subprocess.run([*wheels_only, *target], cwd=ROOT, check=False).returncode != 0:
            say(f"requirements.lock lacks wheels for Python {python} on {platform} (see above); pin another version")
            return 1
    ensure_environment()
    say("regenerating meshwarden/v1 with the locked grpcio-tools")
    return run([str(PYTHON), str(ROOT / "proto" / "generate.py")])


def run(argv: list[str]) -> int:
    return subprocess.run(argv, cwd=ROOT, check=False).returncode


def whole_suite_workers() -> list[str]:
    """The whole suite runs on one pytest-xdist worker per CPU (at least two): most of its time
    is real processes starting and waiting on each other, so two workers on two cores finish
    sooner than one. Each test file stays on one worker, so a module's shared mesh starts once."""
    return ["-n", str(max(2, os.cpu_count() or 2)), "--dist", "loadfile"]


def main(args: list[str]) -> int:
    if not args or args[0] not in {"demo", "test", "lock"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    if command == "lock":
        return lock(rest)
    ensure_environment()
    if command == "demo":
        return run([str(BIN / "meshwarden"), "demo", *rest])
    ensure_system_packages()
    checks = [
        [str(PYTHON), "-m", "ruff", "check", "."],
        [str(PYTHON), "-m", "mypy", "meshwarden", "benchmarks"],
    ]
    failed = [c[2] for c in checks if not rest and run(c) != 0]
    code = run([str(PYTHON), "-m", "pytest", *(rest or whole_suite_workers())])
    if failed:
        print(f"dev.py: {', '.join(failed)} found problems (see above)", file=sys.stderr)
        return code or 1
    return code


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as failed:  # the command printed why; say which one it was
        sys.exit(f"dev.py: `{' '.join(map(str, failed.cmd))}` failed with exit code {failed.returncode} (see above)")
