"""meshwarden.cli.bundle_cmd: init, build, keygen, sign, verify and show, through `main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshwarden.cli import exit_codes
from meshwarden.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["bundle", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_init_build_keygen_sign_verify_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, artifact, keys = tmp_path / "demo", tmp_path / "demo.json", tmp_path / "keys"
    assert run(capsys, "init", str(source))[0] == exit_codes.OK
    code, out, err = run(capsys, "build", str(source), "-o", str(artifact))
    assert code == exit_codes.OK and out.strip() == str(artifact) and "built bundle demo rev 1: 5 policies" in err
    assert run(capsys, "keygen", "--key-id", "platform-1", "--out-dir", str(keys))[0] == exit_codes.OK
    assert (
        run(capsys, "sign", str(artifact), "--key", str(keys / "platform-1.key"), "--key-id", "platform-1")[0]
        == exit_codes.OK
    )
    code, out, _ = run(capsys, "verify", str(artifact), "--trusted-key", f"platform-1={keys / 'platform-1.pub'}")
    assert code == exit_codes.OK and out.startswith("verified bundle demo rev 1: signed by trusted key platform-1")

    code, out, _ = run(
        capsys, "show", str(artifact), "--output", "json", "--trusted-key", f"platform-1={keys / 'platform-1.pub'}"
    )
    shown = json.loads(out)
    assert code == exit_codes.OK and (shown["name"], shown["revision"], shown["verified_by"]) == (
        "demo",
        1,
        "platform-1",
    )
    assert shown["signatures"] == [{"key_id": "platform-1", "algorithm": "ed25519"}]
    assert {p["id"] for p in shown["policies"]} >= {"tier1-no-risk3", "refunds-under-100-dollars"}
    assert shown["entities"] == {"Agent": 4, "Capability": 3, "Team": 3}

    code, out, _ = run(capsys, "show", str(artifact))
    assert (
        code == exit_codes.OK and "not verified" in out and "tier1-no-risk3" in out and "policies/tiers.cedar:2" in out
    )


def test_build_prints_one_line_per_problem_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "demo"
    run(capsys, "init", str(source))
    (source / "policies" / "bad.cedar").write_text(
        '@id("bad")\npermit (principal, action == Action::"call", resource)\nwhen { principal.tier > };\n\npermit (principal, action, resource);\n'
    )
    code, out, err = run(capsys, "build", str(source), "-o", str(tmp_path / "out.json"))
    assert code == exit_codes.USAGE and out == ""
    assert err.splitlines() == [
        f"{source}/policies/bad.cedar:3: Cedar syntax error: unexpected token `}}`",
        f'{source}/policies/bad.cedar:5: policy has no @id("..."): every policy needs an id, unique in the bundle (decisions and receipts name it)',
    ]
    assert not (tmp_path / "out.json").exists()


def test_verify_exits_1_for_a_tampered_or_untrusted_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, artifact, keys = tmp_path / "demo", tmp_path / "demo.json", tmp_path / "keys"
    run(capsys, "init", str(source))
    run(capsys, "build", str(source), "-o", str(artifact))
    run(capsys, "keygen", "--key-id", "k1", "--out-dir", str(keys))
    run(capsys, "sign", str(artifact), "--key", str(keys / "k1.key"), "--key-id", "k1")
    code, _, err = run(capsys, "verify", str(artifact), "--trusted-key", f"k2={keys / 'k1.pub'}")
    assert code == exit_codes.FAILED and "signed with key id 'k1', which is not trusted here" in err
    artifact.write_bytes(artifact.read_bytes().replace(b"risk_tier <= 2", b"risk_tier <= 3"))
    code, _, err = run(capsys, "verify", str(artifact), "--trusted-key", f"k1={keys / 'k1.pub'}")
    assert code == exit_codes.FAILED and "policies/baseline.cedar does not match its signed digest" in err
    code, _, err = run(capsys, "verify", str(artifact), "--trusted-key", "k1")
    assert code == exit_codes.USAGE and "--trusted-key must be KEY_ID=PUBFILE" in err


def test_init_refuses_a_directory_with_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keep.txt").write_text("x")
    code, _, err = run(capsys, "init", str(tmp_path))
    assert code == exit_codes.USAGE and "is not empty" in err
