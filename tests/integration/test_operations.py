"""Day-two operations against one shared mesh of real processes: `meshwarden check` on a
healthy mesh and against each fault it claims to find, `sidecars list`, `sidecar status` and
`sidecar config`, `policy explain`, `bundle init --from-registry`, `bundle history`, `pull`
and `rollback`. The tests run in file order and each leaves the mesh as the next expects."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from meshwarden.supervise import Child, meshwarden_argv
from tests.integration.bundles import KEY_ID
from tests.integration.mesh import LocalMesh

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Ops:
    mesh: LocalMesh
    server: Child  # the echoer's sidecar (its probe agent serves echo, probe.*)
    caller: Child  # frontdesk's sidecar: a pure caller
    server_dir: Path
    caller_dir: Path
    workdir: Path

    def registry_flags(self) -> list[str]:
        registry = self.mesh.registry
        assert registry is not None
        return [
            "--registry",
            self.mesh.registry_address,
            "--ca-pin",
            registry.addresses["ca_fingerprint"],
            "--operator-token-file",
            str(self.mesh.registry_data_dir / "operator.token"),
        ]

    def check_flags(self) -> list[str]:
        registry = self.mesh.registry
        assert registry is not None
        return [
            *self.registry_flags(),
            "--admin",
            registry.addresses["admin"],
            "--admin",
            self.server.addresses["admin"],
            "--data-dir",
            str(self.mesh.registry_data_dir),
            "--data-dir",
            str(self.server_dir),
            "--data-dir",
            str(self.caller_dir),
        ]


async def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, meshwarden_argv(*args), capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


async def check(ops: Ops, *extra: str) -> tuple[int, dict[str, dict[str, str]]]:
    done = await cli("check", *ops.check_flags(), *extra, "--output", "json")
    report = json.loads(done.stdout)
    assert report["ok"] == (done.returncode == 0), done.stdout + done.stderr
    return done.returncode, {c["name"]: c for c in report["checks"]}


async def wait_enforced(ops: Ops, revision: int) -> None:
    for _ in range(300):
        status = await ops.mesh.bundle_status()
        if all(s.active_revision == revision for s in status.sidecars if s.live):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"revision {revision} not enforced: {status}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ops(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ops]:
    workdir = tmp_path_factory.mktemp("ops")
    mesh = LocalMesh(workdir)
    await mesh.start_registry()
    try:
        server_dir, caller_dir = workdir / "sidecars" / "echoer", workdir / "sidecars" / "frontdesk"
        server = await mesh.sidecar("echoer", data_dir=server_dir)
        await mesh.agent(server)
        caller = await mesh.sidecar("frontdesk", data_dir=caller_dir, env={"MESHWARDEN_SIDECAR_DEFAULT_TIMEOUT_S": "7"})
        while len(await mesh.list_instances()) < 1:
            await asyncio.sleep(0.05)
        yield Ops(mesh, server, caller, server_dir, caller_dir, workdir)
    finally:
        await mesh.close()


async def test_a_starter_bundle_from_the_registry_makes_every_check_pass(ops: Ops) -> None:
    policy = ops.workdir / "policy"
    init = await cli("bundle", "init", str(policy), "--from-registry", *ops.registry_flags())
    assert init.returncode == 0, init.stderr
    entities = {e["uid"]["id"] for e in json.loads((policy / "entities.json").read_text())}
    assert {"echoer", "frontdesk", "echo", "probe.count"} <= entities  # the pure caller too
    assert "revision = 2" in (policy / "manifest.toml").read_text()  # after the allow-all bundle, rev 1
    built = await cli("bundle", "build", str(policy), "-o", str(ops.workdir / "p.json"))
    assert built.returncode == 0, built.stderr
    key = ops.workdir / "bundle-signing" / f"{KEY_ID}.key"
    signed = await cli("bundle", "sign", str(ops.workdir / "p.json"), "--key", str(key), "--key-id", KEY_ID)
    assert signed.returncode == 0, signed.stderr
    pushed = await cli("bundle", "push", str(ops.workdir / "p.json"), "--wait-s", "15", *ops.registry_flags())
    assert pushed.returncode == 0 and "enforced by 2/2" in pushed.stdout, pushed.stdout + pushed.stderr

    code, checks = await check(ops)
    assert code == 0 and {c["status"] for c in checks.values()} == {"ok"}, checks
    assert "2/2 live sidecar(s) on revision 2" in checks["sidecars enforce the latest bundle"]["detail"]
    table = await cli("check", *ops.check_flags())
    assert table.returncode == 0 and table.stdout.count("\nOK  ") == len(checks) - 1, table.stdout


async def test_sidecars_list_shows_servers_and_pure_callers(ops: Ops) -> None:
    done = await cli("sidecars", "list", "--output", "json", *ops.registry_flags())
    assert done.returncode == 0, done.stderr
    by_agent = {m["agent"]: m for m in json.loads(done.stdout)}
    assert by_agent["echoer"]["role"] == "serves" and "echo" in by_agent["echoer"]["capabilities"]
    assert by_agent["frontdesk"]["role"] == "caller" and by_agent["frontdesk"]["bundle_revision"] == 2
    table = await cli("sidecars", "list", *ops.registry_flags())
    assert table.stdout.splitlines()[0].split() == [
        "INSTANCE", "AGENT", "ROLE", "VERSION", "PEER", "CAPABILITIES", "BUNDLE", "LIVE", "ENROLLED-BY", "REFUSED",
    ]  # fmt: skip
    assert any(line.split()[1:3] == ["frontdesk", "caller"] for line in table.stdout.splitlines()[1:])
    # A page at a time, by agent then instance id: the same sidecars, none twice, then no cursor.
    first = await cli("sidecars", "list", "--output", "json", "--limit", "1", *ops.registry_flags())
    assert first.returncode == 0 and "more: --cursor " in first.stderr, first.stderr
    cursor = first.stderr.split("more: --cursor ")[1].strip()
    rest = await cli("sidecars", "list", "--output", "json", "--limit", "5", "--cursor", cursor, *ops.registry_flags())
    assert rest.returncode == 0 and "more:" not in rest.stderr, rest.stderr
    paged = [m["instance_id"] for m in json.loads(first.stdout) + json.loads(rest.stdout)]
    assert paged == [m["instance_id"] for m in json.loads(done.stdout)] and len(paged) == 2
    assert (await cli("sidecars", "list", "--cursor", "nonsense", *ops.registry_flags())).returncode == 2


async def test_sidecar_status_and_config_read_the_admin_port(ops: Ops) -> None:
    status = await cli("sidecar", "status", "--admin", ops.server.addresses["admin"], "--output", "json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["agent"] == "echoer" and doc["bundle"]["active_revision"] == 2
    assert doc["bundle"]["trusted_key_ids"] == [KEY_ID]
    assert {p["id"] for p in doc["bundle"]["inbound_slice"]} == {"low-and-medium-risk", "tier1-no-risk3"}
    assert doc["receipts"]["backlog"] >= 0 and doc["catalog"]["synced"]
    table = await cli("sidecar", "status", "--admin", ops.server.addresses["admin"])
    assert "demo rev 2" in table.stdout and "INSTANCE" in table.stdout, table.stdout

    config = await cli("sidecar", "config", "--admin", ops.caller.addresses["admin"], "--output", "json")
    settings = {s["key"]: s for s in json.loads(config.stdout)["settings"]}
    assert settings["agent"]["origin"] == "flag --agent" and settings["agent"]["value"] == "frontdesk"
    assert settings["default_timeout_s"] == {
        "key": "default_timeout_s",
        "flag": "--default-timeout-s",
        "value": "7",
        "origin": "env MESHWARDEN_SIDECAR_DEFAULT_TIMEOUT_S",
    }
    assert settings["retry_max_attempts"]["origin"] == "default"
    assert settings["join_token"]["value"] in ("", "(set)")
    table = await cli("sidecar", "config", "--admin", ops.caller.addresses["admin"])
    assert table.stdout.splitlines()[1].split() == ["SETTING", "VALUE", "FROM"]

    nobody = await cli("sidecar", "status", "--admin", "127.0.0.1:1")
    assert nobody.returncode == 3 and "--admin" in nobody.stderr


async def test_policy_explain_against_what_the_registry_serves(ops: Ops) -> None:
    done = await cli(
        "policy", "explain", "--caller", "frontdesk", "--capability", "echo", "--output", "json", *ops.registry_flags()
    )
    assert done.returncode == 0, done.stderr
    explained = json.loads(done.stdout)
    assert explained["allowed"] and explained["bundle"] == "bundle demo rev 2"
    assert [p["id"] for p in explained["deciding_policies"]] == ["low-and-medium-risk"]


async def test_a_misspelled_capability_is_unknown_with_the_nearest_names_not_denied(ops: Ops) -> None:
    done = await cli("call", "--sidecar", ops.caller.addresses["listen"], "ehco", "{}", "--timeout", "5")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT_FOUND" in done.stderr and "did you mean 'echo'?" in done.stderr, done.stderr
    assert "PERMISSION_DENIED" not in done.stderr


async def test_check_finds_a_route_to_a_version_nobody_runs(ops: Ops) -> None:
    refused = await cli("route", "set", "echo", "--weights", "9.9.9=100", *ops.registry_flags())
    assert refused.returncode == 2 and "live versions: 1.0.0" in refused.stderr
    forced = await cli("route", "set", "echo", "--weights", "9.9.9=100", "--force", *ops.registry_flags())
    assert forced.returncode == 0, forced.stderr
    code, checks = await check(ops)
    assert code == 1 and checks["routes name live versions"]["status"] == "fail"
    assert "echo: 9.9.9 (live: 1.0.0)" in checks["routes name live versions"]["detail"]
    assert "route clear" in checks["routes name live versions"]["hint"]
    assert (await cli("route", "clear", "echo", *ops.registry_flags())).returncode == 0


async def test_check_warns_of_kill_switches_in_force(ops: Ops) -> None:
    killed = await cli("kill", "--agent", "frontdesk", "--reason", "ops test", *ops.registry_flags())
    assert killed.returncode == 0, killed.stderr
    code, checks = await check(ops)
    found = checks["kill switches and isolations"]
    assert code == 0 and found["status"] == "warn" and "agent frontdesk" in found["detail"] and found["hint"]
    switch = found["detail"].split(": ", 1)[1].split(" ", 1)[0]
    assert (await cli("kill", "lift", switch, *ops.registry_flags())).returncode == 0


async def test_check_finds_a_data_directory_others_can_read(ops: Ops) -> None:
    ops.caller_dir.chmod(0o755)
    try:
        code, checks = await check(ops)
    finally:
        ops.caller_dir.chmod(0o700)
    assert code == 1 and checks["data directories private"]["status"] == "fail"
    assert f"{ops.caller_dir} (755)" in checks["data directories private"]["detail"]


async def test_check_finds_an_admin_port_that_does_not_answer(ops: Ops) -> None:
    code, checks = await check(ops, "--admin", "127.0.0.1:1")
    assert code == 1 and checks["clocks within SVID tolerance"]["status"] == "fail"
    assert "127.0.0.1:1" in checks["clocks within SVID tolerance"]["detail"]


async def test_check_says_when_the_registry_cannot_be_reached(ops: Ops) -> None:
    token = str(ops.mesh.registry_data_dir / "operator.token")
    done = await cli(
        "check", "--registry", "127.0.0.1:1", "--operator-token-file", token, "--data-dir", str(ops.caller_dir),
        "--output", "json",
    )  # fmt: skip
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert done.returncode == 3 and checks["registry reachable"]["status"] == "fail"
    assert checks["registry reachable"]["hint"] and checks["policy bundle pushed"]["status"] == "skip"


async def test_history_pull_and_a_rollback_that_is_a_new_revision(ops: Ops) -> None:
    history = await cli("bundle", "history", "--output", "json", *ops.registry_flags())
    assert [b["revision"] for b in json.loads(history.stdout)] == [2, 1]
    pulled = ops.workdir / "rev1.json"
    assert (await cli("bundle", "pull", "1", "-o", str(pulled), *ops.registry_flags())).returncode == 0
    first = json.loads(pulled.read_text())
    key = ops.workdir / "bundle-signing" / f"{KEY_ID}.key"
    rollback = await cli(
        "bundle", "rollback", "1", "--key", str(key), "--key-id", KEY_ID, "--wait-s", "15", *ops.registry_flags()
    )
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert "revision 3" in rollback.stdout and "enforced by 2/2" in rollback.stdout
    again = ops.workdir / "rev3.json"
    assert (await cli("bundle", "pull", "0", "-o", str(again), *ops.registry_flags())).returncode == 0
    third = json.loads(again.read_text())
    assert {p: t for p, t in third["files"].items() if p != "manifest.toml"} == {
        p: t for p, t in first["files"].items() if p != "manifest.toml"
    }
    assert "revision = 3" in third["files"]["manifest.toml"]
    missing = await cli("bundle", "pull", "42", *ops.registry_flags())
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


async def test_check_finds_entities_that_miss_agents_and_capabilities(ops: Ops) -> None:
    await wait_enforced(ops, 3)  # revision 3 holds the demo's entities: no echoer, no echo
    code, checks = await check(ops)
    found = checks["bundle entities cover the mesh"]
    assert code == 1 and found["status"] == "fail"
    assert 'Agent::"echoer"' in found["detail"] and 'Capability::"echo"' in found["detail"]
    assert "--from-registry" in found["hint"]


async def test_check_finds_a_sidecar_without_bundle_keys(ops: Ops) -> None:
    empty = ops.workdir / "no-keys"
    empty.mkdir()
    support_dir = ops.workdir / "sidecars" / "support"
    # never SERVING: with no key it can activate no bundle (default deny)
    await ops.mesh.sidecar("support", "--bundle-keys", str(empty), data_dir=support_dir, wait_ready=False)
    for _ in range(200):
        code, checks = await check(ops)
        found = checks["sidecars enforce the latest bundle"]
        if "support" in found["detail"]:
            break
        await asyncio.sleep(0.1)
    assert code == 1 and found["status"] == "fail" and "(support) on rev none, refused rev 3" in found["detail"]
    assert "--bundle-keys" in found["hint"]
    # The new agent, in the starter bundle's directory: added, revision raised, edits kept.
    policy = ops.workdir / "policy"
    frontdesk = {"type": "Agent", "id": "frontdesk"}
    entities = json.loads((policy / "entities.json").read_text())
    next(e for e in entities if e["uid"] == frontdesk)["attrs"]["tier"] = 1  # edited by hand
    (policy / "entities.json").write_text(json.dumps(entities))
    again = await cli("bundle", "init", str(policy), "--from-registry", *ops.registry_flags())
    assert again.returncode == 0 and 'added Agent::"support"' in again.stdout, again.stdout + again.stderr
    assert "revision 2 -> 4" in again.stdout  # above the registry's latest (3, the rollback) too
    assert "revision = 4" in (policy / "manifest.toml").read_text()
    kept = json.loads((policy / "entities.json").read_text())
    assert next(e for e in kept if e["uid"] == frontdesk)["attrs"]["tier"] == 1
