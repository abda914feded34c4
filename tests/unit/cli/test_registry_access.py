"""meshwarden.cli.registry_access: where the address, the trust and the operator token come from."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import grpc
import pytest

from meshwarden.cli import exit_codes, registry_access
from meshwarden.cli.registry_access import AccessError
from meshwarden.registry.issuer import Issuer
from tests.identity_helpers import FakeClock


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    registry_access.add_registry_flags(parser)
    return parser.parse_args(list(argv))


def test_registry_address_precedence() -> None:
    env = {"MESHWARDEN_REGISTRY": "10.0.0.1:7400"}
    assert registry_access.registry_address("127.0.0.1:9", env) == "127.0.0.1:9"
    assert registry_access.registry_address(None, env) == "10.0.0.1:7400"
    assert registry_access.registry_address(None, {}) == "127.0.0.1:7400"


def test_operator_token_from_a_file_then_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no default registry data dir here
    file = tmp_path / "token"
    file.write_text("mwo1.from-file\n")
    env = {"MESHWARDEN_OPERATOR_TOKEN": "mwo1.from-env"}
    assert registry_access.operator_token(str(file), env) == "mwo1.from-file"
    assert registry_access.operator_token(None, env) == "mwo1.from-env"
    with pytest.raises(AccessError, match="needs the registry's operator token") as info:
        registry_access.operator_token(None, {})
    assert info.value.exit_code == exit_codes.USAGE


def test_operator_token_defaults_to_the_default_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    default = tmp_path / ".meshwarden" / "registry" / "operator.token"
    default.parent.mkdir(parents=True)
    default.write_text("mwo1.local\n")
    assert registry_access.operator_token(None, {}) == "mwo1.local"


def test_a_trust_bundle_file_is_used_as_is_and_names_the_trust_domain(tmp_path: Path) -> None:
    issuer = Issuer.ephemeral("prod.example.com", FakeClock())
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(issuer.bundle_pem)
    access = registry_access.resolve(
        _args("--trust-bundle", str(bundle), "--registry", "10.0.0.1:7400"), {"MESHWARDEN_OPERATOR_TOKEN": "t"}
    )
    assert access.trust.bundle_pem == issuer.bundle_pem
    assert access.trust.trust_domain == "prod.example.com"
    assert access.metadata()[0] == ("authorization", "Bearer t")
    assert access.metadata()[1][0] == "meshwarden-operator-user"  # a claim for the audit log
    assert "Bearer" not in repr(access) and "'t'" not in repr(access)
    assert registry_access.trust_domain("other.test", issuer.bundle_pem) == "other.test"


@pytest.mark.parametrize(
    ("argv", "message", "code"),
    [
        (["--trust-bundle", "/nonexistent.pem"], "cannot read the trust bundle", exit_codes.USAGE),
        (["--trust-bundle", "x", "--ca-pin", "sha256:00"], "either --trust-bundle or --ca-pin", exit_codes.USAGE),
        (["--registry", "10.255.255.1"], "registry address must be HOST:PORT", exit_codes.USAGE),
        (["--registry", "127.0.0.1:1"], "cannot reach the registry at 127.0.0.1:1", exit_codes.UNREACHABLE),
        (["--trust-bundle", __file__], "holds no PEM certificates", exit_codes.USAGE),
    ],
)
def test_trust_problems_say_what_to_fix(argv: list[str], message: str, code: int) -> None:
    with pytest.raises(AccessError, match=message) as info:
        registry_access.resolve(_args(*argv), {"MESHWARDEN_OPERATOR_TOKEN": "t"})
    assert info.value.exit_code == code


async def test_a_slow_answer_is_reported_as_a_timeout_and_a_closed_port_as_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 19: a registry that is reached but slow must not read as one that is down."""
    answered = asyncio.Event()

    async def slow(_request: bytes, _context: object) -> bytes:
        await answered.wait()  # never set: the caller's deadline ends the call
        return b""

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler("test.Slow", {"Call": grpc.unary_unary_rpc_method_handler(slow)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as slow_error:
                await channel.unary_unary("/test.Slow/Call")(b"", timeout=0.2)
    finally:
        await server.stop(None)
    assert registry_access.report_rpc_error("meshwarden costs", slow_error.value, "r:1") == exit_codes.TIMED_OUT
    assert "did not answer in time" in capsys.readouterr().err
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:  # tcpmux: privileged, nothing listens
        with pytest.raises(grpc.aio.AioRpcError) as closed_error:
            await channel.unary_unary("/test.Slow/Call")(b"", timeout=5)
    assert registry_access.report_rpc_error("meshwarden costs", closed_error.value, "r:1") == exit_codes.UNREACHABLE
    assert "cannot reach the registry at r:1" in capsys.readouterr().err
