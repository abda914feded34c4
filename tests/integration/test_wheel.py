"""The distribution as users get it: a wheel built from this checkout, installed into fresh
virtual environments, without extras (what `pip install meshwarden` gives agent authors and
operators) and with [all] (what runs a mesh).

Nothing downloads: the wheel builds with the locked setuptools of this environment
(--no-build-isolation), and the environments install from the wheelhouse python3 dev.py fills
from requirements.lock (.venv/wheelhouse), with no index. One environment per set of extras
serves every test of the session. Every command runs outside the checkout, so what answers is
the installed wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.mesh import PROBE, LocalMesh

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"
# What the checkout holds that is no part of a build.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".meshwarden")


def _offline_pip_env() -> dict[str, str]:
    """pip with no configuration at all: no constraints, find-links or indexes of this machine."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "PYTHON"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


@dataclass(frozen=True)
class Install:
    """A virtual environment with the wheel installed, and commands run outside the checkout."""

    prefix: Path
    workdir: Path

    @property
    def meshwarden(self) -> str:
        return str(self.prefix / "bin" / "meshwarden")

    @property
    def python(self) -> str:
        return str(self.prefix / "bin" / "python")

    def run(self, *argv: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=self.workdir,
            env=_offline_pip_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def distributions(self) -> set[str]:
        names = "import importlib.metadata as m, json; print(json.dumps([d.name.lower() for d in m.distributions()]))"
        listing = self.run(self.python, "-c", names)
        assert listing.returncode == 0, listing.stderr
        return set(json.loads(listing.stdout))


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """meshwarden's wheel, built from a copy of the checkout (no stale build/ can leak in)."""
    if not WHEELHOUSE.is_dir():
        message = f"no wheelhouse at {WHEELHOUSE}: run the suite with python3 dev.py test, which fills it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    source = tmp_path_factory.mktemp("source") / "meshwarden"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_SOURCES)
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run(
        [*build, "--wheel-dir", str(out), str(source)],
        env=_offline_pip_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("meshwarden-*.whl")
    return built


class Installs:
    """One environment per set of extras, made on first use and kept for the session."""

    def __init__(self, wheel: Path, tmp: pytest.TempPathFactory) -> None:
        self._wheel, self._tmp = wheel, tmp
        self._made: dict[str, Install] = {}

    def get(self, extras: str) -> Install:
        if extras not in self._made:
            self._made[extras] = self._create(extras)
        return self._made[extras]

    def _create(self, extras: str) -> Install:
        prefix = self._tmp.mktemp(f"venv-{extras or 'base'}")
        venv.EnvBuilder(with_pip=False).create(prefix)
        wanted = f"meshwarden[{extras}] @ {self._wheel.as_uri()}" if extras else str(self._wheel)
        pip = [sys.executable, "-m", "pip", "--python", str(prefix / "bin" / "python"), "install", "--quiet"]
        local = ["--no-index", "--find-links", str(WHEELHOUSE), "--no-compile"]
        done = subprocess.run(
            [*pip, *local, wanted], env=_offline_pip_env(), capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return Install(prefix, self._tmp.mktemp("outside-the-checkout"))


@pytest.fixture(scope="session")
def installs(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installs:
    return Installs(wheel, tmp_path_factory)


@pytest.fixture
def base(installs: Installs) -> Install:
    return installs.get("")


@pytest.fixture
def everything(installs: Installs) -> Install:
    return installs.get("all")


def test_the_wheel_installs_only_the_meshwarden_package_with_real_files(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["meshwarden"]
        app = archive.getinfo("meshwarden/sidecar/app.py")  # the folder's files, not a link to them
        assert app.file_size > 0 and b"async def serve" in archive.read(app)
    assert {n.split("/")[0] for n in names} == {"meshwarden", top_level.split("/")[0]}
    for package in ("sidecar", "registry", "policy_bundle", "v1"):
        assert f"meshwarden/{package}/__init__.py" in names


def test_the_base_install_has_the_sdk_and_cli_without_the_servers_weight(base: Install) -> None:
    installed = base.distributions()
    assert {"meshwarden", "grpcio", "protobuf", "cryptography"} <= installed
    assert not installed & {"aiohttp", "opentelemetry-sdk", "py-consul", "pybreaker", "spiffe", "grpcio-tools"}
    where = base.run(base.python, "-c", "import meshwarden.cli.main as m; print(m.__file__)")
    assert where.stdout.startswith(str(base.prefix)), where
    helped = base.run(base.meshwarden, "--help")
    assert helped.returncode == 0 and "agents" in helped.stdout, helped.stderr


@pytest.mark.parametrize(
    ("argv", "extra"),
    [(["sidecar", "run", "--agent", "a"], "sidecar"), (["registry", "serve"], "registry"), (["demo"], "all")],
)
def test_a_server_command_without_its_extra_names_the_extra_to_install(
    base: Install, argv: list[str], extra: str
) -> None:
    refused = base.run(base.meshwarden, *argv)
    assert refused.returncode == 2, refused
    assert f"pip install 'meshwarden[{extra}]'" in refused.stderr
    assert "Traceback" not in refused.stderr


async def test_installed_servers_run_a_mesh_that_the_base_install_lists_and_joins(
    base: Install, everything: Install, tmp_path: Path
) -> None:
    """[all]: `registry serve` and `sidecar run`; base: an SDK agent and `agents list`."""
    mesh = LocalMesh(tmp_path, meshwarden=[everything.meshwarden])
    try:
        await mesh.start_registry()
        sidecar = await mesh.sidecar("wheel")
        await mesh.agent(sidecar, "1.2.3", python=base.python, script=PROBE)
        listed = base.run(
            base.meshwarden,
            "agents",
            "list",
            "--registry",
            mesh.registry_address,
            "--ca-pin",
            mesh.registry.addresses["ca_fingerprint"] if mesh.registry else "",
            "--operator-token-file",
            str(mesh.registry_data_dir / "operator.token"),
            "--output",
            "json",
        )
        assert listed.returncode == 0, listed.stderr
        assert [(i["agent"], i["version"]) for i in json.loads(listed.stdout)] == [("wheel", "1.2.3")]
        called = base.run(base.meshwarden, "call", "--sidecar", sidecar.addresses["listen"], "echo", '{"n": 1}')
        assert called.returncode == 0, called.stderr
        assert json.loads(called.stdout)["echo"] == {"n": 1}
    except BaseException:
        print(mesh.logs())
        raise
    finally:
        await mesh.close()
