"""The demo: a support desk on a local mesh, every piece a real process on real sockets.

Starts the registry, then each agent with its own sidecar, and a "frontdesk" sidecar that the
demo itself calls through, as an agent would. It files tickets, shows the mesh refusing bad
calls before they leave, isolates a failing agent instance and fails calls over to a healthy
one, routes around a registry outage, and stops everything cleanly.
Exits non-zero when anything did not go as the narration says.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshwarden.client import Client
from meshwarden.demo import pricing, ticket_tools
from meshwarden.demo.approval_section import refund_waits_for_approval
from meshwarden.demo.budgets_section import one_workflow_over_budget
from meshwarden.demo.operator_flags import operator_flags
from meshwarden.demo.sessions_section import sessions_and_costs
from meshwarden.demo.task_section import frozen_holder_loses_its_refund
from meshwarden.errors import MeshError
from meshwarden.local_mesh import LocalMesh
from meshwarden.supervise import Child, meshwarden_argv
from meshwarden.v1 import sidecar_pb2, sidecar_pb2_grpc


@dataclass(frozen=True)
class AgentSpec:
    agent: str
    module: str
    version: str


AGENTS = [
    AgentSpec("kb", "meshwarden.demo.kb_agent", "1.2.0"),
    AgentSpec("billing", "meshwarden.demo.billing_agent", "2.3.1"),
    AgentSpec("billing", "meshwarden.demo.billing_agent", "2.4.0"),
    AgentSpec("support", "meshwarden.demo.support_agent", "1.0.0"),
]


class Narrator:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def section(self, title: str) -> None:
        print(f"\n== {title}", flush=True)

    def say(self, text: str) -> None:
        print(f"   {text}", flush=True)

    def ok(self, text: str) -> None:
        print(f"   ok    {text}", flush=True)

    def fail(self, text: str) -> None:
        self.failures.append(text)
        print(f"   FAIL  {text}", flush=True)


KB_MAINTENANCE = """@id("kb-maintenance")
@reason("the knowledge base is in maintenance; try again in a few minutes")
forbid (principal, action == Action::"call", resource == Capability::"kb.search");
"""


class PolicyDesk:
    """The platform team's side: a bundle in a directory, a signing key, and the real
    `meshwarden bundle ...` commands, run as a person would run them."""

    def __init__(self, workdir: Path, registry: Child, n: Narrator) -> None:
        self.directory, self.keys, self.trusted = workdir / "policy", workdir / "keys", workdir / "trusted-keys"
        self._registry, self._n, self._revision = registry, n, 0
        self._base = ""

    async def prepare(self, models_json: str) -> None:
        await _cli(self._n, "bundle", "init", "--models", str(self.directory))
        (self.directory / "models.json").write_text(models_json)  # the demo's provider and models
        ticket_tools.add_to_bundle(self.directory)  # the ticket MCP server, its tool's risk, who may call it
        self._base = (self.directory / "manifest.toml").read_text()

    async def release(self, *, extra: dict[str, str] | None = None, wait: bool = True) -> None:
        """Edit, build, sign and push the next revision, with `extra` policy files added."""
        self._revision += 1
        for stale in (self.directory / "policies").glob("kb-*.cedar"):
            stale.unlink()
        for name, text in (extra or {}).items():
            (self.directory / "policies" / name).write_text(text)
        (self.directory / "manifest.toml").write_text(
            self._base.replace("revision = 1", f"revision = {self._revision}")
        )
        artifact = self.directory.parent / f"demo.rev{self._revision}.bundle.json"
        await _cli(self._n, "bundle", "build", str(self.directory), "-o", str(artifact), quiet=True)
        await _cli(
            self._n,
            "bundle",
            "sign",
            str(artifact),
            "--key",
            str(self.keys / "platform-1.key"),
            "--key-id",
            "platform-1",
            quiet=True,
        )
        started = time.perf_counter()
        await _cli(
            self._n,
            "bundle",
            "push",
            str(artifact),
            *operator_flags(self._registry, self.directory.parent),
            *(["--wait-s", "5"] if wait else []),
        )
        if wait:
            self._n.ok(
                f"every sidecar enforces revision {self._revision} "
                f"{(time.perf_counter() - started) * 1000:.0f} ms after the push command started"
            )


async def _cli(n: Narrator, *args: str, quiet: bool = False) -> None:
    """Runs one `meshwarden` command the way a person would, and shows it."""
    n.say("$ meshwarden " + " ".join(a if len(a) < 60 else a[:24] + "…" for a in args))
    done = await asyncio.to_thread(subprocess.run, meshwarden_argv(*args), capture_output=True, text=True, timeout=60)
    if not quiet:
        for line in done.stdout.splitlines()[:6]:
            n.say(f"  {line}")
    if done.returncode != 0:
        n.fail(f"meshwarden {args[0]} {args[1]} exited {done.returncode}: {done.stderr.strip()}")
        raise RuntimeError(f"meshwarden {' '.join(args[:2])} failed")


async def _signing_key(workdir: Path, n: Narrator) -> None:
    """The platform team's bundle signing key; the registry and the sidecars get the public half."""
    keys, trusted = workdir / "keys", workdir / "trusted-keys"
    await _cli(n, "bundle", "keygen", "--key-id", "platform-1", "--out-dir", str(keys))
    trusted.mkdir(parents=True, exist_ok=True)
    shutil.copy(keys / "platform-1.pub", trusted / "platform-1.pub")


