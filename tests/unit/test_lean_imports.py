"""What an agent process and the CLI's start-up load: none of the servers' weight.

Each check runs in a fresh interpreter (this one has imported everything already) and reads
sys.modules there; timing belongs to benchmarks/cli_startup.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Top-level modules of the servers' dependencies: the sidecar, registry and consul extras.
SERVER_WEIGHT = ("cedarpy", "opentelemetry.sdk", "consul", "OpenSSL", "aiohttp", "prometheus_client", "pybreaker")
# What the CLI's parser must not need: the RPC stack and the crypto libraries.
RPC_AND_CRYPTO = ("grpc", "google.protobuf", "cryptography", "OpenSSL", "asyncio")


def loaded_after(code: str) -> list[str]:
    program = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return modules


def among(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


@pytest.mark.parametrize(
    "code",
    [
        "import meshwarden",
        "from meshwarden import Agent, CallContext, Client, SyncClient, Usage",
        "import meshwarden.agent, meshwarden.client, meshwarden.errors",
    ],
)
def test_the_sdk_loads_none_of_the_servers_dependencies(code: str) -> None:
    assert among(loaded_after(code), SERVER_WEIGHT) == []


def test_the_sdk_does_load_grpc_when_its_names_are_used() -> None:
    """The check above can fail: using the SDK does import its transport."""
    assert "grpc" in loaded_after("from meshwarden import Client")


def test_a_bare_import_of_the_package_loads_no_rpc_stack() -> None:
    """Every CLI command imports the package first; its names load on first use."""
    assert among(loaded_after("import meshwarden"), RPC_AND_CRYPTO) == []


def test_the_top_level_parser_imports_no_command_module() -> None:
    modules = loaded_after("from meshwarden.cli import main\nmain.build_parser(full=())")
    assert [m for m in modules if m.startswith("meshwarden.cli.") and m.endswith("_cmd")] == []
    assert among(modules, RPC_AND_CRYPTO) == []


def test_an_operator_command_s_parser_imports_its_module_alone_and_no_rpc_stack() -> None:
    modules = loaded_after("from meshwarden.cli import main\nmain.build_parser(full=['agents'])")
    assert [m for m in modules if m.startswith("meshwarden.cli.") and m.endswith("_cmd")] == [
        "meshwarden.cli.agents_cmd"
    ]
    assert among(modules, RPC_AND_CRYPTO) == []


def test_a_sidecar_loads_the_mcp_client_only_once_it_connects_to_an_mcp_server() -> None:
    """`mcp` and its pydantic models are ~40 MB of a sidecar's RSS (benchmarks/README.md,
    "Cheaper calls"): loaded by the first MCP connection, not at start."""
    assert among(loaded_after("import meshwarden.sidecar.app"), ("mcp",)) == []
    assert "mcp" in loaded_after(
        "import asyncio\nfrom meshwarden.sidecar.hops import mcp_upstreams\n"
        "try:\n    asyncio.run(mcp_upstreams.McpConnection._hold(None, None))\nexcept Exception:\n    pass"
    )


def test_a_sidecar_loads_the_opentelemetry_sdk_only_when_tracing_is_on() -> None:
    """The SDK is about 1 MB of an idle sidecar's RSS (benchmarks/README.md, "Cheaper calls",
    memory): start-up imports it when an OTLP endpoint is configured, and only then."""
    start = (
        "import argparse\nfrom meshwarden.sidecar import app, config, runtime_setup\n"
        "cfg = config.load(argparse.Namespace(agent='a', data_dir='/nonexistent'), {ENV})\n"
        "assert (runtime_setup.build_tracing(cfg) is not None) is {ON}\n"
    )
    off = loaded_after(start.replace("{ENV}", "{}").replace("{ON}", "False"))
    assert among(off, ("opentelemetry.sdk",)) == []
    endpoint = "{'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:4317'}"
    on = loaded_after(start.replace("{ENV}", endpoint).replace("{ON}", "True"))
    assert "opentelemetry.sdk.trace" in on
