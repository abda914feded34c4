"""The systemd units and env examples in deploy/ against the code they run, so they cannot rot:
their flags parse and load, their variables are ones the code reads, and their paths agree."""

from __future__ import annotations

import argparse
import inspect
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

import meshwarden.client
from meshwarden.addresses import UnixSocket
from meshwarden.cli.main import build_parser
from meshwarden.config_layers import Option
from meshwarden.names import AGENT_NAME
from meshwarden.registry import config as registry_config
from meshwarden.sidecar import config as sidecar_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SYSTEMD = DEPLOY / "systemd"
AGENT = "billing"  # what %i stands for in these tests, and the agent deploy/README.md uses
TOP_LEVEL_FLAGS = {"--log-format", "--log-level"}
ENV_ASSIGNMENT = re.compile(r"^(#?)\s*(MESHWARDEN_[A-Z0-9_]+)=(.*)$")


@dataclass(frozen=True)
class Component:
    unit: str
    env_example: str
    env_file: str  # as the unit names it, %i unexpanded
    prefix: str
    options: Sequence[Option[Any]]
    command: tuple[str, str]
    data_dir: str


REGISTRY = Component(
    "meshwarden-registry.service",
    "registry.env.example",
    "/etc/meshwarden/registry.env",
    registry_config.ENV_PREFIX,
    registry_config.OPTIONS,
    ("registry", "serve"),
    "/var/lib/meshwarden/registry",
)
SIDECAR = Component(
    "meshwarden-sidecar@.service",
    "sidecar.env.example",
    "/etc/meshwarden/sidecar-%i.env",
    sidecar_config.ENV_PREFIX,
    sidecar_config.OPTIONS,
    ("sidecar", "run"),
    "/var/lib/meshwarden/sidecars/%i",
)
COMPONENTS = [pytest.param(REGISTRY, id="registry"), pytest.param(SIDECAR, id="sidecar")]


Unit = dict[str, dict[str, list[str]]]


