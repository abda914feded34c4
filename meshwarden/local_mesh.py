"""A mesh of real processes on this machine: a registry, sidecars and agents, each a child
process (meshwarden.supervise) on port 0, stopped in reverse order of start.

The one implementation behind `meshwarden demo` and the integration tests' harness
(tests/integration/mesh.py adds bundles and operator calls on top): how a registry and a
sidecar are started, with which flags, and how the whole group stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from meshwarden.supervise import Child, HealthTlsFor, meshwarden_argv, registry_health_tls, start

DEFAULT_HEARTBEAT_INTERVAL_S = 0.5


def registry_argv(
    data_dir: Path,
    *flags: str,
    listen: str = "127.0.0.1:0",
    mtls_listen: str = "",
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
    command: Sequence[str] = (),
) -> list[str]:
    """`meshwarden registry serve` on `listen` (TLS) and `mtls_listen` (mTLS; port 0 when not
    given), its admin port on a free loopback port, and any further `flags`. `command` runs
    the CLI (default: this interpreter's, from this checkout)."""
    return [
        *(command or meshwarden_argv()),
        "registry",
        "serve",
        "--listen",
        listen,
        *(["--mtls-listen", mtls_listen] if mtls_listen else []),
        "--data-dir",
        str(data_dir),
        "--admin-listen",
        "127.0.0.1:0",
        "--heartbeat-interval-s",
        str(heartbeat_interval_s),
        *flags,
    ]


def sidecar_argv(
    agent: str, registry: str, data_dir: Path, bundle_keys: Path | None, *extra: str, command: Sequence[str] = ()
) -> list[str]:
    """`meshwarden sidecar run` for `agent`, every port on a free loopback port (local API,
    peer, admin, gateway), enrolled with the registry's embedded issuer unless `extra` says
    otherwise; without `bundle_keys` it trusts no bundle key (every bundle is refused)."""
    return [
        *(command or meshwarden_argv()),
        "sidecar",
        "run",
        "--agent",
        agent,
        "--registry",
        registry,
        "--listen",
        "127.0.0.1:0",
        "--peer-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--gateway-listen",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir),
        *(("--bundle-keys", str(bundle_keys)) if bundle_keys is not None else ()),
        *extra,
    ]


class LocalMesh:
    """The processes of one local mesh; every child's stderr is in `workdir/logs`."""

    def __init__(
        self,
        workdir: Path,
        *,
        bundle_keys: Path,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        command: Sequence[str] | None = None,
    ) -> None:
        """`command` runs the CLI (default: this interpreter's, from this checkout; a test of an
        installed wheel passes that environment's script)."""
        self.workdir, self.bundle_keys = workdir, bundle_keys
        self.command = list(command) if command else meshwarden_argv()
        self.heartbeat_interval_s = heartbeat_interval_s
        self.children: list[Child] = []
        self.registry: Child | None = None
        self._started = 0
        self._sidecars = 0

    @property
    def registry_data_dir(self) -> Path:
        return self.workdir / "registry"

    @property
    def registry_address(self) -> str:
        if self.registry is None:
            raise RuntimeError("no registry started")
        return self.registry.addresses["listen"]

    async def start_registry(self, listen: str = "127.0.0.1:0", mtls_listen: str = "", *flags: str) -> Child:
        """The registry; to restart it where sidecars expect it, pass both addresses of the
        previous one (stopped first)."""
        argv = registry_argv(
            self.registry_data_dir,
            *flags,
            listen=listen,
            mtls_listen=mtls_listen,
            heartbeat_interval_s=self.heartbeat_interval_s,
            command=self.command,
        )
        self.registry = await self.start_process("registry", argv, health_tls=registry_health_tls)
        return self.registry

    async def start_sidecar(
        self,
        agent: str,
        *extra: str,
        name: str = "",
        registry: str | None = None,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
    ) -> Child:
        """A sidecar with its own data directory (identity, sockets, spool; by default
        `sidecars/AGENT-N`, N counting the sidecars started). With `wait_ready=False` it returns
        after the ready line, before its health is SERVING."""
        self._sidecars += 1
        directory = data_dir or self.workdir / "sidecars" / f"{agent}-{self._sidecars}"
        argv = sidecar_argv(
            agent, registry or self.registry_address, directory, self.bundle_keys, *extra, command=self.command
        )
        name = name or f"sidecar-{agent}"
        return await self.start_process(name, argv, env=env, health_address_key="listen" if wait_ready else None)

    async def start_process(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        health_tls: HealthTlsFor | None = None,
        health_address_key: str | None = "listen",
    ) -> Child:
        """Any child of this mesh (an agent, a tool), ready once its ready line is printed and
        its health at `health_address_key` is SERVING; stopped with the rest."""
        self._started += 1
        child = await start(
            f"{self._started:02d}-{name}",
            argv,
            log_dir=self.workdir / "logs",
            health_tls=health_tls,
            env=env,
            health_address_key=health_address_key,
        )
        self.children.append(child)
        return child

    def logs(self) -> str:
        return "\n".join(f"----- {c.name} (exit {c.process.returncode})\n{c.stderr_text()}" for c in self.children)

    async def stop(self) -> list[tuple[str, int]]:
        """Stops every child, the last started first; their exit codes, in that order."""
        return [(child.name, await child.stop()) for child in reversed(self.children)]
