"""The CLI fits operators' habits: --version, global flags after the command, help that
explains every flag with defaults as a person types them, shell completion, contexts."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshwarden.cli import contexts
from meshwarden.cli.main import build_parser, main

PYTHON_REPRS = ("HostPort(", "PosixPath(", "Path(", "<function", "default None")


def _parsers(
    parser: argparse.ArgumentParser, path: str = "meshwarden"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("meshwarden ") and any(c.isdigit() for c in out)


def test_every_flag_of_every_command_is_explained_with_defaults_a_person_writes() -> None:
    unexplained, reprs = [], []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            flag = f"{path} {action.option_strings[-1]}"
            if not action.help and not isinstance(action, argparse._HelpAction | argparse._VersionAction):
                unexplained.append(flag)
            if any(r in (action.help or "") for r in PYTHON_REPRS):
                reprs.append(f"{flag}: {action.help}")
    assert unexplained == [], "flags without help"
    assert reprs == [], "help shows Python reprs"


def test_registry_defaults_read_as_addresses_and_paths() -> None:
    registry_help = build_parser(["registry"]).format_help()
    serve = next(p for path, p in _parsers(build_parser(["registry"])) if path == "meshwarden registry serve")
    text = serve.format_help()
    assert "default 127.0.0.1:7400" in " ".join(text.split()), registry_help


@pytest.mark.parametrize("before", [True, False])
def test_global_flags_are_taken_before_and_after_the_command(before: bool) -> None:
    flags = ["--log-level", "debug", "--log-format", "json"]
    argv = [*flags, "agents", "list"] if before else ["agents", "list", *flags]
    args = build_parser(["agents"]).parse_args(argv)
    assert (args.log_level, args.log_format) == ("debug", "json")


def test_a_global_flag_before_the_command_is_kept_when_not_repeated_after() -> None:
    args = build_parser(["agents"]).parse_args(["--log-level", "error", "agents", "list", "--output", "json"])
    assert args.log_level == "error" and args.log_format == "text"


def _completions(line: str, tmp_path: Path) -> list[str]:
    out = tmp_path / "completions"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_SHELL": "bash",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        "_ARGCOMPLETE_IFS": "\n",
    }
    code = "import sys; from meshwarden.cli.main import main; sys.exit(main())"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30, capture_output=True)
    return [w.strip() for w in out.read_text().split("\n") if w.strip()]


def test_completion_offers_commands_verbs_and_flags(tmp_path: Path) -> None:
    assert {"agents", "approvals", "audit"} <= set(_completions("meshwarden a", tmp_path))
    assert "list" in _completions("meshwarden agents ", tmp_path)
    assert "--output" in _completions("meshwarden agents list --out", tmp_path)
    assert "--log-level" in _completions("meshwarden kill list --log-l", tmp_path)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_name_the_program(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "meshwarden" in script
    if shell == "bash" and shutil.which("bash"):
        checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True, check=False)
        assert checked.returncode == 0, checked.stderr


def test_bash_completes_through_the_script_as_a_user_would(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    main(["completion", "bash"])
    (tmp_path / "completion.bash").write_text(capsys.readouterr().out)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "meshwarden").write_text(f'#!/bin/sh\nexec {sys.executable} -m meshwarden.cli.main "$@"\n')
    (shim / "meshwarden").chmod(0o755)
    script = (
        f"source {tmp_path / 'completion.bash'}\n"
        "COMP_LINE='meshwarden kil'; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(meshwarden kil); COMP_CWORD=1\n"
        "_python_argcomplete meshwarden kil meshwarden\n"
        "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "kill" in done.stdout.split(), done.stdout + done.stderr


def test_contexts_file_round_trips_0600_and_fills_only_what_was_not_given(tmp_path: Path) -> None:
    env = {"MESHWARDEN_CONTEXTS": str(tmp_path / "cfg" / "contexts.toml")}
    loaded = contexts.with_context(
        contexts.load(env), "prod", contexts.Context(registry="reg.example:7400", ca_pin="sha256:" + "ab" * 32)
    )
    file = contexts.save(contexts.Contexts("prod", loaded.named), env)
    assert file.stat().st_mode & 0o777 == 0o600 and file.parent.stat().st_mode & 0o777 == 0o700
    assert contexts.load(env).named["prod"].registry == "reg.example:7400"
    blank = argparse.Namespace(
        registry=None, ca_pin=None, trust_bundle=None, trust_domain=None, operator_token_file=None
    )
    filled = contexts.fill(blank, env)
    assert (filled.registry, filled.ca_pin) == ("reg.example:7400", "sha256:" + "ab" * 32)
    # A flag wins; a variable wins; a bundle given for this command replaces the context's pin.
    given = argparse.Namespace(**{**vars(blank), "registry": "other:1", "trust_bundle": "ca.pem"})
    filled = contexts.fill(given, {**env, "MESHWARDEN_OPERATOR_TOKEN": "t"})
    assert (filled.registry, filled.ca_pin, filled.operator_token_file) == ("other:1", None, None)


def test_an_unknown_or_malformed_context_is_refused_with_the_known_names(tmp_path: Path) -> None:
    env = {"MESHWARDEN_CONTEXTS": str(tmp_path / "contexts.toml")}
    contexts.save(contexts.with_context(contexts.Contexts("", {}), "dev", contexts.Context()), env)
    with pytest.raises(contexts.ContextError, match="no context 'prod'.*known: dev"):
        contexts.selected("prod", env)
    with pytest.raises(contexts.ContextError, match="letters, digits"):
        contexts.check_name("a b")
    (tmp_path / "contexts.toml").write_text("[contexts.x]\nregistry = 5\n")
    with pytest.raises(contexts.ContextError, match="only the strings"):
        contexts.load(env)
    (tmp_path / "contexts.toml").write_text("not toml [")
    with pytest.raises(contexts.ContextError, match="not valid TOML"):
        contexts.load(env)