def read_unit(path: Path) -> Unit:
    """Sections of key -> every value given (keys may repeat); comments dropped, `\\` lines joined."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith(("#", ";")) or (not line and not pending):
            continue
        line = f"{pending} {line}".strip() if pending else line
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        pending = ""
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and section is not None, f"{path.name}: not KEY=VALUE inside a section: {line!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def service(c: Component) -> dict[str, list[str]]:
    return read_unit(SYSTEMD / c.unit)["Service"]


def one(c: Component, key: str) -> str:
    values = service(c)[key]
    assert len(values) == 1, f"{c.unit}: {key}= given {len(values)} times"
    return values[0]


def instance(text: str) -> str:
    return text.replace("%i", AGENT)


def env_example(c: Component) -> tuple[dict[str, str], set[str]]:
    """The variables the example sets, and those it only documents (commented out)."""
    active: dict[str, str] = {}
    documented: set[str] = set()
    for line in (SYSTEMD / c.env_example).read_text().splitlines():
        match = ENV_ASSIGNMENT.match(line)
        if match and match[1]:
            documented.add(match[2])
        elif match:
            active[match[2]] = match[3]
    return active, documented


def unit_environment(c: Component) -> dict[str, str]:
    """What ExecStart sees with the example env file installed: Environment=, then the file."""
    env: dict[str, str] = {}
    for assignment in service(c).get("Environment", []):
        for word in shlex.split(assignment):
            name, _, value = word.partition("=")
            env[name] = value
    env.update(env_example(c)[0])
    return env


def exec_start(c: Component) -> list[str]:
    """ExecStart as argv for one instance, ${VAR} expanded from unit_environment()."""
    env = unit_environment(c)

    def expand(match: re.Match[str]) -> str:
        assert match[1] in env, f"{c.unit}: ExecStart uses ${{{match[1]}}}, set neither in the unit nor the example"
        return env[match[1]]

    return shlex.split(re.sub(r"\$\{(\w+)\}", expand, instance(one(c, "ExecStart"))))


def flags_in(argv: Sequence[str]) -> list[str]:
    return [word.partition("=")[0] for word in argv if word.startswith("--")]


def parsed(c: Component) -> argparse.Namespace:
    argv = exec_start(c)
    assert argv[0] == "/opt/meshwarden/bin/meshwarden", "the units run the venv deploy/README.md installs"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.action) == c.command
    return args


def option_for(c: Component, env_name: str) -> Option[Any]:
    by_env = {opt.env_name(c.prefix): opt for opt in c.options}
    assert env_name in by_env, f"{c.env_example}: {env_name} is no setting of {' '.join(c.command)}"
    return by_env[env_name]


def variables_the_code_reads() -> set[str]:
    names = {opt.env_name(c.prefix) for c in (REGISTRY, SIDECAR) for opt in c.options}
    names |= {f"MESHWARDEN_{c.prefix}_CONFIG" for c in (REGISTRY, SIDECAR)}
    sdk = inspect.getsource(meshwarden.client)
    names |= {name for name in ("MESHWARDEN_SIDECAR_TOKEN", "MESHWARDEN_SIDECAR_TOKEN_FILE") if f'"{name}"' in sdk}
    names |= {"MESHWARDEN_STORE"} if '"MESHWARDEN_STORE"' in inspect.getsource(registry_config) else set()
    return names


def under(path: str, directory: str) -> bool:
    return PurePosixPath(directory) in (PurePosixPath(path), *PurePosixPath(path).parents)


@pytest.mark.parametrize("c", COMPONENTS)
def test_exec_start_flags_are_real_options(c: Component) -> None:
    known = {opt.flag for opt in c.options} | TOP_LEVEL_FLAGS
    unknown = [flag for flag in flags_in(exec_start(c)) if flag not in known]  # argparse alone accepts prefixes
    assert not unknown, f"{c.unit}: ExecStart passes {unknown}, which are no options"
    parsed(c)


@pytest.mark.parametrize("c", COMPONENTS)
def test_exec_start_with_the_example_env_loads(c: Component) -> None:
    env = env_example(c)[0]
    if c is REGISTRY:
        cfg = registry_config.load(parsed(c), env)
        assert not cfg.only_on_loopback and not cfg.open_enrollment_enabled, "beyond loopback, join tokens only"
        assert str(cfg.data_dir) == c.data_dir
    else:
        scfg = sidecar_config.load(parsed(c), env)
        assert scfg.agent == AGENT and str(scfg.data_dir) == instance(c.data_dir)
        assert isinstance(scfg.listen, UnixSocket) and scfg.api_token_file is not None
        assert scfg.join_token_file is not None and not scfg.join_token, "the join token must come from a file"
        assert scfg.bundle_keys == Path("/etc/meshwarden/bundle-keys")


@pytest.mark.parametrize("c", COMPONENTS)
def test_env_example_variables_are_read_and_not_overridden(c: Component) -> None:
    active, documented = env_example(c)
    assert active or documented, f"{c.env_example} names no variable"
    raw_exec = one(c, "ExecStart")
    fixed = set(flags_in(shlex.split(raw_exec)))
    for name in sorted(set(active) | documented):
        opt = option_for(c, name)
        # a flag wins over its variable: a variable the unit fixes by flag would be silently ignored
        assert opt.flag not in fixed or f"${{{name}}}" in raw_exec, f"{c.unit} fixes {opt.flag}; drop {name}"


@pytest.mark.parametrize("c", COMPONENTS)
def test_unit_reads_its_env_file_and_uses_real_variables(c: Component) -> None:
    assert one(c, "EnvironmentFile") == c.env_file
    for assignment in service(c).get("Environment", []):
        for word in shlex.split(assignment):
            option_for(c, word.partition("=")[0])


def test_every_meshwarden_variable_in_deploy_is_real() -> None:
    real = variables_the_code_reads()
    assert {"MESHWARDEN_SIDECAR_TOKEN", "MESHWARDEN_SIDECAR_TOKEN_FILE"} <= real, "the SDK no longer reads them"
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        unknown = set(re.findall(r"MESHWARDEN_[A-Z0-9_]*[A-Z0-9]", path.read_text())) - real
        assert not unknown, f"{path.relative_to(DEPLOY)} names variables the code does not read: {sorted(unknown)}"


@pytest.mark.parametrize("c", COMPONENTS)
def test_data_dir_is_the_state_directory_and_writable(c: Component) -> None:
    args = parsed(c)
    data_dir = str(args.data_dir)
    assert data_dir == instance(c.data_dir)
    assert data_dir == "/var/lib/" + instance(one(c, "StateDirectory"))
    writable = instance(one(c, "ReadWritePaths")).split()
    assert any(under(data_dir, path) for path in writable), f"{c.unit}: ReadWritePaths misses {data_dir}"


def test_sidecar_socket_is_in_its_runtime_directory() -> None:
    args = parsed(SIDECAR)
    socket = args.listen.removeprefix("unix:")
    assert args.listen.startswith("unix:") and socket == f"/run/meshwarden/{AGENT}/sidecar.sock"
    runtime_dir = "/run/" + instance(one(SIDECAR, "RuntimeDirectory"))
    assert PurePosixPath(socket).parent == PurePosixPath(runtime_dir)
    writable = instance(one(SIDECAR, "ReadWritePaths")).split()
    assert any(under(runtime_dir, path) for path in writable), "ReadWritePaths misses the socket directory"


def test_readme_points_the_agent_at_the_unit_s_socket_and_token() -> None:
    args = parsed(SIDECAR)
    readme = (DEPLOY / "README.md").read_text()
    assert f"--sidecar {args.listen}" in readme
    assert f"MESHWARDEN_SIDECAR_TOKEN_FILE={args.api_token_file}" in readme
    assert str(args.join_token_file) in readme and instance(SIDECAR.env_file) in readme
    for c in (REGISTRY, SIDECAR):
        assert c.unit in readme and c.env_example in readme


@pytest.mark.parametrize("c", COMPONENTS)
def test_unit_is_hardened_and_restarts(c: Component) -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",  # both components shut down cleanly on SIGTERM
        "CapabilityBoundingSet": "",
    }
    assert {key: one(c, key) for key in expected} == expected
    assert one(c, "User") not in {"", "root", "0"}


def test_sidecar_template_names_only_its_instance() -> None:
    assert AGENT_NAME.fullmatch(AGENT)
    text = (SYSTEMD / SIDECAR.unit).read_text()
    assert set(re.findall(r"%.", text)) == {"%i"}, "only %i (the agent name) is meant to vary"
    assert "%i" not in (SYSTEMD / REGISTRY.unit).read_text()


def test_registry_hosts_share_one_postgresql_through_the_drop_in() -> None:
    drop_in = read_unit(SYSTEMD / "meshwarden-registry.service.d" / "postgresql.conf")["Service"]
    (env_file,) = drop_in["EnvironmentFile"]
    assert env_file == "/etc/meshwarden/registry-store.env"
    store_env = {}
    for line in (SYSTEMD / "registry-store.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            store_env[name] = value
    env = {**env_example(REGISTRY)[0], **store_env}
    cfg = registry_config.load(parsed(REGISTRY), env)
    assert cfg.store.startswith("postgresql://") and "@" in cfg.store
    assert not any("PASSWORD" in name for name in env_example(REGISTRY)[0]), "the password belongs in the 0600 file"
    (pre,) = drop_in["ExecStartPre"]
    argv = shlex.split(pre)
    assert argv[0] == shlex.split(one(REGISTRY, "ExecStart"))[0]
    migrate = build_parser().parse_args(argv[1:])
    assert (migrate.command, migrate.action) == ("registry", "migrate")
    assert str(migrate.data_dir) == REGISTRY.data_dir
