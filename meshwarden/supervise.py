"""Start meshwarden servers as child processes and wait until they are really ready.

Used by `meshwarden demo`, the integration tests and the benchmarks: a child binds port 0,
prints its ready line (meshwarden.ready) with the real addresses, and is then checked with
grpc.health.v1 until SERVING. Stopping sends SIGTERM, then SIGKILL after a grace period.

Servers that speak only TLS (the registry) are checked over TLS: `start(..., health_tls=...)`
builds the credentials from the ready line (`registry_health_tls` does it for the registry).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshwarden.addresses import parse_host_port
from meshwarden.identity.bootstrap import BootstrapError, learn_registry_ca
from meshwarden.identity.credentials import expect_peer
from meshwarden.identity.spiffe_ids import registry_id
from meshwarden.ready import parse_ready


class StartError(RuntimeError):
    """A child process exited or stayed silent before it was ready; carries its stderr."""


@dataclass(frozen=True)
class HealthTls:
    """How to reach a TLS-only server's health service: credentials and channel options."""

    credentials: grpc.ChannelCredentials
    options: tuple[tuple[str, Any], ...] = ()


# Builds HealthTls from a child's ready line (its addresses and public facts). May block briefly.
HealthTlsFor = Callable[[Mapping[str, str]], HealthTls]


def registry_health_tls(ready: Mapping[str, str]) -> HealthTls:
    """TLS to a registry from its ready line: its CA, read from the TLS port it serves and pinned
    to the ready line's `ca_fingerprint`; the server must prove the registry's SPIFFE ID."""
    learned = learn_registry_ca(parse_host_port(ready["listen"]), pin=ready["ca_fingerprint"])
    return HealthTls(
        grpc.ssl_channel_credentials(root_certificates=learned.bundle_pem),
        tuple(expect_peer(registry_id(ready["trust_domain"]))),
    )


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    addresses: dict[str, str]
    stderr_path: Path
    _stdout_drain: asyncio.Task[None] | None = field(default=None, repr=False)

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def stop(self, grace_s: float = 5.0) -> int:
        """SIGTERM, wait up to `grace_s`, then SIGKILL. Returns the exit code."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self._stdout_drain is not None:
            self._stdout_drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stdout_drain
        return self.process.returncode if self.process.returncode is not None else -1

    async def kill(self) -> None:
        """SIGKILL: a crash, as far as everyone else can tell."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()


async def start(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    health_address_key: str | None = "listen",
    env: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    health_tls: HealthTlsFor | None = None,
) -> Child:
    """Starts `argv`, waits for its ready line and, if `health_address_key` names one of its
    addresses, for grpc.health.v1 SERVING there (over TLS when `health_tls` is given)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = log_dir / f"{name}.stderr.log"
    stderr_file = stderr_path.open("wb")
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=stderr_file, env=child_env, start_new_session=True
    )
    stderr_file.close()
    if process.stdout is None:
        raise StartError(f"{name}: no stdout pipe")
    child = Child(name, process, {}, stderr_path)
    try:
        addresses = await asyncio.wait_for(_read_ready(process.stdout), timeout_s)
        if addresses is None:
            await process.wait()
            raise StartError(f"{name} exited with {process.returncode} before it was ready:\n{child.stderr_text()}")
        child.addresses = addresses
        child._stdout_drain = asyncio.create_task(_drain(process.stdout))
        if health_address_key is not None:
            tls = None if health_tls is None else await asyncio.to_thread(health_tls, addresses)
            await asyncio.wait_for(
                wait_serving(
                    addresses[health_address_key],
                    credentials=None if tls is None else tls.credentials,
                    options=() if tls is None else tls.options,
                ),
                timeout_s,
            )
    except (TimeoutError, StartError, KeyError, BootstrapError) as exc:
        await child.stop(grace_s=1.0)
        if isinstance(exc, StartError):
            raise
        raise StartError(f"{name} was not ready within {timeout_s} s ({exc!r}):\n{child.stderr_text()}") from exc
    except BaseException:
        # Cancelled (Ctrl-C, a test timeout) while waiting: the child is in its own session and
        # never saw the terminal's SIGINT, so stop it here rather than leave it orphaned.
        await asyncio.shield(child.stop(grace_s=1.0))
        raise
    return child


def meshwarden_argv(*args: str) -> list[str]:
    """argv that runs the `meshwarden` CLI with this interpreter (works without the script on PATH)."""
    return [sys.executable, "-m", "meshwarden.cli.main", *args]


async def _read_ready(stream: asyncio.StreamReader) -> dict[str, str] | None:
    while True:
        line = await stream.readline()
        if not line:
            return None
        parsed = parse_ready(line.decode(errors="replace"))
        if parsed is not None:
            return parsed


async def _drain(stream: asyncio.StreamReader) -> None:
    """Keeps reading the child's stdout so a chatty child never blocks on a full pipe."""
    while await stream.read(65536):
        pass


async def wait_serving(
    address: str, *, credentials: grpc.ChannelCredentials | None = None, options: Sequence[tuple[str, Any]] = ()
) -> None:
    """Polls grpc.health.v1 at `address` until the overall status is SERVING."""
    delay = 0.02
    while True:
        channel = (
            grpc.aio.secure_channel(address, credentials, options=list(options))
            if credentials
            else grpc.aio.insecure_channel(address, options=list(options))
        )
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0
            )
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        finally:
            await channel.close()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)