class Mesh(LocalMesh):
    """The processes of the demo (meshwarden.local_mesh), stopped in reverse order of start."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, bundle_keys=workdir / "trusted-keys", heartbeat_interval_s=1.0)

    async def start_demo_sidecar(self, agent: str, index: int, *extra: str) -> Child:
        """Named and stored by index, with a fixed instance id, so the story can name it."""
        return await self.start_sidecar(
            agent,
            "--instance-id",
            f"{agent}-{index}",
            *extra,
            name=f"sidecar-{agent}-{index}",
            data_dir=self.workdir / "sidecars" / f"{agent}-{index}",
        )

    async def start_agent(self, spec: AgentSpec, sidecar: Child, index: int, *extra: str) -> Child:
        argv = [sys.executable, "-m", spec.module, "--sidecar", sidecar.addresses["listen"], "--version", spec.version]
        gateway = ["--gateway", sidecar.addresses["gateway"]]  # the agent calls its models through its sidecar
        return await self.start_process(f"agent-{spec.agent}-{index}", [*argv, *gateway, *extra])

    async def start_model_provider(self) -> tuple[Child, Path]:
        """The stand-in model provider, and the 0600 file with its key that only sidecars read."""
        key = "sk-demo-" + secrets.token_urlsafe(24)
        keys = self.workdir / "provider-keys"
        keys.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_file = keys / "standin.key"
        key_file.touch(mode=0o600)
        key_file.write_text(key + "\n")
        child = await self.start_process(
            "model-provider",
            [sys.executable, "-m", "meshwarden.demo.model_provider", "--key", key],
            health_address_key=None,  # an HTTP server: its ready line says it listens
        )
        return child, key_file

    def sidecar_named(self, name: str) -> Child:
        return next(child for child in self.children if child.name.endswith(f"-{name}"))


async def run_demo(keep_logs: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="meshwarden-demo-"))
    narrator = Narrator()
    mesh = Mesh(workdir)
    print("meshwarden demo: a support desk of AI agents on a local mesh")
    print(f"(work directory {workdir}; every process's log is in {workdir / 'logs'})")
    try:
        await _scenario(mesh, narrator)
    except Exception as exc:  # noqa: BLE001 - the demo's rescue: say what broke, keep the logs
        narrator.fail(f"the demo stopped early: {type(exc).__name__}: {exc}")
    finally:
        narrator.section("Stopping every process")
        codes = await mesh.stop()
        unclean = [f"{name} exited {code}" for name, code in codes if code != 0]
        if unclean:
            narrator.fail("not every process stopped cleanly: " + ", ".join(unclean))
        else:
            narrator.ok(f"{len(codes)} processes stopped cleanly (exit code 0)")
    if narrator.failures:
        print(f"\nThe demo found {len(narrator.failures)} problem(s); logs kept in {workdir / 'logs'}")
        return 1
    print("\nDone: every call went through the mesh, and every refusal said why.")
    if not keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


async def _scenario(mesh: Mesh, n: Narrator) -> None:
    n.section("Starting the registry; the platform team signs and pushes a Cedar policy bundle")
    await _signing_key(mesh.workdir, n)  # the registry verifies pushed bundles with its public half
    registry = await mesh.start_registry()
    n.ok(f"registry on {registry.addresses['listen']} (pid {registry.process.pid})")
    provider, key_file = await mesh.start_model_provider()
    n.ok(
        f"a model provider stand-in on {provider.addresses['listen']}: its key is in {key_file} (0600), "
        "which sidecars read and agents never see"
    )
    policy = PolicyDesk(mesh.workdir, registry, n)
    await policy.prepare(pricing.models_json(f"http://{provider.addresses['listen']}", str(key_file)))
    await policy.release(wait=False)
    n.section("One sidecar per agent, each a separate process beside its agent")
    for index, spec in enumerate(AGENTS, start=1):
        support = spec.agent == "support"  # reads tickets through its sidecar's MCP endpoint
        sidecar = await mesh.start_demo_sidecar(
            spec.agent, index, *(ticket_tools.sidecar_flags(mesh.workdir) if support else ())
        )
        agent = await mesh.start_agent(spec, sidecar, index, *(ticket_tools.agent_flags(sidecar) if support else ()))
        n.ok(
            f"{spec.agent} {spec.version}: agent pid {agent.process.pid}, sidecar pid {sidecar.process.pid} "
            f"(local API {sidecar.addresses['listen']}, peer {sidecar.addresses['peer']})"
        )
    # Quick to isolate a failing instance and quick to try it again, so the demo stays short.
    frontdesk = await mesh.start_demo_sidecar("frontdesk", 0, "--breaker-failures", "3", "--breaker-reset-s", "2")
    n.ok(f"frontdesk sidecar on {frontdesk.addresses['listen']}: the demo calls through it, as an agent would")

    n.section("Who is who: every sidecar enrolled with the registry's embedded SPIFFE issuer")
    await _print_catalog(registry, mesh.workdir, n)
    billing_peer = mesh.sidecar_named("sidecar-billing-2").addresses["peer"]
    refused = await _plaintext_is_refused(billing_peer)
    (n.ok if refused == "UNAVAILABLE" else n.fail)(
        f"a plaintext client on billing's peer port {billing_peer}: {refused} (mTLS only; the caller is its certificate)"
    )

    async with Client(frontdesk.addresses["listen"]) as mesh_client:
        await _wait_routable(mesh_client, n)
        n.section("A ticket: frontdesk -> support -> kb and billing, every hop through two sidecars")
        ticket = {
            "ticket_id": "T-1001",
            "customer_id": "C42",
            "text": "I was charged twice, please refund the duplicate charge",
            "charged_twice_cents": 1999,
        }
        started = time.perf_counter()
        result = await mesh_client.invoke("support.resolve_ticket", ticket, timeout=10, session_id="demo-session-1")
        elapsed_ms = (time.perf_counter() - started) * 1000
        n.ok(f"support.resolve_ticket answered by {result.agent} {result.version} in {elapsed_ms:.1f} ms")
        for step in result.value["steps"]:
            n.say(f"      {step['call']:<16} answered by {step['answered_by']}")
        n.say(f"      resolution: {result.value['resolution']}")

        n.section("Twenty tickets with refunds: billing.refund (version ^2) spread over both billing instances")
        seen: Counter[str] = Counter()
        for i in range(20):
            r = await mesh_client.invoke(
                "support.resolve_ticket",
                {**ticket, "ticket_id": f"T-{1100 + i}", "charged_twice_cents": 100 + i},
                timeout=10,
            )
            seen.update(s["answered_by"] for s in r.value["steps"] if s["call"] == "billing.refund")
        for who, count in sorted(seen.items()):
            n.say(f"      {count:>2} refunds by {who}")
        (n.ok if len(seen) == 2 else n.fail)(
            f"{len(seen)} instances shared the load (the less loaded of two random picks)"
        )

        n.section("Policy: what the bundle forbids is refused before it leaves, and the refusal says why")
        await _expect_refusal(
            n,
            "frontdesk (tier 1) calling billing.refund (risk tier 3) itself",
            grpc.StatusCode.PERMISSION_DENIED,
            "tier1-no-risk3",
            lambda: mesh_client.invoke("billing.refund", {"customer_id": "C7", "amount_cents": 500}, timeout=5),
        )
        await _expect_refusal(
            n,
            "a ticket whose refund is 150 dollars: support may refund only under 100",
            grpc.StatusCode.PERMISSION_DENIED,
            "refunds-under-100-dollars",
            lambda: mesh_client.invoke(
                "support.resolve_ticket", {**ticket, "ticket_id": "T-1999", "charged_twice_cents": 15000}, timeout=10
            ),
        )
        await _expect_refusal(
            n,
            "a capability nobody serves (refused as unknown before policy, naming the nearest known ones)",
            grpc.StatusCode.NOT_FOUND,
            "shipping.track",
            lambda: mesh_client.invoke("shipping.track", {"parcel": "P1"}, timeout=5),
        )

        n.section("Contracts, versions and deadlines: refused with the reason")
        await _expect_refusal(
            n,
            "limit as text",
            grpc.StatusCode.INVALID_ARGUMENT,
            "$.limit",
            lambda: mesh_client.invoke("kb.search", {"query": "refund", "limit": "three"}, timeout=5),
        )
        await _expect_refusal(
            n,
            "a version nobody runs",
            grpc.StatusCode.UNAVAILABLE,
            "1.2.0",
            lambda: mesh_client.invoke("kb.search", {"query": "refund"}, version="^3", timeout=5),
        )
        await _expect_refusal(
            n,
            "a pinned schema that changed",
            grpc.StatusCode.FAILED_PRECONDITION,
            "schema drift",
            lambda: mesh_client.invoke("kb.search", {"query": "refund"}, schema_hash="sha256:" + "0" * 64, timeout=5),
        )
        await _expect_refusal(
            n,
            "a slow answer past the deadline",
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "deadline",
            lambda: mesh_client.invoke("kb.search", {"query": "refund", "think_s": 2.0}, timeout=0.3),
        )

        n.section("A policy change on the running mesh: kb goes into maintenance, then comes back")
        await policy.release(extra={"kb-maintenance.cedar": KB_MAINTENANCE})
        await _expect_refusal(
            n,
            "kb.search during maintenance",
            grpc.StatusCode.PERMISSION_DENIED,
            "kb-maintenance",
            lambda: mesh_client.invoke("kb.search", {"query": "refund"}, timeout=5),
        )
        await policy.release()
        r = await mesh_client.invoke("kb.search", {"query": "refund"}, timeout=5)
        n.ok(f"kb.search allowed again: answered by {r.agent} {r.version}")

        await _failover(mesh, frontdesk, mesh_client, n)
        await _operator_stops_one_agent(mesh_client, registry, mesh.workdir, n, ticket)
        await refund_waits_for_approval(
            mesh_client,
            lambda extra: policy.release(extra=extra),
            functools.partial(_operator, n, registry, mesh.workdir),
            n,
            ticket,
        )
        await one_workflow_over_budget(mesh_client, lambda *a: _operator(n, registry, mesh.workdir, *a), n, ticket)
        await frozen_holder_loses_its_refund(
            functools.partial(_start_refund_worker, mesh), functools.partial(_operator, n, registry, mesh.workdir), n
        )

        n.section("The registry goes down: the mesh keeps routing from what it last knew")
        await registry.stop()
        r = await mesh_client.invoke("support.resolve_ticket", {**ticket, "ticket_id": "T-1002"}, timeout=10)
        n.ok(f"ticket T-1002 resolved with the registry down: {r.value['resolution']}")
        restarted = await mesh.start_registry(registry.addresses["listen"], registry.addresses["mtls"])
        n.ok(f"registry restarted on {restarted.addresses['listen']} from its data directory")
        await _print_catalog(restarted, mesh.workdir, n)
        r = await mesh_client.invoke("kb.search", {"query": "password"}, timeout=5)
        n.ok(f"sidecars resynchronised; kb.search answered by {r.agent} {r.version}")

        await sessions_and_costs(mesh_client, restarted, mesh.workdir, n)  # the demo ends with the cost table


async def _start_refund_worker(mesh: Mesh, index: int, work_s: float) -> Child:
    """A support agent working refund tasks (meshwarden.demo.refund_worker), with its sidecar."""
    sidecar = await mesh.start_demo_sidecar("support", index)
    spec = AgentSpec("support", "meshwarden.demo.refund_worker", "1.0.0")
    return await mesh.start_agent(spec, sidecar, index, "--work-s", str(work_s))


async def _failover(mesh: Mesh, frontdesk: Child, client: Client, n: Narrator) -> None:
    n.section("An agent fails: a second kb instance loses its model provider, and the mesh isolates it")
    side = await mesh.start_demo_sidecar("kb", 5)
    outage = mesh.workdir / "kb-5.outage"
    await mesh.start_agent(AGENTS[0], side, 5, "--outage-file", str(outage))
    await _wait_for_instances(client, "kb.search", {"kb-1", "kb-5"})
    n.ok("kb-5 joined: kb.search has two instances, and calls go to both")
    outage.touch()
    n.say("kb-5's model provider goes down: from now on it answers UNAVAILABLE")
    answered: Counter[str] = Counter()
    for _ in range(20):
        answered[(await client.invoke("kb.search", {"query": "refund"}, timeout=5)).instance_id] += 1
    states = await _breaker_states(frontdesk)
    (n.ok if answered == Counter({"kb-1": 20}) else n.fail)(
        f"20 of 20 kb.search calls succeeded, answered by {', '.join(f'{k} ({v})' for k, v in answered.items())}: "
        "each attempt that hit kb-5 was retried on kb-1 (its idempotency key makes that safe)"
    )
    (n.ok if states.get("kb-5") == "open" else n.fail)(
        f"frontdesk's circuit breakers (ListCapabilities): kb-5 {states.get('kb-5')}, kb-1 {states.get('kb-1')}; "
        "an open circuit gets no calls"
    )
    outage.unlink()
    n.say("kb-5 recovers; 2 s after its circuit opened (--breaker-reset-s) one trial call goes to it")
    deadline = time.monotonic() + 15
    while (await _breaker_states(frontdesk)).get("kb-5") != "closed" and time.monotonic() < deadline:
        await client.invoke("kb.search", {"query": "refund"}, timeout=5)
        await asyncio.sleep(0.1)
    closed = (await _breaker_states(frontdesk)).get("kb-5") == "closed"
    (n.ok if closed else n.fail)("the trial call succeeded: kb-5's circuit closed, and both instances serve again")


async def _wait_for_instances(client: Client, capability: str, instances: set[str]) -> None:
    seen: set[str] = set()
    deadline = time.monotonic() + 15
    while seen != instances:
        try:
            seen.add((await client.invoke(capability, {"query": "refund"}, timeout=2)).instance_id)
        except MeshError:
            await asyncio.sleep(0.1)
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {sorted(seen)} of {sorted(instances)} answered {capability}")


async def _breaker_states(sidecar: Child) -> dict[str, str]:
    """The circuit breaker state per instance, as a sidecar reports it on its local API."""
    async with grpc.aio.insecure_channel(sidecar.addresses["listen"]) as channel:
        listed = await sidecar_pb2_grpc.SidecarStub(channel).ListCapabilities(
            sidecar_pb2.ListCapabilitiesRequest(), timeout=5
        )
    return dict(listed.breaker_states)


async def _operator_stops_one_agent(
    client: Client, registry: Child, workdir: Path, n: Narrator, ticket: dict[str, Any]
) -> None:
    """Operator controls: one kill switch stops billing everywhere in milliseconds while kb and
    support keep working; lifting it brings refunds back."""
    n.section("An operator stops billing with a kill switch; kb and support keep working")
    out = await _operator(n, registry, workdir, "kill", "--agent", "billing", "--reason", "refunds look wrong")
    switch_id = out.split()[2] if out.startswith("kill switch ") else ""
    await _expect_refusal(
        n,
        "a ticket that needs a refund while billing is stopped",
        grpc.StatusCode.FAILED_PRECONDITION,
        f"kill switch {switch_id}",
        lambda: client.invoke("support.resolve_ticket", {**ticket, "ticket_id": "T-1500"}, timeout=10),
    )
    without_refund = {k: v for k, v in ticket.items() if k != "charged_twice_cents"}
    r = await client.invoke("support.resolve_ticket", {**without_refund, "ticket_id": "T-1501"}, timeout=10)
    n.ok(f"a ticket without a refund still resolves: {r.value['resolution']} (support and kb untouched)")
    await _operator(n, registry, workdir, "kill", "lift", switch_id)
    r = await client.invoke("support.resolve_ticket", {**ticket, "ticket_id": "T-1502"}, timeout=10)
    n.ok(f"refunds are back: {r.value['resolution']}")
    await _operator(n, registry, workdir, "audit", "list", "--since", "10m")


async def _operator(n: Narrator, registry: Child, workdir: Path, *args: str, quiet: bool = False) -> str:
    """Runs an operator's `meshwarden` command as a person would type it; returns its output
    (printed too, unless `quiet`)."""
    if not quiet:
        n.say("$ meshwarden " + shlex.join(args))
    argv = meshwarden_argv(*args, *operator_flags(registry, workdir))
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)
    for line in [] if quiet else done.stdout.splitlines()[:24]:
        n.say(f"  {line}")
    if done.returncode != 0:
        n.fail(f"meshwarden {args[0]} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


async def _wait_routable(client: Client, n: Narrator) -> None:
    """The frontdesk sidecar learns the catalog over its watch stream; wait until it has."""
    deadline = time.monotonic() + 10
    while True:
        try:
            await client.invoke("kb.search", {"query": "refund"}, timeout=2)
            return
        except MeshError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _print_catalog(registry: Child, workdir: Path, n: Narrator) -> None:
    """Runs the operator's real command, as a person would type it."""
    argv = meshwarden_argv("agents", "list", *operator_flags(registry, workdir))
    shown = " ".join(["meshwarden", *argv[3:5], "--registry", registry.addresses["listen"], "--ca-pin", "sha256:…"])
    n.say(f"$ {shown}")
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)
    for line in done.stdout.splitlines():
        n.say(line)
    if done.returncode != 0:
        n.fail(f"agents list exited {done.returncode}: {done.stderr.strip()}")


async def _plaintext_is_refused(address: str) -> str:
    """What a client without TLS gets from a peer port: the handshake fails, nothing is served."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.aio.AioRpcError as err:
            return err.code().name
    return "SERVED"


async def _expect_refusal(
    n: Narrator, what: str, code: grpc.StatusCode, must_mention: str, attempt: Callable[[], Awaitable[Any]]
) -> None:
    try:
        await attempt()
    except MeshError as err:
        got = err.status_code()
        if got == code and must_mention in err.message:
            n.ok(f"{what}: {got.name}")
            n.say(f'      "{err.message}"')
        else:
            n.fail(f"{what}: expected {code.name} mentioning {must_mention!r}, got {got.name}: {err.message}")
        return
    n.fail(f"{what}: the call succeeded, but the mesh should have refused it")


def main(keep_logs: bool = False) -> int:
    return asyncio.run(run_demo(keep_logs))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "run_demo"]
